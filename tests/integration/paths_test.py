#!/usr/bin/env python3
"""Client paths end to end (docs/paths.md): relays added to a profile, fallback from a
black-holed direct path to a relay, a SOCKS5 proxy (microsocks) and an HTTP CONNECT proxy.

    paths_test.py POSTERN_SERVER POSTERN POSTERN_RELAY

Everything listens on 127.0.0.1; every process is started here and killed by its PID at the end
(harness.run_main). Python standard library only.

- Relay: a profile whose direct address is dead (a closed port) registers, sends a text and a
  picture and receives a reply through a relay added with `relays add`. A recording proxy between
  the client and the relay checks that the bytes the relay carried never contain the text or a
  piece of the picture, and the relay's stderr never contains the text.
- Fallback: a profile's direct path goes through a proxy that, mid-session, black-holes the
  connections (keeps them open, drops every byte). `postern receive` notices it through the
  WebSocket keep-alive pings, reopens through the relay and gets the messages sent afterwards
  within 10 s; every message before and after is shown exactly once.
- SOCKS5: microsocks with a user name and password; the client's invite names `localhost` and a
  counting proxy in front of the server. The client reaches the server only through microsocks:
  microsocks logs "connected to localhost:PORT" (the name went to the proxy, not an address), and a
  wrong proxy password makes the send fail (exit 3) without any connection reaching the server.
- HTTP CONNECT: a small proxy in this script (Basic auth) is asked for localhost:PORT; a 407 is
  exit 3.
"""
import hashlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check  # noqa: E402

CLIENT = {"path": "postern", "relay": "postern-relay"}
PASSWORD = "Secret1"


class Profile:
    def __init__(self, root, name, proxy=None):
        self.dir = os.path.join(root, name)
        self.name = name
        self.proxy = proxy

    def cmd(self, args, json_output=True, proxy=None):
        proxy = proxy or self.proxy
        return ([CLIENT["path"], "--profile", self.dir] + (["--json"] if json_output else []) +
                (["--proxy", proxy] if proxy else []) + list(args))

    def run(self, *args, timeout=120, env=None, json_output=True, proxy=None):
        e = dict(os.environ)
        e.pop("POSTERN_PASSPHRASE", None)
        e.pop("POSTERN_PROXY", None)
        if env:
            e.update(env)
        r = subprocess.run(self.cmd(args, json_output, proxy), capture_output=True, text=True, timeout=timeout, env=e)
        r.lines = []
        for line in r.stdout.splitlines():
            try:
                r.lines.append(json.loads(line))
            except ValueError:
                pass
        return r

    def popen(self, *args):
        e = dict(os.environ)
        e.pop("POSTERN_PROXY", None)
        p = subprocess.Popen(self.cmd(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=e)
        harness.PROCS.append(p)
        return p

    def messages(self, timeout=2):
        r = self.run("receive", "--timeout", str(timeout))
        return r, [j for j in r.lines if j.get("event") == "message"]


def register(profile, invite, email):
    r = profile.run("join", invite)
    assert r.returncode == 0, r.stderr
    r = profile.run("register", "--email", email, "--password", PASSWORD, "--birthdate", "1990-01-01", "--accept-terms")
    assert r.returncode == 0, r.stderr
    return profile


class Proxy:
    """A TCP proxy on loopback. Records every byte it carries (both ways), counts connections, and
    can black-hole: keep every socket open and drop what arrives (a censor's silent drop)."""

    def __init__(self, target_port):
        self.target_port = target_port
        self.black_hole = False
        self.connections = 0
        self.recorded = bytearray()
        self.lock = threading.Lock()
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(32)
        self.port = self.listener.getsockname()[1]
        self.running = True
        threading.Thread(target=self.accept_loop, daemon=True).start()

    def accept_loop(self):
        while self.running:
            try:
                c, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
            if self.black_hole:
                threading.Thread(target=self.swallow, args=(c,), daemon=True).start()
                continue
            try:
                s = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                c.close()
                continue
            threading.Thread(target=self.pump, args=(c, s), daemon=True).start()
            threading.Thread(target=self.pump, args=(s, c), daemon=True).start()

    def swallow(self, sock):
        try:
            while sock.recv(65536):
                pass
        except OSError:
            pass

    def pump(self, src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if self.black_hole:
                    continue  # dropped; the socket stays open
                with self.lock:
                    self.recorded += data
                dst.sendall(data)
        except OSError:
            pass
        if self.black_hole:
            return  # keep both sides open: a black hole never says goodbye
        for sock in (src, dst):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def close(self):
        self.running = False
        self.listener.close()


class ConnectProxy:
    """A minimal HTTP CONNECT proxy (Basic auth) that notes the targets it was asked for."""

    def __init__(self, user, password):
        import base64
        self.expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.targets = []
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self.accept_loop, daemon=True).start()

    def accept_loop(self):
        while True:
            try:
                c, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, c):
        head = b""
        while b"\r\n\r\n" not in head:
            data = c.recv(1)
            if not data:
                c.close()
                return
            head += data
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = {l.split(":", 1)[0].strip().lower(): l.split(":", 1)[1].strip() for l in lines[1:] if ":" in l}
        self.targets.append(target)
        if method != "CONNECT" or headers.get("proxy-authorization") != self.expected:
            c.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
            c.close()
            return
        host, port = target.rsplit(":", 1)
        try:
            s = socket.create_connection((host, int(port)))
        except OSError:
            c.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            c.close()
            return
        c.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        for a, b in ((c, s), (s, c)):
            threading.Thread(target=self.pump, args=(a, b), daemon=True).start()

    def pump(self, src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self):
        self.listener.close()


