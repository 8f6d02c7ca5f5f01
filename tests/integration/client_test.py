#!/usr/bin/env python3
"""End-to-end tests of the postern client (issue 4): the real postern-server process and several
client profiles driven through the `postern` command line.

    client_test.py POSTERN_SERVER POSTERN

Covers: text online and offline and the reply; a picture and a 100 MB video whose decrypted
SHA-256 equals the original, with thumbnails; an upload cut half-way (a proxy that drops the
connection) and resumed, and one resumed after the sending process was killed; a tampered blob
refused; a group of 3 where a removed member cannot decrypt new messages (its copy is injected
into its queue, as a hostile server could); a linked device that receives incoming messages and
sent-message sync, and stops receiving when removed; equal safety numbers on both sides and a
warning after a key reset; a client killed with SIGKILL between storing and acknowledging, shown
the message exactly once after the restart; receipts; disappearing messages; CLI error paths.
"""
import hashlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check  # noqa: E402

CLIENT = {"path": "postern"}
PASSWORD = "Secret1"


class Profile:
    """One client profile (a device) driven through the CLI."""

    def __init__(self, root, name):
        self.dir = os.path.join(root, name)
        self.name = name

    def run(self, *args, timeout=300, env=None, json_output=True, input_text=None):
        cmd = [CLIENT["path"], "--profile", self.dir] + (["--json"] if json_output else []) + list(args)
        e = dict(os.environ)
        e.pop("POSTERN_PASSPHRASE", None)
        if env:
            e.update(env)
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=e, input=input_text)
        r.lines = []
        for line in r.stdout.splitlines():
            try:
                r.lines.append(json.loads(line))
            except ValueError:
                pass
        return r

    def popen(self, *args, env=None):
        cmd = [CLIENT["path"], "--profile", self.dir, "--json"] + list(args)
        e = dict(os.environ)
        if env:
            e.update(env)
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=e)
        harness.PROCS.append(p)
        return p

    def receive(self, timeout=2, *extra):
        r = self.run("receive", "--timeout", str(timeout), *extra)
        return r, [j for j in r.lines if j.get("event")]

    def messages(self, timeout=2, *extra):
        r, events = self.receive(timeout, *extra)
        return [e for e in events if e["event"] == "message"]


def register(server_invite, root, name, email):
    p = Profile(root, name)
    r = p.run("join", server_invite)
    assert r.returncode == 0, r.stderr
    r = p.run("register", "--email", email, "--password", PASSWORD, "--birthdate", "1990-01-01", "--accept-terms")
    assert r.returncode == 0, r.stderr
    return p


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


class CuttingProxy:
    """A TCP proxy on loopback to the server. When `cut_after` is set, the first connection that
    has carried that many bytes from the client is closed (a dropped connection mid-upload)."""

    def __init__(self, target_port, cut_after=None):
        self.target_port = target_port
        self.cut_after = cut_after
        self.cuts = 0
        self.client_bytes = 0
        self.lock = threading.Lock()
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.running = True
        threading.Thread(target=self.accept_loop, daemon=True).start()

    def accept_loop(self):
        while self.running:
            try:
                c, _ = self.listener.accept()
            except OSError:
                return
            s = socket.create_connection(("127.0.0.1", self.target_port))
            threading.Thread(target=self.pump, args=(c, s, True), daemon=True).start()
            threading.Thread(target=self.pump, args=(s, c, False), daemon=True).start()

    def pump(self, src, dst, from_client):
        carried = 0
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if from_client:
                    carried += len(data)
                    with self.lock:
                        self.client_bytes += len(data)
                        cut = self.cut_after is not None and carried > self.cut_after
                        if cut:
                            self.cut_after = None
                            self.cuts += 1
                    if cut:
                        break
                dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def close(self):
        self.running = False
        self.listener.close()


def proxied_invite(invite, port):
    head, query = invite.split("?", 1)
    host = head[len("postern://"):].rsplit(":", 1)[0]
    return f"postern://{host}:{port}?{query}"


