#!/usr/bin/env python3
"""Compares how two TLS web servers react to the same probes, the way an active prober does.

Design: `start_nginx()` runs a stock nginx 1.22 (Debian's /usr/sbin/nginx) with a private prefix
and configuration in a temporary directory (no master process, no daemon, its pid and error log
in that directory, a self-signed certificate made with `openssl req`, an `ssl` listener on a free
127.0.0.1 port or the addresses given, `root` = the site directory, otherwise nginx's defaults),
optionally through a command prefix such as `ip netns exec NS` (the censor test runs it in a
network namespace), and kills it by PID when the script exits (or at `cleanup()`). `probe()` opens a connection (TLS or raw TCP), sends raw bytes and records the
reaction: the bytes received (status line, header names in order, body), how the connection ended
(FIN, RST, or still open at the timeout) and after how long, as a coarse timing class. A prober
sees exactly these things; header values such as Date are left out on purpose.

Run as `python3 tests/integration/site_compare.py [--site DIR] [--timeout S]`: it compares nginx
with a second nginx on the same directory (a sanity check of the method; the probe test later
points side B at Postern's front), prints a table and exits non-zero on any mismatch.
`--dump` prints what side A sent, which is how the C++ site (src/postern/transport/site.cpp) was
checked byte for byte.
"""
import argparse
import atexit
import os
import random
import select
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time

NGINX = "/usr/sbin/nginx"
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_PROCS = []
_DIRS = []


