#!/usr/bin/env python3
"""`postern doctor` on staged failures (issue 5): each path's steps and the verdicts in plain words.

Everything runs on 127.0.0.1 and is started (and killed by PID) here: postern-server, a relay, a
TCP listener that resets every connection after the ClientHello, a UDP DNS server that answers
with a forged address, and a DNS-over-HTTPS server (self-signed, trusted with --doh-ca) that
answers the true one.

Cases: a working direct path; a refused port; a reset after the ClientHello; a forged DNS answer
(the plain resolver says 10.66.66.66, DoH says 127.0.0.1); the direct path refused while a relay
added to the profile works ("server address blocked, relay works" or its refused-port form).
Also the client's own name resolution: a name only DNS-over-HTTPS knows (`--doh`), and an invite
that carries the address (`addr=`).

Run: doctor_test.py SERVER POSTERN RELAY
"""
import http.server
import json
import os
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Server, check, run_main  # noqa: E402

POSTERN = {"bin": "postern", "relay": "postern-relay"}


def postern(profile, *args, timeout=120):
    env = dict(os.environ, POSTERN_PASSWORD="Doctor123")
    return subprocess.run([POSTERN["bin"], "--profile", profile, *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def doctor(profile, *extra):
    out = postern(profile, "--json", "doctor", "--step-timeout", "3", *extra)
    try:
        return out.returncode, json.loads(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return out.returncode, {"raw": out.stdout, "err": out.stderr}


def steps(report, path=0):
    return {s["step"]: s for s in report.get("paths", [{}])[path].get("steps", [])}


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ---- staged failures ----

def resetting_listener():
    """Accepts, reads the first flight (the ClientHello), then closes with SO_LINGER 0: an RST."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)

    def serve():
        while True:
            try:
                c, _ = listener.accept()
            except OSError:
                return
            try:
                c.settimeout(5)
                c.recv(4096)
            except OSError:
                pass
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.close()
    threading.Thread(target=serve, daemon=True).start()
    return listener.getsockname()[1]


def dns_answer(query, address):
    """A response to `query` (RFC 1035) with one A record; the query's OPT record is dropped."""
    qid = query[:2]
    i = 12
    while query[i] != 0:
        i += 1 + query[i]
    question = query[12:i + 5]
    header = qid + struct.pack(">HHHHH", 0x8180, 1, 1, 0, 0)
    answer = struct.pack(">HHHIH", 0xC00C, 1, 1, 60, 4) + socket.inet_aton(address)
    return header + question + answer


def forging_dns_server(address):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))

    def serve():
        while True:
            try:
                query, peer = sock.recvfrom(4096)
            except OSError:
                return
            sock.sendto(dns_answer(query, address), peer)
    threading.Thread(target=serve, daemon=True).start()
    return sock.getsockname()[1]


def doh_server(address, directory):
    crt, key = os.path.join(directory, "doh.crt"), os.path.join(directory, "doh.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost", "-days", "2",
                    "-keyout", key, "-out", crt], check=True, capture_output=True)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            query = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            body = dns_answer(query, address)
            self.send_response(200)
            self.send_header("Content-Type", "application/dns-message")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(crt, key)
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd.server_address[1], crt


