#!/usr/bin/env python3
"""Integration test of `postern daemon` (JSON-RPC 2.0, docs/client-api.md): the real postern-server on
127.0.0.1:0, two profiles made with the CLI, and B's daemon on a Unix socket. A message sent by A with
the CLI arrives as a `receive` notification (at every connected client); `send` through the daemon
reaches A; batches, notifications, the standard errors (-32700, -32600, -32601, -32602), an
application error, an over-long line, listContacts, history; the --stdio mode; a stale socket file
replaced at start; `shutdown` and SIGTERM stop it with exit code 0 and remove the socket; the 17th
client is refused; the device removed by another device stops it with exit code 1.

Usage: daemon_test.py PATH/TO/postern-server PATH/TO/postern
"""
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time

from harness import DIRS, PROCS, Server, check, run_main

POSTERN = {"path": "postern"}
A_MAIL = "alice@example.com"
B_MAIL = "bob@example.com"
PASSWORD = "Secret1"


def postern(profile, *args, timeout=60):
    env = dict(os.environ)
    for name in ("POSTERN_PASSPHRASE", "POSTERN_PASSWORD", "POSTERN_PROFILE", "POSTERN_IDENTITY_POLICY"):
        env.pop(name, None)
    return subprocess.run([POSTERN["path"], "--profile", profile, *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def make_profile(server, root, name, email):
    profile = os.path.join(root, name)
    r = postern(profile, "join", os.path.join(server.data, "invite.txt"))
    assert r.returncode == 0, (r.returncode, r.stderr)
    r = postern(profile, "register", "--email", email, "--password", PASSWORD, "--birthdate", "1990-05-17",
                "--accept-terms")
    assert r.returncode == 0, (r.returncode, r.stderr)
    return profile


def start_daemon(profile, *args, **kwargs):
    proc = subprocess.Popen([POSTERN["path"], "--profile", profile, "daemon", *args], **kwargs)
    PROCS.append(proc)
    return proc


def wait_for(predicate, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


class RpcClient:
    """Newline-delimited JSON-RPC over a Unix socket; notifications are kept in .notes."""

    def __init__(self, path, timeout=30):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""
        self.notes = []
        self.next_id = 1

    def send_raw(self, text):
        self.sock.sendall(text.encode() + b"\n")

    def read_message(self, timeout=30):
        """The next line, parsed; None when the daemon closed the connection."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no line from the daemon in time")
            self.sock.settimeout(remaining)
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def answer(self, timeout=30):
        """The next response (an object with an id, or an array), keeping notifications aside."""
        while True:
            m = self.read_message(timeout)
            if m is None or isinstance(m, list) or "method" not in m:
                return m
            self.notes.append(m)

    def call(self, method, params=None, timeout=60):
        request = {"jsonrpc": "2.0", "id": self.next_id, "method": method}
        self.next_id += 1
        if params is not None:
            request["params"] = params
        self.send_raw(json.dumps(request))
        return self.answer(timeout)

    def wait_note(self, predicate, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            for n in self.notes:
                if predicate(n):
                    self.notes.remove(n)
                    return n
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            try:
                m = self.read_message(remaining)
            except TimeoutError:
                return None
            if m is None:
                return None
            self.notes.append(m)

    def close(self):
        self.sock.close()


def is_text(text):
    return lambda n: (n.get("method") == "receive" and n.get("params", {}).get("type") == "text"
                      and n["params"].get("text") == text)


def error_of(reply):
    return (reply or {}).get("error") or {}


def make_stale_socket(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.close()  # the file stays, nobody listens: what a killed daemon leaves behind


def main():
    if len(sys.argv) > 2:
        POSTERN["path"] = sys.argv[2]
    server = Server()
    root = tempfile.mkdtemp(prefix="postern-daemon-")
    DIRS.append(root)
    a = make_profile(server, root, "a", A_MAIL)
    b = make_profile(server, root, "b", B_MAIL)
    r = postern(a, "contacts", "add", B_MAIL)
    check("cli: A adds B as a contact", r.returncode == 0, r.stderr)

    sock_path = os.path.join(root, "b.sock")
    make_stale_socket(sock_path)
    log = open(os.path.join(root, "daemon.log"), "w+")
    daemon = start_daemon(b, "--socket", sock_path, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
    client = None
    try:
        client = RpcClient(sock_path) if wait_for(lambda: _connectable(sock_path), 20) else None
    except OSError:
        client = None
    check("daemon: starts over a stale socket file and accepts a connection", client is not None)
    if client is None:
        return
    mode = os.stat(sock_path).st_mode & 0o777
    check("daemon: the socket has mode 0600", mode == 0o600, oct(mode))

    v = client.call("version")
    check("version: answers with the name, the version and the account",
          v.get("id") == 1 and v.get("result", {}).get("name") == "postern" and v["result"].get("email") == B_MAIL, f"{v}")

    # --- a message from A arrives as a notification ---
    r = postern(a, "send", "--to", B_MAIL, "--text", "hello daemon")
    check("cli: A sends a text to B", r.returncode == 0, r.stderr)
    note = client.wait_note(is_text("hello daemon"), 30)
    check("receive: A's text arrives as a 'receive' notification with type text",
          note is not None and note.get("jsonrpc") == "2.0" and "id" not in note
          and note["params"].get("from") == A_MAIL and note["params"].get("event") == "message", f"{note}")

    # --- every connected client gets the notifications ---
    second = RpcClient(sock_path)
    check("daemon: a second client is served at the same time", second.call("version").get("result") is not None)
    r = postern(a, "send", "--to", B_MAIL, "--text", "to both")
    n1 = client.wait_note(is_text("to both"), 30)
    n2 = second.wait_note(is_text("to both"), 30)
    check("receive: the notification reaches both clients", n1 is not None and n2 is not None, f"{n1} {n2}")
    second.close()

    # --- send through the daemon ---
    s = client.call("send", {"to": A_MAIL, "text": "hi from the daemon"})
    res = s.get("result") or {}
    check("send: returns the sent message", res.get("text") == "hi from the daemon" and res.get("outgoing") is True
          and res.get("type") == "text", f"{s}")
    r = postern(a, "--json", "receive", "--timeout", "2")
    got = [json.loads(l) for l in r.stdout.splitlines() if l.startswith("{")]
    check("send: A's `receive --json` shows the daemon's message",
          r.returncode == 0 and any(g.get("text") == "hi from the daemon" and g.get("from") == B_MAIL for g in got),
          f"rc={r.returncode} {r.stdout!r} {r.stderr!r}")

    # --- typing indicators both ways: the daemon's sendTyping reaches A; A's typing reaches the daemon ---
    t = client.call("sendTyping", {"to": A_MAIL, "started": True})
    check("sendTyping: answered", "result" in t, f"{t}")
    r = postern(a, "--json", "receive", "--timeout", "2")
    got = [json.loads(l) for l in r.stdout.splitlines() if l.startswith("{")]
    check("sendTyping: A sees B typing", any(g.get("event") == "typing" and g.get("from") == B_MAIL and g.get("started") is True
                                            for g in got), f"{r.stdout!r}")

    # --- batch: results in an array, nothing for notifications, an error per bad member ---
    client.send_raw(json.dumps([{"jsonrpc": "2.0", "id": "v", "method": "version"},
                                {"jsonrpc": "2.0", "method": "version"},
                                {"jsonrpc": "2.0", "id": 7, "method": "listContacts"},
                                5]))
    batch = client.answer()
    ok = isinstance(batch, list) and len(batch) == 3
    by_id = {str(x.get("id")): x for x in batch} if ok else {}
    check("batch: one array with a reply per request, none for the notification",
          ok and "result" in by_id.get("v", {}) and isinstance(by_id.get("7", {}).get("result"), list)
          and error_of(by_id.get("None")).get("code") == -32600, f"{batch}")
    client.send_raw("[]")
    empty = client.answer()
    check("batch: an empty array is one -32600", isinstance(empty, dict) and error_of(empty).get("code") == -32600, f"{empty}")
    client.send_raw(json.dumps([{"jsonrpc": "2.0", "method": "version"}]))
    client.send_raw(json.dumps({"jsonrpc": "2.0", "method": "nosuchthing"}))  # a notification: no answer either
    after = client.call("version")
    check("notifications (alone or in a batch) get no answer", after.get("id") == client.next_id - 1 and "result" in after,
          f"{after}")

    # --- errors ---
    u = client.call("frobnicate")
    check("unknown method: -32601", error_of(u).get("code") == -32601 and u.get("id") == client.next_id - 1, f"{u}")
    bad = client.call("send", {"to": 5, "text": "x"})
    check("bad params: -32602 naming the param", error_of(bad).get("code") == -32602 and "'to'" in error_of(bad).get("message", ""),
          f"{bad}")
    bad = client.call("history", {"to": A_MAIL, "limit": "ten"})
    check("bad params: a wrong type of an optional param", error_of(bad).get("code") == -32602
          and "'limit'" in error_of(bad).get("message", ""), f"{bad}")
    bad = client.call("send", {"to": A_MAIL, "text": "x", "colour": "red"})
    check("bad params: an unknown param is refused", error_of(bad).get("code") == -32602
          and "'colour'" in error_of(bad).get("message", ""), f"{bad}")
    bad = client.call("send", {"to": A_MAIL, "group": "g", "text": "x"})
    check("bad params: 'to' and 'group' together", error_of(bad).get("code") == -32602, f"{bad}")
    client.send_raw('{"jsonrpc": "2.0", "id": 1, "method": ')
    p = client.answer()
    check("malformed JSON: -32700 with id null", error_of(p).get("code") == -32700 and "id" in p and p["id"] is None, f"{p}")
    client.send_raw(json.dumps({"id": 3, "method": "version"}))
    p = client.answer()
    check("no 'jsonrpc' member: -32600", error_of(p).get("code") == -32600 and p.get("id") == 3, f"{p}")
    app = client.call("addContact", {"email": "nobody@example.com"})
    e = error_of(app)
    data = e.get("data") or {}
    check("application error: -32000 range with message, code, fields and exit_code",
          -32099 <= (e.get("code") or 0) <= -32000 and data.get("message") and data.get("code")
          and isinstance(data.get("fields"), list) and isinstance(data.get("exit_code"), int), f"{app}")

    # --- lists and history ---
    c = client.call("listContacts")
    emails = [x.get("email") for x in c.get("result") or []]
    check("listContacts: A is a contact", A_MAIL in emails, f"{c}")
    h = client.call("history", {"to": A_MAIL, "limit": 10})
    texts = [x.get("text") for x in h.get("result") or []]
    check("history: both directions, oldest first",
          texts[:1] == ["hello daemon"] and "hi from the daemon" in texts and "to both" in texts, f"{h}")
    h = client.call("history", {"to": A_MAIL, "limit": 1})
    check("history: limit keeps the newest", [x.get("text") for x in h.get("result") or []] == ["hi from the daemon"], f"{h}")
    g = client.call("listGroups")
    check("listGroups: an empty list", g.get("result") == [], f"{g}")

    # --- a line over 1 MiB: an error, then the client is closed ---
    big = RpcClient(sock_path)
    try:
        big.sock.sendall(b'{"jsonrpc": "2.0", "id": 1, "method": "version", "params": {"x": "' + b"a" * (1 << 20))
    except OSError:
        pass
    try:
        reply = big.read_message(10)
        closed = big.read_message(10) is None
    except (OSError, TimeoutError, ValueError):
        reply, closed = None, False
    check("limits: a line over 1 MiB gets an error and the connection is closed",
          reply is not None and error_of(reply).get("code") == -32600 and closed, f"{reply}")
    big.close()
    check("limits: the other clients are still served", "result" in client.call("version"))

    # --- shutdown ---
    sd = client.call("shutdown")
    check("shutdown: answered", sd.get("result") == {}, f"{sd}")
    try:
        code = daemon.wait(timeout=20)
    except subprocess.TimeoutExpired:
        code = None
    check("shutdown: the daemon exits with 0", code == 0, f"{code}")
    check("shutdown: the socket file is removed", not os.path.exists(sock_path))
    client.close()
    log.seek(0)
    text = log.read()
    check("logs: no password or token in the daemon's log", PASSWORD not in text and "token" not in text.lower(), text)

    # --- stdio ---
    stdio = start_daemon(b, "--stdio", stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    stdio.stdin.write(b'{"jsonrpc":"2.0","id":"s1","method":"version"}\n')
    stdio.stdin.flush()
    reply = None
    deadline = time.monotonic() + 20
    while reply is None and time.monotonic() < deadline:
        ready, _, _ = select.select([stdio.stdout], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        line = stdio.stdout.readline()
        if not line:
            break
        m = json.loads(line)
        if m.get("id") == "s1":
            reply = m
    check("--stdio: answers version on stdout", reply is not None and reply.get("result", {}).get("name") == "postern",
          f"{reply}")
    stdio.stdin.close()
    try:
        code = stdio.wait(timeout=20)
    except subprocess.TimeoutExpired:
        code = None
    check("--stdio: the end of stdin stops it with 0", code == 0, f"{code}")

    # --- SIGTERM ---
    daemon = start_daemon(b, "--socket", sock_path, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
    up = wait_for(lambda: _connectable(sock_path), 20)
    daemon.send_signal(signal.SIGTERM)
    try:
        code = daemon.wait(timeout=20)
    except subprocess.TimeoutExpired:
        code = None
    check("SIGTERM: the daemon stops with 0 and removes its socket", up and code == 0 and not os.path.exists(sock_path),
          f"up={up} code={code}")

    # --- at most 16 clients; this device removed by another one: exit code 1 ---
    log2 = open(os.path.join(root, "daemon2.log"), "w+")
    daemon = start_daemon(b, "--socket", sock_path, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log2)
    up = wait_for(lambda: _connectable(sock_path), 20)
    clients = [RpcClient(sock_path) for _ in range(16)]
    served = all("result" in x.call("version") for x in clients)
    extra = RpcClient(sock_path)
    try:
        refusal = extra.read_message(10)
    except (OSError, TimeoutError, ValueError):
        refusal = None
    check("limits: 16 clients are served, the 17th gets -32000 and is closed",
          up and served and error_of(refusal).get("code") == -32000, f"{refusal}")
    extra.close()
    b2 = os.path.join(root, "b2")
    r1 = postern(b2, "join", os.path.join(server.data, "invite.txt"))
    r2 = postern(b2, "login", "--email", B_MAIL, "--password", PASSWORD)
    r3 = postern(b2, "devices", "remove", "1")
    check("cli: a second device of B removes the daemon's device", r1.returncode == r2.returncode == r3.returncode == 0,
          f"{r2.stderr} {r3.stderr}")
    try:
        code = daemon.wait(timeout=20)
    except subprocess.TimeoutExpired:
        code = None
    log2.seek(0)
    text = log2.read()
    check("removed device: the daemon stops with exit code 1 and says why",
          code == 1 and "logged out or removed" in text and not os.path.exists(sock_path), f"code={code} {text}")
    for x in clients:
        x.close()
    log2.close()
    log.close()


def _connectable(path):
    if not os.path.exists(path):
        return False
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


if __name__ == "__main__":
    run_main(main)