def make_files(root):
    pic = os.path.join(root, "photo.png")
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=800x600:rate=1",
                    "-frames:v", "1", pic], check=True)
    video = os.path.join(root, "video.mp4")
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=640x360:rate=25", "-t", "4",
                    "-pix_fmt", "yuv420p", "-movflags", "+faststart", video], check=True)
    # 100 MB: the playable video with random data after it (players ignore what follows the file's
    # boxes; the point is the size and an exact checksum).
    with open(video, "ab") as f:
        remaining = 100 * 1000 * 1000 - os.path.getsize(video)
        while remaining > 0:
            n = min(remaining, 4 << 20)
            f.write(os.urandom(n))
            remaining -= n
    return pic, video


def main():
    if len(sys.argv) > 2:
        CLIENT["path"] = sys.argv[2]
    root = tempfile.mkdtemp(prefix="postern-client-it-")
    harness.DIRS.append(root)
    server = harness.Server()
    invite = open(os.path.join(server.data, "invite.txt")).read().strip()

    alice = register(invite, root, "alice", "alice@example.com")
    bob = register(invite, root, "bob", "bob@example.com")
    carol = register(invite, root, "carol", "carol@example.com")
    check("three accounts registered", True)

    # ---- text offline, then the reply online ----
    r = alice.run("send", "--to", "bob@example.com", "--text", "hello bob")
    check("send text exits 0", r.returncode == 0, r.stderr)
    check("send reports status sent", r.lines and r.lines[-1].get("status") == "sent", r.stdout)
    msgs = bob.messages()
    check("offline text drained on connect", len(msgs) == 1 and msgs[0]["text"] == "hello bob" and
          msgs[0]["from"] == "alice@example.com" and msgs[0]["type"] == "text", msgs)
    check("the message carries timestamp", msgs and isinstance(msgs[0].get("timestamp"), int))
    check("nothing is received twice", bob.messages(timeout=1) == [])

    # Alice online (receiving in the background) while Bob replies.
    listener = alice.popen("receive", "--timeout", "8")
    time.sleep(1.5)
    r = bob.run("send", "--to", "alice@example.com", "--text", "hi alice, from bob")
    out, err = listener.communicate(timeout=60)
    events = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
    texts = [e.get("text") for e in events if e.get("event") == "message"]
    check("online reply pushed over the WebSocket", "hi alice, from bob" in texts, out + err)
    receipts = [e for e in events if e.get("event") == "receipt" and e.get("receipt") == "delivery"]
    check("delivery receipt arrives for the first message", len(receipts) >= 1, out)

    # ---- read receipts: Bob reads (history marks read), Alice sees it ----
    r = bob.run("history", "alice@example.com")
    check("history shows both messages", len(r.lines) == 2, r.stdout)
    _, events = alice.receive(timeout=1)
    check("read receipt arrives", any(e.get("receipt") == "read" for e in events), events)
    r = alice.run("history", "bob@example.com")
    statuses = [l.get("status") for l in r.lines if l.get("outgoing")]
    check("sent -> delivered -> read shown in history", statuses == ["read"], r.stdout)

    # ---- a picture and a 100 MB video ----
    pic, video = make_files(root)
    r = alice.run("send", "--to", "bob@example.com", "--file", pic, "--caption", "look")
    check("picture sent", r.returncode == 0, r.stderr)
    r = alice.run("send", "--to", "bob@example.com", "--file", video)
    check("100 MB video sent", r.returncode == 0, r.stderr)
    msgs = bob.messages(timeout=2)
    by_type = {m["type"]: m for m in msgs}
    img = by_type.get("image", {})
    vid = by_type.get("video", {})
    check("picture received as image", img.get("mime") == "image/png" and img.get("width") == 800 and img.get("height") == 600, img)
    check("picture checksum equals the original", img.get("path") and sha256_file(img["path"]) == sha256_file(pic) ==
          img.get("sha256"), img)
    check("picture caption", img.get("text") == "look", img)
    check("picture thumbnail saved", img.get("thumbnail") and os.path.getsize(img["thumbnail"]) > 0, img)
    check("video received", vid.get("mime") == "video/mp4" and vid.get("size") == 100 * 1000 * 1000, vid)
    check("video checksum equals the original", vid.get("path") and sha256_file(vid["path"]) == sha256_file(video), vid)
    check("video poster-frame thumbnail", vid.get("thumbnail") and os.path.getsize(vid["thumbnail"]) > 0, vid)
    check("video dimensions and duration", vid.get("width") == 640 and vid.get("height") == 360 and
          3500 <= vid.get("duration_ms", 0) <= 4500, vid)

    # ---- an upload cut half-way, resumed by the client itself ----
    proxy = CuttingProxy(server.port, cut_after=40 * 1000 * 1000)
    alice_cut = Profile(root, "alice")  # same profile, through the proxy
    r = alice_cut.run("join", proxied_invite(invite, proxy.port))
    check("profile moved to the proxied path", r.returncode == 0, r.stderr)
    r = alice_cut.run("send", "--to", "bob@example.com", "--file", video, "--caption", "cut")
    check("upload through a cut connection succeeds", r.returncode == 0, r.stderr)
    check("the connection was really cut", proxy.cuts == 1, proxy.cuts)
    check("resumed, not restarted (client bytes < 1.5 x file)", proxy.client_bytes < 150 * 1000 * 1000, proxy.client_bytes)
    msgs = bob.messages(timeout=1)
    check("resumed upload decrypts to the original", len(msgs) == 1 and sha256_file(msgs[0]["path"]) == sha256_file(video), msgs)

    # ---- an upload resumed after the sending process was killed ----
    proxy.client_bytes = 0
    p = alice_cut.popen("send", "--to", "bob@example.com", "--file", video, "--caption", "killed")
    while proxy.client_bytes < 45 * 1000 * 1000 and p.poll() is None:
        time.sleep(0.05)
    killed_mid_upload = p.poll() is None
    if killed_mid_upload:
        os.kill(p.pid, signal.SIGKILL)
    p.wait()
    check("the sender was killed mid-upload", killed_mid_upload, proxy.client_bytes)
    before = proxy.client_bytes
    r = alice_cut.run("send", "--to", "bob@example.com", "--file", video, "--caption", "killed")
    check("send after SIGKILL mid-upload succeeds", r.returncode == 0, r.stderr)
    check("the second run sent only the rest", proxy.client_bytes - before < 70 * 1000 * 1000,
          (before, proxy.client_bytes))
    msgs = bob.messages(timeout=1)
    check("resumed-after-kill upload decrypts to the original",
          len(msgs) == 1 and msgs[0]["text"] == "killed" and sha256_file(msgs[0]["path"]) == sha256_file(video), msgs)
    r = alice.run("join", invite)
    proxy.close()

    # ---- a tampered blob is refused ----
    r = alice.run("send", "--to", "bob@example.com", "--file", pic, "--caption", "tampered")
    check("picture for tampering sent", r.returncode == 0, r.stderr)
    blobs = sorted((os.path.join(server.data, "attachments", f) for f in os.listdir(os.path.join(server.data, "attachments"))),
                   key=os.path.getmtime)
    newest = blobs[-1]
    with open(newest, "r+b") as f:
        f.seek(100)
        b = f.read(1)
        f.seek(100)
        f.write(bytes([b[0] ^ 1]))
    msgs = bob.messages(timeout=1)
    check("tampered attachment marked failed, nothing saved",
          len(msgs) == 1 and msgs[0]["attachments"][0]["state"] == "failed" and not msgs[0]["attachments"][0]["path"], msgs)
    saved = os.listdir(os.path.join(bob.dir, "attachments"))
    check("no partial file left behind", not any(n.endswith(".part") for n in saved), saved)

    # ---- safety numbers ----
    ra = alice.run("verify", "bob@example.com")
    rb = bob.run("verify", "alice@example.com")
    na = ra.lines[-1].get("safety_number") if ra.lines else None
    nb = rb.lines[-1].get("safety_number") if rb.lines else None
    check("safety number has 60 digits", na is not None and len(na) == 60 and na.isdigit(), ra.stdout)
    check("equal safety numbers on both sides", na == nb, (na, nb))
    r = alice.run("verify", "bob@example.com", json_output=False)
    check("verify prints digits and a QR code", r.returncode == 0 and "\u2588" in r.stdout, r.stdout[:200])

    # ---- group of 3; a removed member cannot read what follows ----
    r = alice.run("groups", "create", "friends", "--members", "bob@example.com,carol@example.com")
    check("group created", r.returncode == 0 and r.lines and len(r.lines[-1]["members"]) == 3, r.stdout + r.stderr)
    gid = r.lines[-1]["id"] if r.lines else ""
    r = alice.run("send", "--group", "friends", "--text", "hello friends")
    check("group message sent", r.returncode == 0, r.stderr)
    for who in (bob, carol):
        _, events = who.receive(timeout=1)
        got = [e for e in events if e.get("event") == "message"]
        check(f"{who.name} receives the group message", len(got) == 1 and got[0]["text"] == "hello friends" and
              got[0].get("group", {}).get("name") == "friends", events)
    r = bob.run("send", "--group", "friends", "--text", "bob to friends")
    check("member sends to the group", r.returncode == 0, r.stderr)
    for who in (alice, carol):
        got = who.messages(timeout=1)
        check(f"{who.name} receives bob's group message", [m["text"] for m in got] == ["bob to friends"], got)
    r = alice.run("groups", "remove", "friends", "carol@example.com")
    check("carol removed", r.returncode == 0 and len(r.lines[-1]["members"]) == 2, r.stdout + r.stderr)
    _, events = carol.receive(timeout=1)
    r = carol.run("groups", "list")
    check("carol sees she is no longer a member", r.lines and r.lines[0]["active"] is False, r.stdout)
    bob.receive(timeout=1)  # the update: bob rotates his sender key
    r = alice.run("send", "--group", "friends", "--text", "after carol left")
    check("group message after removal sent", r.returncode == 0, r.stderr)
    # A hostile server hands carol a copy of the new group message anyway.
    db = sqlite3.connect(os.path.join(server.data, "postern.db"), timeout=30)
    carol_id = db.execute("SELECT id FROM accounts WHERE email = 'carol@example.com'").fetchone()[0]
    bob_id = db.execute("SELECT id FROM accounts WHERE email = 'bob@example.com'").fetchone()[0]
    row = db.execute("SELECT sender_account, sender_device, type, timestamp_ms, content, expires_ms FROM messages "
                     "WHERE recipient_account = ? AND type = 4 ORDER BY id DESC LIMIT 1", (bob_id,)).fetchone()
    check("the new group ciphertext is in bob's queue", row is not None)
    if row:
        db.execute("INSERT INTO messages (recipient_account, recipient_device, sender_account, sender_device, client_id, type, "
                   "timestamp_ms, content, expires_ms) VALUES (?, 1, ?, ?, X'0102', ?, ?, ?, ?)", (carol_id,) + row)
        db.commit()
    db.close()
    r, events = carol.receive(timeout=1)
    check("removed member cannot decrypt the new message",
          not any(e.get("text") == "after carol left" for e in events) and
          any(e.get("event") == "undecryptable" for e in events), events)
    got = bob.messages(timeout=1)
    check("remaining member reads it", [m["text"] for m in got] == ["after carol left"], got)
    r = alice.run("groups", "rename", "friends", "best friends")
    check("group renamed", r.returncode == 0 and r.lines[-1]["name"] == "best friends", r.stdout)
    bob.receive(timeout=1)
    r = bob.run("groups", "list")
    check("rename reaches members", r.lines and r.lines[0]["name"] == "best friends", r.stdout)

    # ---- killed between storing and acknowledging: shown exactly once ----
    r = alice.run("send", "--to", "bob@example.com", "--text", "survive the crash")
    r = bob.run("receive", "--timeout", "2", env={"POSTERN_FAULT_INJECTION": "kill-after-commit"})
    check("receiver killed by SIGKILL after storing", r.returncode == -signal.SIGKILL, r.returncode)
    shown_first = [j for j in r.lines if j.get("text") == "survive the crash"]
    msgs = bob.messages(timeout=1)
    shown_again = [m for m in msgs if m["text"] == "survive the crash"]
    check("after the restart the message is shown exactly once", len(shown_first) + len(shown_again) == 1,
          (shown_first, msgs))
    check("and not again afterwards", bob.messages(timeout=1) == [])
    r = bob.run("history", "alice@example.com")
    check("stored once in history", sum(1 for l in r.lines if l.get("text") == "survive the crash") == 1, r.stdout)

    # ---- disappearing messages ----
    r = alice.run("timer", "--to", "bob@example.com", "2")
    check("timer set", r.returncode == 0, r.stderr)
    r = alice.run("send", "--to", "bob@example.com", "--text", "this will vanish")
    _, events = bob.receive(1, "--mark-read")
    check("timer change announced", any(e.get("event") == "timer_changed" and e.get("expire_timer_s") == 2 for e in events), events)
    check("disappearing message arrives with its timer",
          any(e.get("text") == "this will vanish" and e.get("expire_timer_s") == 2 for e in events), events)
    time.sleep(3)
    ra = alice.run("history", "bob@example.com", "--limit", "100")
    rb = bob.run("history", "alice@example.com", "--limit", "100")
    check("gone from the sender after the timer", not any(l.get("text") == "this will vanish" for l in ra.lines), ra.stdout)
    check("gone from the recipient after the timer", not any(l.get("text") == "this will vanish" for l in rb.lines), rb.stdout)
    alice.run("timer", "--to", "bob@example.com", "0")
    bob.receive(timeout=1)

    # ---- linked device: incoming messages and sent-message sync ----
    alice2 = Profile(root, "alice-laptop")
    offer = alice.popen("devices", "link", "--yes", "--timeout", "60")
    code_line = offer.stdout.readline()
    code = json.loads(code_line).get("code", "") if code_line.startswith("{") else ""
    check("link code offered", code.startswith("postern://") and "&link=" in code, code_line)
    r = alice2.run("--device-name", "laptop", "devices", "link", code, "--timeout", "60")
    out, err = offer.communicate(timeout=60)
    check("new device linked", r.returncode == 0 and r.lines and r.lines[-1].get("device_id") == 2, r.stdout + r.stderr)
    check("old device approved it", offer.returncode == 0, out + err)
    r = bob.run("send", "--to", "alice@example.com", "--text", "to both of alice's devices")
    got1 = alice.messages(timeout=1)
    got2 = alice2.messages(timeout=1)
    check("first device receives", any(m["text"] == "to both of alice's devices" for m in got1), got1)
    check("linked device receives", any(m["text"] == "to both of alice's devices" for m in got2), got2)
    r = alice.run("send", "--to", "bob@example.com", "--text", "sent from the phone")
    got2 = alice2.messages(timeout=1)
    check("linked device gets sent-message sync", any(m["text"] == "sent from the phone" and m["outgoing"] for m in got2), got2)
    bob.receive(timeout=1)
    ra = alice.run("verify", "bob@example.com")
    rl = alice2.run("verify", "bob@example.com")
    check("linked device shares the account's safety number",
          ra.lines and rl.lines and ra.lines[-1]["safety_number"] == rl.lines[-1]["safety_number"], (ra.stdout, rl.stdout))
    r = alice.run("devices", "remove", "2")
    check("device removed", r.returncode == 0, r.stderr)
    r = bob.run("send", "--to", "alice@example.com", "--text", "after the laptop was removed")
    r2, events = alice2.receive(timeout=1)
    check("removed device stops receiving", r2.returncode != 0 and not any(e.get("text") == "after the laptop was removed"
                                                                           for e in events), r2.stderr)
    alice.receive(timeout=1)

    # ---- key reset: a warning, and nothing sent to the new key before it is accepted ----
    bob_new = Profile(root, "bob-new-phone")
    bob_new.run("join", invite)
    r = bob_new.run("login", "--email", "bob@example.com", "--password", PASSWORD)
    check("bob signs in on a new phone (new identity key)", r.returncode == 0, r.stderr)
    r = bob_new.run("devices", "remove", "1")
    r = alice.run("send", "--to", "bob@example.com", "--text", "are you there?")
    check("send to a changed key is refused (exit 5)", r.returncode == 5 and "safety number" in r.stderr, (r.returncode, r.stderr))
    r = alice.run("verify", "bob@example.com")
    check("verify flags the change", r.lines and r.lines[-1].get("changed") is True, r.stdout)
    nb_new = bob_new.run("verify", "alice@example.com").lines
    check("safety number differs after the reset", r.lines and nb_new and r.lines[-1]["safety_number"] != na and
          r.lines[-1]["safety_number"] == nb_new[-1]["safety_number"], (r.stdout, nb_new))
    r = alice.run("verify", "bob@example.com", "--accept")
    r = alice.run("send", "--to", "bob@example.com", "--text", "are you there?")
    check("after accepting, the message goes out", r.returncode == 0, r.stderr)
    got = bob_new.messages(timeout=1)
    check("the new phone reads it", any(m["text"] == "are you there?" for m in got), got)
    r = bob_new.run("send", "--to", "carol@example.com", "--text", "new phone, who dis")
    _, events = carol.receive(timeout=1)
    check("a contact receiving from the new key is warned",
          any(e.get("event") == "identity_changed" and e.get("from") == "bob@example.com" for e in events), events)

    # ---- error paths: clear messages and exit codes ----
    stranger = Profile(root, "stranger")
    stranger.run("join", invite)
    r = stranger.run("login", "--email", "alice@example.com", "--password", "Wrong1pass")
    check("wrong password: exit 1 and a clear message", r.returncode == 1 and "password" in r.stderr.lower(), (r.returncode, r.stderr))
    r = alice.run("send", "--to", "nobody@example.com", "--text", "hi")
    check("unknown contact: exit 1 and a clear message", r.returncode == 1 and "nobody@example.com" in r.stderr,
          (r.returncode, r.stderr))
    r = alice.run("send", "--to", "bob@example.com", "--file", os.path.join(root, "missing.jpg"))
    check("missing file: exit 4 and a clear message", r.returncode == 4 and "no such file" in r.stderr, (r.returncode, r.stderr))
    r = stranger.run("register", "--email", "not-an-address", "--password", "short", "--birthdate", "2015-01-01")
    check("registration refused with every field error", r.returncode == 1 and "email:" in r.stderr and "password:" in r.stderr and
          "birthdate:" in r.stderr and "terms:" in r.stderr, r.stderr)
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    dead_port = dead.getsockname()[1]
    dead.close()
    offline = Profile(root, "alice")
    offline.run("join", proxied_invite(invite, dead_port))
    r = offline.run("send", "--to", "bob@example.com", "--text", "anyone?")
    check("server unreachable: exit 3 and a clear message", r.returncode == 3 and "reach" in r.stderr, (r.returncode, r.stderr))
    offline.run("join", invite)
    got = bob_new.messages(timeout=1)
    r = alice.run("receive", "--timeout", "0")  # flushes the outbox kept while offline
    got = bob_new.messages(timeout=1)
    check("the message kept while offline is delivered later", any(m["text"] == "anyone?" for m in got), got)
    r = subprocess.run([CLIENT["path"], "frobnicate"], capture_output=True, text=True)
    check("unknown command: usage exit 2", r.returncode == 2, r.returncode)

    server.stop()


if __name__ == "__main__":
    harness.run_main(main)
