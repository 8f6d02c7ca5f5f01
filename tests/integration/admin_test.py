#!/usr/bin/env python3
"""Integration test of postern-server's admin listener (--admin-listen): starts the real binary with
--listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 and a temporary data directory, then checks
GET /metrics (Prometheus text format 0.0.4), GET /healthz, 404 and 405, and that a counter moves
after a request on the TLS port.

Usage: admin_test.py PATH/TO/postern-server
Prints PASS/FAIL lines and "N passed, M failed"; exits non-zero on any failure. The server is
killed by PID when the script ends, whatever happens. Standard library only; the shared helpers are
in harness.py.
"""
import http.client
import re
import socket
import subprocess

from harness import Server, check, run_main

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*"'
                    r'(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*")*\})? (-?[0-9.e+]+|NaN|[+-]Inf)$')


def admin_get(port, path, method="GET", body=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body)
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read().decode()
    finally:
        conn.close()


def parse_metrics(text):
    """{sample name with labels: value}, {family: type}, and the lines that do not parse."""
    samples, types, helps, bad = {}, {}, set(), []
    for line in text.splitlines():
        if line.startswith("# HELP "):
            helps.add(line.split(" ")[2])
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            types[name] = kind
        else:
            m = SAMPLE.match(line)
            if not m or m.group(1) not in types or m.group(1) not in helps:
                bad.append(line)
                continue
            samples[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return samples, types, bad


def main():
    a = Server()  # harness.Server starts it with --admin-listen 127.0.0.1:0
    first = a.listen_line
    second = a.read_admin_line()
    check("first line is the TLS listener", first.startswith("listening on "), repr(first))
    check("second line is the admin listener", second.startswith("admin listening on 127.0.0.1:"), repr(second))
    if not first.startswith("listening on ") or not second.startswith("admin listening on "):
        a.stderr.seek(0)
        print(a.stderr.read())
        return
    port = a.port
    admin = a.admin_port
    check("admin port differs from the TLS port", admin != port and admin != 0)

    status, headers, body = admin_get(admin, "/healthz")
    check("GET /healthz is 200 ok", status == 200 and body.strip() == "ok", f"{status} {body!r}")

    status, headers, body = admin_get(admin, "/metrics")
    check("GET /metrics is 200", status == 200, str(status))
    ctype = headers.get("Content-Type", "")
    check("Content-Type text/plain; version=0.0.4",
          ctype.startswith("text/plain") and "version=0.0.4" in ctype, ctype)
    samples, types, bad = parse_metrics(body)
    check("every line parses, after its HELP and TYPE", not bad, repr(bad[:3]))
    check("body ends with a newline", body.endswith("\n"))
    for name in ["postern_http_requests_total", "postern_ws_connections", "postern_messages_pushed_total",
                 "postern_connections", "postern_group_commit_rounds_total", "process_resident_memory_bytes",
                 "process_open_fds", "postern_uptime_seconds", "postern_build_info"]:
        check(f"metric {name} present", name in types)
    check("counters are typed counter", types.get("postern_messages_acked_total") == "counter")
    check("build_info has a version label",
          any(k.startswith('postern_build_info{version="') for k in samples), repr(list(samples)[:5]))
    check("resident memory is positive", samples.get("process_resident_memory_bytes", 0) > 0)
    check("open fds positive", samples.get("process_open_fds", 0) > 0)
    before = samples.get('postern_http_requests_total{code="2xx"}', -1)
    check("2xx counter starts at 0", before == 0, str(before))

    # A request on the TLS port moves the counter.
    status, _, _ = a.request("POST", "/v1/challenge")
    check("challenge on the TLS port is 200", status == 200, str(status))
    _, _, body = admin_get(admin, "/metrics")
    samples, _, _ = parse_metrics(body)
    after = samples.get('postern_http_requests_total{code="2xx"}', -1)
    check("2xx counter moved by one", after == before + 1, f"{before} -> {after}")
    check("no e-mail, token or key material in metrics", "@" not in body and "Bearer" not in body)

    status, _, _ = admin_get(admin, "/")
    check("GET / is 404", status == 404, str(status))
    status, _, _ = admin_get(admin, "/v1/challenge", method="POST")
    check("unknown path with POST is 404", status == 404, str(status))
    status, headers, _ = admin_get(admin, "/metrics", method="POST")
    check("POST /metrics is 405 with Allow", status == 405 and "GET" in headers.get("Allow", ""), str(status))
    status, _, _ = admin_get(admin, "/healthz", method="DELETE")
    check("DELETE /healthz is 405", status == 405, str(status))
    status, headers, body = admin_get(admin, "/metrics", method="HEAD")
    check("HEAD /metrics is 200 without a body", status == 200 and body == "", f"{status} {len(body)}")
    status, _, _ = admin_get(admin, "/metrics", method="POST", body=b"x" * 10)
    check("a request with a body is refused", status in (400, 405), str(status))

    # An oversized header gets 431 (or the connection is closed), never a crash.
    s = socket.create_connection(("127.0.0.1", admin), timeout=10)
    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n")
    reply = b""
    try:
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            reply += chunk
    except (ConnectionResetError, socket.timeout):
        pass
    s.close()
    check("oversized header gets 431 or a close", reply == b"" or b" 431 " in reply.split(b"\r\n")[0],
          repr(reply[:40]))
    status, _, _ = admin_get(admin, "/healthz")
    check("still serving after the oversized header", status == 200)

    # SIGTERM stops both listeners; the process exits 0 even with an idle admin connection open.
    idle = socket.create_connection(("127.0.0.1", admin), timeout=10)
    try:
        code = a.stop()
    except subprocess.TimeoutExpired:
        code = None
    idle.close()
    check("SIGTERM exits 0 with an idle admin connection", code == 0, str(code))


if __name__ == "__main__":
    run_main(main)
