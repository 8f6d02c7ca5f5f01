#!/usr/bin/env python3
"""Probe resistance (issue 5): postern-server's and postern-relay's TLS ports must react to an
active prober exactly as a stock nginx 1.22 serving the same site does.

Set-up (all on 127.0.0.1, every process started here and killed by PID): a copy of the sample site
(plus a directory without an index); a stock nginx (tests/integration/site_compare.py) with the
server's own certificate and shortened timeouts; postern-server behind its front (no open API)
with the same site and timeouts; postern-relay in front of it, likewise. A real client's first
flight (its TLS ClientHello) is recorded by a TCP proxy while `postern register` runs through it.

Probes, each sent to nginx and to the Postern side on the same footing, compared on what a prober
sees (site_compare.Reaction.summary: status lines, header names in order, bodies, FIN/RST/linger
and the timing class; TLS records by type and length, within a few bytes for signatures):
- the IMC 2020 set: R1 the client's first flight replayed, R2 byte 0 changed, R3 bytes 0-7 and
  62-63 changed, R4 byte 16 changed, R5 bytes 6 and 16 changed; NR1 random payloads of 7-9, 11-13,
  15-17, 21-23, 32-34, 40-42, 48-50 bytes; NR2 221 bytes;
- plain HTTP to the TLS port; TLS with a random server name; HTTPS to / and to random paths, HEAD,
  POST, HTTP/1.0 and 0.9, malformed requests (site_compare.standard_probes);
- inner-channel lookalikes over TLS: an upgrade with a random token, a valid token altered by one
  character, and a valid token replayed after it opened a tunnel once (checked to get 101 first).

Then the cover-origin mode (`--cover-origin`): a plain-HTTP nginx serving the site plays the real
web site; a second postern-server proxies to it, and so does a stock nginx with `proxy_pass` and
nothing else; both get the probes above plus request bodies (Content-Length, chunked, Expect:
100-continue, over client_max_body_size), other methods and a redirect from the origin. A relay
with `--cover-origin` pointing at a closed port is compared with nginx proxying to that port
(nginx's 502 page).

Run: probe_test.py SERVER RELAY POSTERN
"""
import base64
import hashlib
import hmac
import os
import random
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import site_compare as sc  # noqa: E402

COUNTS = {"passed": 0, "failed": 0}
TIMEOUT_MS = 2000
PROBE_SILENCE = 3.0


def check(name, ok, detail=""):
    COUNTS["passed" if ok else "failed"] += 1
    print(("PASS " if ok else "FAIL ") + name + ("" if ok else " " + detail), flush=True)


def start(cmd, stderr_path):
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=open(stderr_path, "w"))
    sc._PROCS.append(p)
    line = p.stdout.readline().decode()
    if not line.startswith("listening on "):
        raise RuntimeError(f"{cmd[0]} did not start: {line!r} {open(stderr_path).read()}")
    return p, int(line.strip().rsplit(":", 1)[1])


# ---- front tokens (docs/transport.md), computed independently of the C++ code ----

def hkdf_sha256(secret, info, length=32):
    prk = hmac.new(b"\0" * 32, secret, hashlib.sha256).digest()  # salt "" = HashLen zeros
    out, block, i = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([i]), hashlib.sha256).digest()
        out += block
        i += 1
    return out[:length]