def with_port(link, port, host=None):
    head, query = link.split("?", 1)
    authority = head[len("postern://"):]
    prefix = ""
    if authority.startswith("relay@"):
        prefix, authority = "relay@", authority[len("relay@"):]
    old_host = authority.rsplit(":", 1)[0]
    return f"postern://{prefix}{host or old_host}:{port}?{query}"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start_relay(root, invite_file):
    data = os.path.join(root, "relay")
    err = open(os.path.join(root, "relay-stderr.log"), "w+")
    p = subprocess.Popen([CLIENT["relay"], "--listen", "127.0.0.1:0", "--upstream", invite_file, "--data", data],
                         stdout=subprocess.PIPE, stderr=err)
    harness.PROCS.append(p)
    ready, _, _ = select.select([p.stdout], [], [], 30)
    line = p.stdout.readline().decode() if ready else ""
    if not line.startswith("listening on "):
        err.seek(0)
        raise RuntimeError(f"relay did not start: {line!r} {err.read()}")
    port = int(line.strip().rsplit(":", 1)[1])
    link = open(os.path.join(data, "relay-link.txt")).read().strip()
    return p, port, link, err


class Collector:
    """Reads a `postern --json receive` process's stdout, noting when each message arrived."""

    def __init__(self, proc):
        self.proc = proc
        self.events = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def loop(self):
        for line in self.proc.stdout:
            try:
                j = json.loads(line)
            except ValueError:
                continue
            with self.lock:
                self.events.append((time.monotonic(), j))

    def texts(self):
        with self.lock:
            return [(t, j.get("text")) for t, j in self.events if j.get("event") == "message"]

    def wait_for(self, wanted, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = {text for _, text in self.texts()}
            if set(wanted) <= got:
                return True
            time.sleep(0.05)
        return False


def main():
    if len(sys.argv) > 2:
        CLIENT["path"] = sys.argv[2]
    if len(sys.argv) > 3:
        CLIENT["relay"] = sys.argv[3]
    root = tempfile.mkdtemp(prefix="postern-paths-it-")
    harness.DIRS.append(root)
    server = harness.Server()
    invite_file = os.path.join(server.data, "invite.txt")
    invite = open(invite_file).read().strip()
    relay_proc, relay_port, relay_link, relay_err = start_relay(root, invite_file)
    check("relay link is a relay link", relay_link.startswith("postern://relay@"), relay_link[:30])

    alice = register(Profile(root, "alice"), invite, "alice@example.com")

    # ---- relays add / list / remove ----
    recorder = Proxy(relay_port)  # client -> recorder -> relay -> server
    recorded_link = with_port(relay_link, recorder.port)
    dead_invite = with_port(invite, free_port())  # the direct address answers nothing (refused)
    carol = Profile(root, "carol")
    r = carol.run("join", dead_invite)
    check("carol joins the server (its direct address is dead)", r.returncode == 0, r.stderr)
    r = carol.run("relays", "add", invite)
    check("relays add refuses a server invite", r.returncode != 0 and "not a relay link" in r.stderr, r.stderr)
    other_key = relay_link.split("key=", 1)
    wrong = other_key[0] + "key=" + ("A" if other_key[1][0] != "A" else "B") + other_key[1][1:]
    r = carol.run("relays", "add", wrong)
    check("relays add refuses a relay of another server", r.returncode != 0 and "another server" in r.stderr, r.stderr)
    r = carol.run("relays", "add", recorded_link)
    check("relays add stores the relay", r.returncode == 0, r.stderr)
    r = carol.run("relays", "list", json_output=False)
    secret = relay_link.split("secret=", 1)[1].split("&", 1)[0]
    check("relays list shows HOST:PORT", r.stdout.strip() == f"127.0.0.1:{recorder.port}", r.stdout)
    check("relays list never shows the secret", secret not in r.stdout and "secret" not in r.stdout + r.stderr, r.stdout)
    r = carol.run("relays", "remove", "127.0.0.1:1")
    check("relays remove of an unknown relay fails", r.returncode != 0, r.stdout)

    # ---- text and a picture through the relay ----
    r = carol.run("register", "--email", "carol@example.com", "--password", PASSWORD, "--birthdate", "1990-01-01",
                  "--accept-terms")
    check("carol registers through the relay", r.returncode == 0, r.stderr)
    text = "through the relay: plaintext-marker-7f3a9c"
    r = carol.run("send", "--to", "alice@example.com", "--text", text)
    check("text sent through the relay", r.returncode == 0, r.stderr)
    pic = os.path.join(root, "photo.png")
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=1",
                    "-frames:v", "1", pic], check=True)
    r = carol.run("send", "--to", "alice@example.com", "--file", pic, "--caption", "picture via relay")
    check("picture sent through the relay", r.returncode == 0, r.stderr)
    _, msgs = alice.messages()
    texts = [m.get("text") for m in msgs]
    check("alice gets the text sent through the relay", texts.count(text) == 1, texts)
    img = [m for m in msgs if m.get("type") == "image"]
    with open(pic, "rb") as f:
        pic_bytes = f.read()
    check("picture arrives intact", len(img) == 1 and img[0].get("sha256") == hashlib.sha256(pic_bytes).hexdigest(), img)
    reply = "reply to carol: plaintext-marker-51be02"
    r = alice.run("send", "--to", "carol@example.com", "--text", reply)
    _, msgs = carol.messages()
    check("carol receives the reply through the relay", [m.get("text") for m in msgs] == [reply], msgs)
    with recorder.lock:
        carried = bytes(recorder.recorded)
    check("the relay carried traffic", len(carried) > len(pic_bytes), len(carried))
    piece = pic_bytes[len(pic_bytes) // 2:len(pic_bytes) // 2 + 48]
    check("the bytes through the relay never contain the text",
          text.encode() not in carried and reply.encode() not in carried and b"plaintext-marker" not in carried)
    check("the bytes through the relay never contain the picture", piece not in carried and pic_bytes[:64] not in carried)
    relay_err.flush()
    relay_err.seek(0)
    relay_log = relay_err.read()
    check("the relay's log has no message text", "plaintext-marker" not in relay_log and secret not in relay_log)
    r = carol.run("relays", "remove", f"127.0.0.1:{recorder.port}")
    check("relays remove", r.returncode == 0, r.stderr)
    r = carol.run("relays", "list")
    check("relays list is empty after remove", r.lines == [], r.stdout)
    r = carol.run("send", "--to", "alice@example.com", "--text", "no path left")
    check("without the relay the dead direct path is unreachable (exit 3)", r.returncode == 3, r.stderr)

    # ---- fallback from a black-holed direct path ----
    hole = Proxy(server.port)
    dave = register(Profile(root, "dave"), with_port(invite, hole.port), "dave@example.com")
    r = dave.run("relays", "add", relay_link)
    check("dave adds the relay", r.returncode == 0, r.stderr)
    before = [f"before black hole #{i}" for i in range(3)]
    after = [f"after black hole #{i}" for i in range(3)]
    for t in before:
        r = alice.run("send", "--to", "dave@example.com", "--text", t)
        check(f"sent {t!r}", r.returncode == 0, r.stderr)
    listener = dave.popen("receive", "--timeout", "8")
    got = Collector(listener)
    check("the messages before arrive over the direct path", got.wait_for(before, 30), got.texts())
    time.sleep(0.5)
    hole.black_hole = True
    cut = time.monotonic()
    for t in after:
        r = alice.run("send", "--to", "dave@example.com", "--text", t)
        check(f"sent {t!r}", r.returncode == 0, r.stderr)
    arrived = got.wait_for(after, 30)
    times = [t for t, text in got.texts() if text in after]
    delay = (max(times) - cut) if arrived and times else None
    print(f"fallback: the messages sent after the black hole arrived {delay and round(delay, 2)} s after it", flush=True)
    check("messages sent after the black hole arrive through the relay within 10 s", arrived and delay < 10,
          f"delay={delay} {got.texts()}")
    try:
        _, err = listener.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.kill(listener.pid, signal.SIGKILL)
        _, err = listener.communicate()
    check("receive ended cleanly after the path change", listener.returncode == 0, err)
    # A later run starts on the relay (the path that worked last) and gets nothing twice.
    start = time.monotonic()
    r, msgs = dave.messages(timeout=2)
    print(f"fallback: the next receive took {round(time.monotonic() - start, 2)} s", flush=True)
    all_texts = [text for _, text in got.texts()] + [m.get("text") for m in msgs]
    check("every message shown exactly once", all(all_texts.count(t) == 1 for t in before + after) and
          len(all_texts) == len(before + after), all_texts)
    r = dave.run("send", "--to", "alice@example.com", "--text", "dave after the switch")
    check("dave sends through the relay while the direct path is black-holed", r.returncode == 0, r.stderr)
    _, msgs = alice.messages()
    check("alice gets it once", [m.get("text") for m in msgs].count("dave after the switch") == 1, msgs)

    # ---- SOCKS5 through microsocks ----
    counter = Proxy(server.port)  # the server as seen through a counter
    socks_port = free_port()
    socks_log = open(os.path.join(root, "microsocks.log"), "w+")
    socks = subprocess.Popen(["/usr/bin/microsocks", "-i", "127.0.0.1", "-p", str(socks_port), "-u", "puser", "-P", "ppass"],
                             stdout=socks_log, stderr=socks_log)
    harness.PROCS.append(socks)
    time.sleep(0.5)
    proxy_url = f"socks5://puser:ppass@127.0.0.1:{socks_port}"
    erin = Profile(root, "erin", proxy=proxy_url)
    register(erin, with_port(invite, counter.port, host="localhost"), "erin@example.com")
    check("erin registers through SOCKS5", True)
    r = erin.run("send", "--to", "alice@example.com", "--text", "via socks5")
    check("erin sends through SOCKS5", r.returncode == 0, r.stderr)
    _, msgs = alice.messages()
    check("alice gets the message sent through SOCKS5", [m.get("text") for m in msgs] == ["via socks5"], msgs)
    socks_log.flush()
    socks_log.seek(0)
    log = socks_log.read()
    check("microsocks connected to the server by name", f"connected to localhost:{counter.port}" in log, log[-500:])
    seen = counter.connections
    check("the server was reached", seen >= 1, seen)
    r = erin.run("send", "--to", "alice@example.com", "--text", "wrong proxy password",
                 proxy=f"socks5://puser:wrong@127.0.0.1:{socks_port}")
    check("a wrong proxy password: unreachable (exit 3)", r.returncode == 3, r.stderr)
    check("... and nothing reached the server", counter.connections == seen, counter.connections)
    e = dict(os.environ, POSTERN_PROXY=proxy_url)
    r = subprocess.run([CLIENT["path"], "--profile", erin.dir, "--json", "send", "--to", "alice@example.com", "--text",
                        "via POSTERN_PROXY"], capture_output=True, text=True, timeout=120, env=e)
    check("POSTERN_PROXY works as --proxy", r.returncode == 0, r.stderr)
    check("... through microsocks", counter.connections > seen, counter.connections)
    r = subprocess.run([CLIENT["path"], "--profile", erin.dir, "--proxy", "socks5://127.0.0.1", "receive"],
                       capture_output=True, text=True, timeout=60)
    check("a malformed --proxy is a usage error (exit 2) with a reason", r.returncode == 2 and ":PORT" in r.stderr, r.stderr)
    r = subprocess.run([CLIENT["path"], "--profile", erin.dir, "--proxy", "socks5://u:topsecret@bad host:1", "receive"],
                       capture_output=True, text=True, timeout=60)
    check("the proxy password is never printed", r.returncode == 2 and "topsecret" not in r.stderr + r.stdout, r.stderr)

    # ---- HTTP CONNECT ----
    web = ConnectProxy("huser", "hpass")
    seen = counter.connections
    r = erin.run("send", "--to", "alice@example.com", "--text", "via http connect",
                 proxy=f"http://huser:hpass@127.0.0.1:{web.port}")
    check("erin sends through an HTTP CONNECT proxy", r.returncode == 0, r.stderr)
    check("... which was asked for the name", f"localhost:{counter.port}" in web.targets, web.targets)
    check("... and reached the server", counter.connections > seen, counter.connections)
    r = erin.run("send", "--to", "alice@example.com", "--text", "refused by the proxy",
                 proxy=f"http://huser:nope@127.0.0.1:{web.port}")
    check("a 407 from the proxy: unreachable (exit 3)", r.returncode == 3, r.stderr)
    _, msgs = alice.messages()
    texts = [m.get("text") for m in msgs]
    check("alice gets the proxied messages once", texts.count("via POSTERN_PROXY") == 1 and
          texts.count("via http connect") == 1, texts)
    web.close()

    for p in (socks, relay_proc):
        os.kill(p.pid, signal.SIGTERM)
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(p.pid, signal.SIGKILL)
    for p in (recorder, hole, counter):
        p.close()


if __name__ == "__main__":
    harness.run_main(main)