def main():
    if len(sys.argv) > 2:
        POSTERN["bin"] = sys.argv[2]
    if len(sys.argv) > 3:
        POSTERN["relay"] = sys.argv[3]
    work = tempfile.mkdtemp(prefix="postern-doctor-")
    harness.DIRS.append(work)
    server = Server()
    invite = open(os.path.join(server.data, "invite.txt")).read().strip()
    here = f"127.0.0.1:{server.port}"

    # 1. everything works
    ok_profile = os.path.join(work, "ok")
    postern(ok_profile, "join", invite)
    rc, report = doctor(ok_profile)
    s = steps(report)
    check("working path: exit 0 and works", rc == 0 and report.get("works") is True, str(report))
    check("working path: every step ok",
          all(s.get(n, {}).get("outcome") == "ok" for n in ("dns", "tcp", "tls", "site", "inner", "echo")), str(s))
    check("working path: the site answered 200 and the echo went through the inner channel",
          "200" in s.get("site", {}).get("detail", "") and "inner channel" in s.get("echo", {}).get("detail", ""),
          str(s))
    text = postern(ok_profile, "doctor", "--step-timeout", "3")
    check("text report names the steps and a verdict", "tls" in text.stdout and "verdict:" in text.stdout, text.stdout)

    # 2. a refused port
    refused = os.path.join(work, "refused")
    postern(refused, "join", invite.replace(here, f"127.0.0.1:{free_port()}"))
    rc, report = doctor(refused)
    check("refused port: exit 3, TCP step failed, verdict says refused",
          rc == 3 and steps(report).get("tcp", {}).get("outcome") == "failed" and "refused" in report.get("verdict", ""),
          str(report))

    # 3. reset after the ClientHello
    reset = os.path.join(work, "reset")
    postern(reset, "join", invite.replace(here, f"127.0.0.1:{resetting_listener()}"))
    rc, report = doctor(reset)
    check("reset after the ClientHello: verdict says server-name filtering likely",
          rc == 3 and "reset after the ClientHello" in report.get("verdict", "") and
          "server-name filtering" in report.get("verdict", ""), str(report))

    # 4. a forged DNS answer: the plain resolver lies, DNS-over-HTTPS tells the truth
    forged = os.path.join(work, "forged")
    postern(forged, "join", invite.replace(here, f"postern.test:{server.port}"))
    dns_port = forging_dns_server("10.66.66.66")
    doh_port, doh_ca = doh_server("127.0.0.1", work)
    rc, report = doctor(forged, "--dns-server", f"127.0.0.1:{dns_port}", "--doh",
                        f"https://localhost:{doh_port}/dns-query", "--doh-ca", doh_ca)
    path = report.get("paths", [{}])[0]
    check("forged DNS: the DNS step says the answer looks forged",
          steps(report).get("dns", {}).get("outcome") == "failed" and
          "DNS answer looks forged" in steps(report).get("dns", {}).get("detail", ""), str(report))
    check("forged DNS: both answers reported", path.get("dns", {}).get("system") == ["10.66.66.66"] and
          path.get("dns", {}).get("doh") == ["127.0.0.1"], str(path.get("dns")))
    check("forged DNS: the path works through the DoH answer", rc == 0 and path.get("works") is True and
          "DNS-over-HTTPS" in path.get("verdict", ""), str(report))

    # 4b. the client's own connections: the name through DNS-over-HTTPS, or the invite's addr=
    via_doh = os.path.join(work, "via-doh")
    postern(via_doh, "join", invite.replace(here, f"postern.test:{server.port}"))
    plain = postern(via_doh, "register", "--email", "doh@example.com", "--birthdate", "1990-01-01", "--accept-terms")
    check("a name the system cannot resolve: unreachable without DoH (exit 3)", plain.returncode == 3,
          f"{plain.returncode} {plain.stderr}")
    with_doh = postern(via_doh, "--doh", f"https://localhost:{doh_port}/dns-query", "--doh-ca", doh_ca,
                       "register", "--email", "doh@example.com", "--birthdate", "1990-01-01", "--accept-terms")
    check("the client resolves the server's name through DNS-over-HTTPS (--doh) and registers",
          with_doh.returncode == 0, f"{with_doh.returncode} {with_doh.stderr}")
    with_addr = os.path.join(work, "with-addr")
    postern(with_addr, "join", invite.replace(here, f"postern.test:{server.port}") + "&addr=127.0.0.1")
    by_addr = postern(with_addr, "register", "--email", "addr@example.com", "--birthdate", "1990-01-01",
                      "--accept-terms")
    check("the client uses the invite's addr= instead of DNS and registers", by_addr.returncode == 0,
          f"{by_addr.returncode} {by_addr.stderr}")

    # 5. the server's address refused, a relay works
    relay_dir = os.path.join(work, "relay")
    proc = subprocess.Popen([POSTERN["relay"], "--listen", "127.0.0.1:0", "--upstream",
                             os.path.join(server.data, "invite.txt"), "--data", relay_dir],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    harness.PROCS.append(proc)
    proc.stdout.readline()
    relay_link = open(os.path.join(relay_dir, "relay-link.txt")).read().strip()
    blocked = os.path.join(work, "blocked")
    postern(blocked, "join", invite.replace(here, f"127.0.0.1:{free_port()}"))
    added = postern(blocked, "relays", "add", relay_link)
    check("relays add accepted the relay link", added.returncode == 0, added.stderr)
    rc, report = doctor(blocked)
    paths = report.get("paths", [])
    check("blocked server, working relay: two paths, the relay works",
          len(paths) == 2 and not paths[0].get("works") and paths[1].get("works") is True, str(report))
    check("blocked server, working relay: the verdict names the relay as working",
          rc == 0 and "relay" in report.get("verdict", "") and "works" in report.get("verdict", ""), str(report))


if __name__ == "__main__":
    run_main(main)