def b64url_decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def make_token(secret, ws_key, when=None):
    key = hkdf_sha256(secret, b"postern front auth v1")
    ts = struct.pack(">Q", int(time.time() if when is None else when))
    nonce = os.urandom(16)
    tag = hmac.new(key, b"postern front v1" + ts + nonce + ws_key.encode(), hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(ts + nonce + tag).decode().rstrip("=")


def upgrade_request(token, ws_key):
    return (f"GET /{token} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {ws_key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()


def param(link, name):
    for part in link.strip().split("?", 1)[1].split("&"):
        k, _, v = part.partition("=")
        if k == name:
            return v
    raise KeyError(name)


# ---- the client's first flight ----

def record_first_flight(target_port, run_client):
    """A TCP proxy to target_port that keeps the first bytes the client sends before the server
    answers; run_client(proxy_port) drives a real client through it."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    flights = []

    def serve():
        while True:
            try:
                c, _ = listener.accept()
            except OSError:
                return
            u = socket.create_connection(("127.0.0.1", target_port))
            first = c.recv(65536)
            flights.append(first)
            u.sendall(first)

            def pipe(a, b):
                try:
                    while True:
                        d = a.recv(65536)
                        if not d:
                            break
                        b.sendall(d)
                except OSError:
                    pass
                for s in (a, b):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

            threading.Thread(target=pipe, args=(c, u), daemon=True).start()
            threading.Thread(target=pipe, args=(u, c), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    run_client(port)
    listener.close()
    return flights[0] if flights else b""


# ---- the ClientHello's fingerprint (JA4, FoxIO's definition) ----

GREASE = {0x0a0a + 0x1010 * i for i in range(16)}


def client_hello_fields(flight):
    """(ciphers, extensions [(type, data)]) of a TLS ClientHello record, GREASE values removed."""
    if len(flight) < 9 or flight[0] != 0x16 or flight[5] != 0x01:
        return None
    body = flight[9:]
    i = 2 + 32  # legacy version, random
    i += 1 + body[i]  # session id
    n = struct.unpack(">H", body[i:i + 2])[0]
    ciphers = [struct.unpack(">H", body[i + 2 + k:i + 4 + k])[0] for k in range(0, n, 2)]
    i += 2 + n
    i += 1 + body[i]  # compression methods
    end = i + 2 + struct.unpack(">H", body[i:i + 2])[0]
    i += 2
    extensions = []
    while i + 4 <= end:
        etype, elen = struct.unpack(">HH", body[i:i + 4])
        extensions.append((etype, body[i + 4:i + 4 + elen]))
        i += 4 + elen
    return [c for c in ciphers if c not in GREASE], [(t, d) for t, d in extensions if t not in GREASE]


def ja4(flight):
    fields = client_hello_fields(flight)
    if fields is None:
        return None
    ciphers, extensions = fields
    types = [t for t, _ in extensions]
    ext = dict(extensions)
    version = "12"
    if 43 in ext:  # supported_versions
        versions = [struct.unpack(">H", ext[43][1 + k:3 + k])[0] for k in range(0, ext[43][0], 2)]
        best = max(v for v in versions if v not in GREASE)
        version = {0x0304: "13", 0x0303: "12", 0x0302: "11", 0x0301: "10"}.get(best, "00")
    alpn = "00"
    if 16 in ext and len(ext[16]) > 3:
        first = ext[16][3:3 + ext[16][2]].decode("latin-1")
        alpn = first[0] + first[-1]
    sig_algs = []
    if 13 in ext:
        sig_algs = [struct.unpack(">H", ext[13][2 + k:4 + k])[0] for k in range(0, struct.unpack(">H", ext[13][:2])[0], 2)]
    part_a = f"t{version}{'d' if 0 in ext else 'i'}{min(len(ciphers), 99):02d}{min(len(types), 99):02d}{alpn}"
    part_b = hashlib.sha256(",".join(f"{c:04x}" for c in sorted(ciphers)).encode()).hexdigest()[:12]
    ext_list = ",".join(f"{t:04x}" for t in sorted(t for t in types if t not in (0, 16)))
    part_c = hashlib.sha256((ext_list + "_" + ",".join(f"{a:04x}" for a in sig_algs)).encode()).hexdigest()[:12]
    return f"{part_a}_{part_b}_{part_c}"


# ---- comparing reactions ----

def tls_records(data):
    """[(content type, length)] when `data` is a run of TLS records, else None."""
    out, i = [], 0
    while i + 5 <= len(data):
        ctype, _, length = data[i], data[i + 1:i + 3], struct.unpack(">H", data[i + 3:i + 5])[0]
        if ctype not in (20, 21, 22, 23):
            return None
        out.append((ctype, length))
        i += 5 + length
    return out if i == len(data) and out else None


def same_timing(a, b):
    """The same timing class, or closes within 0.3 s of each other: two servers that both close
    after a 1 s timeout land on either side of the 1 s class boundary by a few milliseconds, which
    no prober can tell apart from network jitter."""
    if a.end == "open" or b.end == "open":
        return a.end == b.end
    return a.timing() == b.timing() or abs(a.seconds - b.seconds) <= 0.3


def same_reaction(a, b):
    if a.summary()[:2] == b.summary()[:2] and same_timing(a, b):
        return True
    # Raw TLS answers (a replayed ClientHello): fresh randoms and ECDSA signatures of varying
    # length; a prober compares the record types and sizes.
    ra, rb = tls_records(a.data), tls_records(b.data)
    if ra is None or rb is None or len(ra) != len(rb) or a.end != b.end or not same_timing(a, b):
        return False
    return all(ta == tb and abs(la - lb) <= 8 for (ta, la), (tb, lb) in zip(ra, rb))


def mutate(flight, positions):
    b = bytearray(flight)
    for p in positions:
        if p < len(b):
            b[p] ^= 0x5a
    return bytes(b)


def certificate_of(data_dir):
    """A stand-in for site_compare.make_certificate that gives nginx the certificate and key of a
    Postern data directory (so that TLS answers have the same sizes on both sides)."""
    def copy(directory):
        crt, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
        shutil.copy(os.path.join(data_dir, "cert.pem"), crt)
        shutil.copy(os.path.join(data_dir, "key.pem"), key)
        return crt, key
    return copy


def compare_target(name, nginx_port, target_port, probes):
    import concurrent.futures
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        jobs = []
        for label, payload, tls, sni in probes:
            then = None if tls else (0.5, b"zz")
            jobs.append((label, pool.submit(sc.probe, "127.0.0.1", nginx_port, payload, tls, PROBE_SILENCE, sni, then),
                         pool.submit(sc.probe, "127.0.0.1", target_port, payload, tls, PROBE_SILENCE, sni, then)))
        for label, fa, fb in jobs:
            a, b = fa.result(), fb.result()
            check(f"{name}: {label}: same reaction as nginx ({a.end}, {a.timing()})", same_reaction(a, b),
                  f"\n    nginx:   {a.summary()}\n    postern: {b.summary()}")


def opens_tunnel(port, token, ws_key):
    """Whether the request gets 101 (read only the status line)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(upgrade_request(token, ws_key))
            # The front reads the first Noise message before it answers: send a frame-shaped
            # placeholder it cannot decrypt, so a 101 never comes; instead, a valid token shows as
            # "no site answer" (the connection is closed without HTTP), an invalid one as a 404.
            s.sendall(b"\x82\x80" + os.urandom(4))
            s.settimeout(5)
            try:
                data = s.recv(200)
            except (ssl.SSLError, OSError):
                data = b""
    return not data.startswith(b"HTTP/1.1 404")


def main():
    server_bin, relay_bin, postern_bin = sys.argv[1:4]
    work = tempfile.mkdtemp(prefix="postern-probe-")
    sc._DIRS.append(work)
    site = os.path.join(work, "site")
    shutil.copytree(os.path.join(sc.REPO, "share", "site"), site)
    os.makedirs(os.path.join(site, "sub"), exist_ok=True)

    # postern-server, behind its front (the API only through the inner channel)
    with open(os.path.join(work, "server.toml"), "w") as f:
        f.write(f"[pow]\ndifficulty = 8\n[password]\nopslimit = 1\nmemlimit = 8192\n[front]\n"
                f"client_header_timeout_ms = {TIMEOUT_MS}\nkeepalive_timeout_ms = {TIMEOUT_MS}\n"
                f"lingering_timeout_ms = 1000\n")
    data = os.path.join(work, "data")
    _, server_port = start([server_bin, "--data", data, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
                            "--config", os.path.join(work, "server.toml"), "--site", site],
                           os.path.join(work, "server.err"))
    invite = open(os.path.join(data, "invite.txt")).read().strip()
    _, relay_port = start([relay_bin, "--listen", "127.0.0.1:0", "--upstream", os.path.join(data, "invite.txt"),
                           "--data", os.path.join(work, "relay"), "--site", site,
                           "--client-header-timeout-ms", str(TIMEOUT_MS), "--keepalive-timeout-ms", str(TIMEOUT_MS),
                           "--lingering-timeout-ms", "1000"], os.path.join(work, "relay.err"))
    relay_link = open(os.path.join(work, "relay", "relay-link.txt")).read().strip()

    # nginx with the server's certificate (so that TLS answers have the same sizes)
    sc.make_certificate = certificate_of(data)
    # Debian's packaged nginx.conf enables TLS 1.3 and server cipher preference (nginx 1.22's own
    # defaults stop at TLS 1.2); its "gzip on" is left out: the front does not compress
    # (docs/transport.md lists it as a known difference).
    extra = (f"client_header_timeout {TIMEOUT_MS // 1000}s; keepalive_timeout {TIMEOUT_MS // 1000}s; "
             "lingering_timeout 1s; ssl_protocols TLSv1 TLSv1.1 TLSv1.2 TLSv1.3; ssl_prefer_server_ciphers on;")
    nginx_port, _ = sc.start_nginx(site, http_extra=extra)

    # a real client's first flight
    env = dict(os.environ, POSTERN_PASSWORD="Probe123")

    def run_client(proxy_port):
        link = invite.replace(f"127.0.0.1:{server_port}", f"127.0.0.1:{proxy_port}")
        profile = os.path.join(work, "client")
        subprocess.run([postern_bin, "--profile", profile, "join", link], env=env, check=True,
                       capture_output=True, timeout=60)
        subprocess.run([postern_bin, "--profile", profile, "register", "--email", "probe@example.com",
                        "--birthdate", "1990-01-01", "--accept-terms"], env=env, capture_output=True, timeout=120)
    flight = record_first_flight(server_port, run_client)
    check("a real client's first flight is a TLS ClientHello", flight[:1] == b"\x16" and len(flight) > 100,
          repr(flight[:16]))
    # The TLS fingerprint (docs/transport.md): the same JA4 as curl on this system's OpenSSL.
    curl_flight = record_first_flight(server_port, lambda port: subprocess.run(
        ["curl", "-sk", "-o", "/dev/null", "--max-time", "10", f"https://127.0.0.1:{port}/"], timeout=30))
    ours, curls = ja4(flight), ja4(curl_flight)
    print(f"JA4: postern {ours}, curl {curls}", flush=True)
    check("the client's ClientHello has curl's JA4 fingerprint", ours is not None and ours == curls,
          f"postern {ours} != curl {curls}")

    probes = [(label, payload, tls, "localhost") for label, payload, tls in sc.standard_probes(PROBE_SILENCE)]
    probes += [
        ("R1 replay of the client's first flight", flight, False, None),
        ("R2 byte 0 changed", mutate(flight, [0]), False, None),
        ("R3 bytes 0-7 and 62-63 changed", mutate(flight, list(range(8)) + [62, 63]), False, None),
        ("R4 byte 16 changed", mutate(flight, [16]), False, None),
        ("R5 bytes 6 and 16 changed", mutate(flight, [6, 16]), False, None),
        ("TLS with a random server name, GET /", b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", True,
         "www.%08x.example" % random.getrandbits(32)),
    ]

    for name, port, link in (("server", server_port, invite), ("relay", relay_port, relay_link)):
        secret = b64url_decode(param(link, "secret"))
        ws_key = base64.b64encode(os.urandom(16)).decode()
        used = make_token(secret, ws_key)
        check(f"{name}: a fresh valid token passes the front", opens_tunnel(port, used, ws_key))
        altered = used[:20] + ("A" if used[20] != "A" else "B") + used[21:]
        random_token = base64.urlsafe_b64encode(os.urandom(40)).decode().rstrip("=")
        expired = make_token(secret, ws_key, when=time.time() - 3600)
        lookalikes = [
            (f"upgrade with a random token", upgrade_request(random_token, ws_key), True, "localhost"),
            (f"upgrade with an altered token", upgrade_request(altered, ws_key), True, "localhost"),
            (f"upgrade with an expired token", upgrade_request(expired, ws_key), True, "localhost"),
            (f"upgrade with a replayed token", upgrade_request(used, ws_key), True, "localhost"),
        ]
        compare_target(name, nginx_port, port, probes + lookalikes)

    # The cover-origin mode: a real web site behind both, nginx's proxy_pass against ours.
    origin_port, _ = sc.start_nginx(site, tls=False)
    origin = f"http://127.0.0.1:{origin_port}"
    _, cover_port = start([server_bin, "--data", os.path.join(work, "cover-data"), "--listen", "127.0.0.1:0",
                           "--admin-listen", "127.0.0.1:0", "--config", os.path.join(work, "server.toml"),
                           "--cover-origin", origin], os.path.join(work, "cover.err"))
    cover_invite = open(os.path.join(work, "cover-data", "invite.txt")).read().strip()
    # (the nginx proxy gets this server's certificate too: TLS answers must have the same sizes)
    sc.make_certificate = certificate_of(os.path.join(work, "cover-data"))
    proxy_nginx_port, _ = sc.start_nginx(site, http_extra=extra, location=f"proxy_pass {origin};")
    bodies = [
        ("POST with a body", b"POST /form HTTP/1.1\r\nHost: localhost\r\nContent-Length: 11\r\n\r\nhello=world", True,
         "localhost"),
        ("POST with a chunked body, then GET",
         b"POST /form HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
         b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", True, "localhost"),
        ("POST with Expect: 100-continue", b"POST /form HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\n"
         b"Expect: 100-continue\r\n\r\nabc", True, "localhost"),
        ("PUT over client_max_body_size", b"PUT /up HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2000000\r\n\r\n",
         True, "localhost"),
        ("OPTIONS *", b"OPTIONS * HTTP/1.1\r\nHost: localhost\r\n\r\n", True, "localhost"),
        ("DELETE", b"DELETE /index.html HTTP/1.1\r\nHost: localhost\r\n\r\n", True, "localhost"),
        ("absolute-form target", b"GET http://localhost/about.html HTTP/1.1\r\nHost: localhost\r\n\r\n", True,
         "localhost"),
        ("conditional GET", b"GET /style.css HTTP/1.1\r\nHost: localhost\r\nIf-Modified-Since: "
         b"Sun, 01 Jan 2040 00:00:00 GMT\r\n\r\n", True, "localhost"),
        ("range GET", b"GET /index.html HTTP/1.1\r\nHost: localhost\r\nRange: bytes=0-9\r\n\r\n", True, "localhost"),
    ]
    secret = b64url_decode(param(cover_invite, "secret"))
    ws_key = base64.b64encode(os.urandom(16)).decode()
    used = make_token(secret, ws_key)
    check("cover origin: a fresh valid token passes the front", opens_tunnel(cover_port, used, ws_key))
    cover_lookalikes = [
        ("upgrade with a random token",
         upgrade_request(base64.urlsafe_b64encode(os.urandom(40)).decode().rstrip("="), ws_key), True, "localhost"),
        ("upgrade with a replayed token", upgrade_request(used, ws_key), True, "localhost"),
    ]
    compare_target("cover origin", proxy_nginx_port, cover_port, probes + bodies + cover_lookalikes)

    # An origin that is down: nginx's 502 page on both sides.
    closed = sc._free_port()
    _, down_relay_port = start([relay_bin, "--listen", "127.0.0.1:0", "--upstream", os.path.join(data, "invite.txt"),
                                "--data", os.path.join(work, "relay-down"), "--cover-origin",
                                f"http://127.0.0.1:{closed}", "--client-header-timeout-ms", str(TIMEOUT_MS),
                                "--keepalive-timeout-ms", str(TIMEOUT_MS), "--lingering-timeout-ms", "1000"],
                               os.path.join(work, "relay-down.err"))
    sc.make_certificate = certificate_of(os.path.join(work, "relay-down"))
    down_nginx_port, _ = sc.start_nginx(site, http_extra=extra, location=f"proxy_pass http://127.0.0.1:{closed};")
    down_probes = [p for p in probes if p[0] in ("GET /", "GET /random-path", "HEAD /", "POST /", "HTTP/0.9",
                                                 "GET /about.html 1.0")]
    compare_target("relay, origin down", down_nginx_port, down_relay_port, down_probes + bodies[:2])


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # a crash of the script is a failure, never a hang
        import traceback
        traceback.print_exc()
        check("script completed", False, repr(e))
    print(f"{COUNTS['passed']} passed, {COUNTS['failed']} failed", flush=True)
    sys.exit(1 if COUNTS["failed"] else 0)