def cleanup():
    """Kills every nginx started here (by PID) and removes the temporary directories; also run at
    exit. For scripts that must stop nginx earlier (before deleting its network namespace)."""
    for p in _PROCS:
        if p.poll() is None:
            try:
                os.kill(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()
    for d in _DIRS:
        shutil.rmtree(d, ignore_errors=True)


atexit.register(cleanup)


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def make_certificate(directory):
    """A throw-away self-signed certificate and key for CN=localhost (PEM files in `directory`)."""
    crt, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-subj", "/CN=localhost", "-days", "2", "-keyout", key, "-out", crt],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return crt, key


def wait_port(host, port, seconds=10, prefix=(), process=None):
    """Whether a TCP connection to host:port opens within `seconds` (tried every 50 ms). With a
    command `prefix` (e.g. ["ip", "netns", "exec", NS]) this function runs again through it (in a
    child Python, so in that namespace); without, it gives up early when `process` (a Popen) has
    exited."""
    if prefix:
        here = os.path.dirname(os.path.abspath(__file__))
        code = (f"import sys; sys.path.insert(0, {here!r}); import site_compare; "
                f"sys.exit(0 if site_compare.wait_port({host!r}, {int(port)}, {seconds}) else 1)")
        r = subprocess.run(list(prefix) + [sys.executable, "-c", code], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=seconds + 10)
        return r.returncode == 0
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            socket.create_connection((host, port), timeout=0.5).close()
            return True
        except OSError:
            if process is not None and process.poll() is not None:
                return False
            time.sleep(0.05)
    return False


def start_nginx(site_dir, tls=True, http_extra="", location=None, listen=None, prefix=(), worker_connections=64):
    """Starts nginx serving `site_dir`; returns (port, temp dir), the port of its first listen
    address. Killed by PID at exit (or at cleanup()).

    `http_extra` adds directives to the http block (e.g. shorter client_header_timeout and
    keepalive_timeout, which the front copies from NginxLimits); `location` replaces the body of
    `location /` (e.g. "proxy_pass http://127.0.0.1:PORT;" for a reverse proxy). `listen`: the
    "IP:PORT" addresses to listen on (a string or a list; default a free 127.0.0.1 port).
    `prefix`: a command that runs nginx, e.g. ["ip", "netns", "exec", NS] to run it in a network
    namespace; it must exec nginx (as `ip netns exec` does), so that the PID killed is nginx's."""
    if location is None:
        location = f"root {os.path.abspath(site_dir)}; index index.html;"
    if listen is None:
        listen = [f"127.0.0.1:{_free_port()}"]
    elif isinstance(listen, str):
        listen = [listen]
    tmp = tempfile.mkdtemp(prefix="postern-nginx-")
    _DIRS.append(tmp)
    crt, key = make_certificate(tmp)
    listen_conf = "\n        ".join(f"listen {a}{' ssl' if tls else ''};" for a in listen)
    ssl_conf = f"ssl_certificate {crt}; ssl_certificate_key {key};" if tls else ""
    conf = f"""
daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log info;
events {{ worker_connections {worker_connections}; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log {tmp}/access.log;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    {http_extra}
    server {{
        {listen_conf}
        {ssl_conf}
        location / {{
            {location}
        }}
    }}
}}
"""
    with open(os.path.join(tmp, "nginx.conf"), "w") as f:
        f.write(conf)
    proc = subprocess.Popen(list(prefix) + [NGINX, "-p", tmp, "-c", os.path.join(tmp, "nginx.conf"), "-e",
                                            os.path.join(tmp, "error.log")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _PROCS.append(proc)
    for address in listen:
        host, port = address.rsplit(":", 1)
        if not wait_port(host, int(port), 10, prefix, proc):
            if proc.poll() is not None:
                raise RuntimeError("nginx exited: " + open(os.path.join(tmp, "error.log")).read())
            raise RuntimeError(f"nginx did not start on {address}")
    return int(listen[0].rsplit(":", 1)[1]), tmp


class Reaction:
    def __init__(self, data, end, seconds, tls_error=None):
        self.data, self.end, self.seconds, self.tls_error = data, end, seconds, tls_error

    def timing(self):
        if self.end == "open":
            return "open"
        return "<1s" if self.seconds < 1.0 else f"~{round(self.seconds)}s"

    def summary(self):
        """What a prober compares: status lines, header names in order, bodies, end, timing."""
        parts = []
        rest = self.data
        while rest:
            head, sep, after = rest.partition(b"\r\n\r\n")
            if not sep or not head.startswith(b"HTTP/"):
                parts.append(("raw", rest))
                break
            lines = head.split(b"\r\n")
            names = [ln.split(b":", 1)[0] for ln in lines[1:]]
            length = 0
            for ln in lines[1:]:
                k, _, v = ln.partition(b":")
                if k.strip().lower() == b"content-length":
                    length = int(v.strip())
            parts.append((lines[0], tuple(names), after[:length]))
            rest = after[length:]
        return (tuple(parts), self.end, self.timing())


def probe(host, port, payload, tls=True, timeout=3.0, server_hostname="localhost", then=None):
    """Sends `payload` (bytes) and records the reaction until the peer closes or `timeout` passes
    with nothing more arriving. `then` = (delay_s, bytes): sent after the first data arrived and
    `delay_s` passed (to tell a plain close, where more bytes draw an RST, from a lingering close)."""
    raw = socket.create_connection((host, port), timeout=5)
    sock = raw
    start = time.monotonic()
    if tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        sock = ctx.wrap_socket(raw, server_hostname=server_hostname)
        start = time.monotonic()
    if payload:
        sock.sendall(payload)
    data = b""
    end = "open"
    last = time.monotonic()
    sent_then = False
    sock.setblocking(False)
    try:
        while True:
            wait = timeout - (time.monotonic() - last)
            if then and data and not sent_then:
                wait = min(wait, then[0])
            if wait <= 0:
                break
            ready = (tls and sock.pending()) or select.select([sock], [], [], wait)[0]
            if then and data and not sent_then and not ready:
                try:
                    sock.send(then[1])
                except OSError:
                    end = "RST"
                    break
                sent_then = True
                continue
            if not ready:
                break
            try:
                chunk = sock.recv(65536)
            except ssl.SSLWantReadError:
                continue
            except ConnectionResetError:
                end = "RST"
                break
            except (ssl.SSLEOFError, ssl.SSLZeroReturnError):
                end = "FIN"
                break
            except ssl.SSLError as e:
                end = "TLS:" + e.reason if e.reason else "TLS"
                break
            if not chunk:
                end = "FIN"
                if then and not sent_then:
                    # after a FIN, more bytes from us tell a plain close (the kernel answers
                    # them with an RST, so the next send fails) from a lingering close (read
                    # and discarded): "FIN+RST" vs "FIN+linger"
                    try:
                        time.sleep(then[0])
                        raw.send(then[1])
                        time.sleep(0.3)
                        raw.send(then[1])
                        end = "FIN+linger"
                    except (ConnectionResetError, BrokenPipeError):
                        end = "FIN+RST"
                    except OSError:
                        end = "FIN?"
                break
            data += chunk
            last = time.monotonic()
    finally:
        elapsed = time.monotonic() - start
        sock.close()
    return Reaction(data, end, elapsed)


NR_LENGTHS = (7, 8, 9, 11, 12, 13, 15, 16, 17, 21, 22, 23, 32, 33, 34, 40, 41, 42, 48, 49, 50, 221)


def nr_payloads(seed=20201027):
    """IMC 2020's random probes (NR1 lengths, NR2 = 221 bytes) from a fixed seed: one plainly random
    payload per length (its first byte decides whether nginx reads HTTP or TLS), plus, for some
    lengths, one that looks like the start of a TLS handshake record (0x16 0x03 0x01)."""
    rng = random.Random(seed)
    out = []
    for n in NR_LENGTHS:
        b = rng.randbytes(n)
        out.append((f"NR{n}-first{b[0]:02x}", b))
    for n in (7, 16, 50, 221):
        b = b"\x16\x03\x01" + rng.randbytes(n - 3)
        out.append((f"NR{n}-tls-record", b))
    return out


def standard_probes(timeout):
    probes = [
        ("GET /", b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", True),
        ("GET /random-path", b"GET /x7Gq2/random-path HTTP/1.1\r\nHost: localhost\r\n\r\n", True),
        ("HEAD /", b"HEAD / HTTP/1.1\r\nHost: localhost\r\n\r\n", True),
        ("POST /", b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\n\r\nabc", True),
        ("GET /about.html 1.0", b"GET /about.html HTTP/1.0\r\n\r\n", True),
        ("GET /style.css", b"GET /style.css HTTP/1.1\r\nHost: localhost\r\n\r\n", True),
        ("dir without slash", b"GET /sub HTTP/1.1\r\nHost: localhost\r\n\r\n", True),
        ("no Host 1.1", b"GET / HTTP/1.1\r\n\r\n", True),
        ("bad method char", b"get / HTTP/1.1\r\nHost: x\r\n\r\n", True),
        ("HTTP/2.0", b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", True),
        ("dotdot escape", b"GET /../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n", True),
        ("HTTP/0.9", b"GET /\r\n", True),
        ("plain HTTP to TLS port", b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", False),
        ("plain garbage to TLS port", b"hello\r\n\r\n", False),
        ("empty, wait", b"", False),
    ]
    for name, payload in nr_payloads():
        probes.append((name, payload, False))
    return probes


def compare(port_a, port_b, timeout, dump=False, host="127.0.0.1"):
    """Runs every probe against both sides (in parallel threads) and prints the table; returns
    the number of probes whose reactions differ."""
    import concurrent.futures
    mismatches = 0
    print(f"{'probe':26} {'A: first line':32} {'end':10} {'time':6} verdict")
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        jobs = []
        for name, payload, tls in standard_probes(timeout):
            # raw probes also tell a plain close from a lingering close (bytes sent after the FIN)
            then = None if tls else (0.5, b"zz")
            jobs.append((name, pool.submit(probe, host, port_a, payload, tls, timeout, "localhost", then),
                         pool.submit(probe, host, port_b, payload, tls, timeout, "localhost", then)))
        for name, fa, fb in jobs:
            a, b = fa.result(), fb.result()
            same = a.summary() == b.summary()
            mismatches += not same
            first = a.data.split(b"\r\n", 1)[0][:30]
            if not a.data:
                first = "(no data)"
            elif all(0x20 <= c < 0x7f for c in first):
                first = first.decode("ascii")
            else:
                first = f"({len(a.data)} bytes: {a.data[:6].hex()}...)"
            print(f"{name:26} {first:32} {a.end:10} {a.timing():6} {'same' if same else 'DIFFERENT'}")
            if dump:
                print("    " + repr(a.data[:600]))
            if not same:
                print("    A:", a.summary())
                print("    B:", b.summary())
    return mismatches


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--site", default=os.path.join(REPO, "share", "site"))
    ap.add_argument("--timeout", type=float, default=3.0, help="seconds of silence that count as 'open'")
    ap.add_argument("--dump", action="store_true", help="print side A's raw answers")
    args = ap.parse_args()
    site = tempfile.mkdtemp(prefix="postern-site-")
    _DIRS.append(site)
    shutil.copytree(args.site, site, dirs_exist_ok=True)
    os.makedirs(os.path.join(site, "sub"), exist_ok=True)
    # Shorter timeouts than nginx's defaults keep the run short; the front takes the same values.
    extra = "client_header_timeout 2s; keepalive_timeout 2s; lingering_timeout 1s;"
    port_a, _ = start_nginx(site, http_extra=extra)
    port_b, _ = start_nginx(site, http_extra=extra)
    mismatches = compare(port_a, port_b, args.timeout, args.dump)
    print(f"{mismatches} mismatches")
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
