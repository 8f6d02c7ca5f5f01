"""Shared helpers of the integration tests (Python 3 standard library only): PASS/FAIL counting,
the real postern-server process on 127.0.0.1:0 with a temporary data directory (killed by PID
when the script ends, whatever happens), the proof of work, sign-up and login, a minimal
WebSocket client (RFC 6455) and a minimal protobuf codec for the delivery frames
(src/postern/server/proto/delivery.proto).
"""
import base64
import hashlib
import http.client
import json
import os
import select
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time

COUNTS = {"passed": 0, "failed": 0}
PROCS = []
DIRS = []
PATHS = {"server": "postern-server", "testkeys": "postern-testkeys"}

# Cheap proofs of work and password hashes, generous rate limits: what is not under test.
BASE_CONFIG = """
[pow]
difficulty = 8
ttl_ms = 60000
[password]
opslimit = 1
memlimit = 8192
[rate_limits]
registration_per_address = { capacity = 1000, refill_per_second = 100 }
challenges_per_address = { capacity = 1000, refill_per_second = 100 }
login_per_account = { capacity = 1000, refill_per_second = 100 }
login_per_address = { capacity = 1000, refill_per_second = 100 }
directory_per_account = { capacity = 1000, refill_per_second = 100 }
key_fetch_per_account = { capacity = 1000, refill_per_second = 100 }
sends_per_account = { capacity = 100000, refill_per_second = 10000 }
"""


def check(name, condition, detail=""):
    if condition:
        COUNTS["passed"] += 1
        print(f"PASS {name}", flush=True)
    else:
        COUNTS["failed"] += 1
        print(f"FAIL {name} {detail}", flush=True)


def run_main(main):
    """Runs main() with the paths from argv, then kills every server it started, removes the
    temporary directories, prints the totals and exits non-zero on any failure."""
    if len(sys.argv) > 1:
        PATHS["server"] = sys.argv[1]
    if len(sys.argv) > 2:
        PATHS["testkeys"] = sys.argv[2]
    try:
        main()
    except Exception as e:  # a crash of the script is a failure, never a hang
        import traceback
        traceback.print_exc()
        check("script completed", False, repr(e))
    finally:
        for p in PROCS:
            if p.poll() is None:
                try:
                    os.kill(p.pid, signal.SIGKILL)
                    p.wait(timeout=10)
                except OSError:
                    pass
        for d in DIRS:
            shutil.rmtree(d, ignore_errors=True)
    print(f"{COUNTS['passed']} passed, {COUNTS['failed']} failed", flush=True)
    sys.exit(1 if COUNTS["failed"] else 0)


# ---- the server process ----

class Server:
    def __init__(self, config_text=BASE_CONFIG, directory=None, extra_args=()):
        """A new server in a new directory, or (directory given) one restarted on that directory."""
        if directory is None:
            self.dir = tempfile.mkdtemp(prefix="postern-it-")
            DIRS.append(self.dir)
        else:
            self.dir = directory
        self.data = os.path.join(self.dir, "data")
        self.config = os.path.join(self.dir, "server.toml")
        if directory is None:
            if "[front]" not in config_text:
                # These tests speak the API straight over TLS as well as through the inner
                # channel (the postern client, which reads the invite's key and secret).
                config_text += "\n[front]\nopen_api = true\n"
            with open(self.config, "w") as f:
                f.write(config_text)
        self.stderr = open(os.path.join(self.dir, "stderr.log"), "a+")
        self.proc = subprocess.Popen([PATHS["server"], "--data", self.data, "--listen", "127.0.0.1:0",
                                      "--admin-listen", "127.0.0.1:0", "--config", self.config, *extra_args],
                                     stdout=subprocess.PIPE, stderr=self.stderr)
        PROCS.append(self.proc)
        ready, _, _ = select.select([self.proc.stdout], [], [], 30)
        line = self.proc.stdout.readline().decode() if ready else ""
        if not line.startswith("listening on "):
            self.stderr.seek(0)
            raise RuntimeError(f"server did not start: {line!r} {self.stderr.read()}")
        self.listen_line = line
        self.port = int(line.strip().rsplit(":", 1)[1])
        self.admin_line = None
        self.admin_port = None
        self.ctx = ssl.create_default_context(cafile=os.path.join(self.data, "cert.pem"))
        self.ctx.minimum_version = ssl.TLSVersion.TLSv1_2

    def read_admin_line(self):
        """Reads the server's second stdout line, "admin listening on HOST:PORT", and returns it;
        sets .admin_line and, when the line is that, .admin_port. The server writes both lines with
        one flush, so the line is normally buffered already; "" when stdout ends first."""
        self.admin_line = self.proc.stdout.readline().decode()
        if self.admin_line.startswith("admin listening on "):
            self.admin_port = int(self.admin_line.strip().rsplit(":", 1)[1])
        return self.admin_line

    def connection(self):
        return http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx, timeout=30)

    def raw_socket(self, timeout=30):
        """A TLS socket to the server, for requests http.client cannot make."""
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        return self.ctx.wrap_socket(sock, server_hostname="127.0.0.1")

    def request(self, method, path, body=None, token=None, raw=None, headers=None):
        conn = self.connection()
        try:
            h = dict(headers or {})
            if token is not None:
                h["Authorization"] = "Bearer " + token
            data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
            if data is not None:
                h.setdefault("Content-Type", "application/json")
            conn.request(method, path, body=data, headers=h)
            resp = conn.getresponse()
            text = resp.read()
            try:
                parsed = json.loads(text) if text else None
            except ValueError:
                parsed = text
            return resp.status, dict(resp.getheaders()), parsed
        finally:
            conn.close()

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        return self.proc.wait(timeout=30)


# ---- accounts ----

def solve(token, difficulty):
    nonce = 0
    while True:
        digest = hashlib.sha256(token.encode() + nonce.to_bytes(8, "little")).digest()
        if int.from_bytes(digest, "big") >> (256 - difficulty) == 0:
            return nonce
        nonce += 1


def pow_for(server):
    status, _, c = server.request("POST", "/v1/challenge")
    assert status == 200, (status, c)
    return {"token": c["token"], "nonce": solve(c["token"], c["difficulty"])}


def form(email="alice@example.com", password="Secret1", birthdate="1990-05-17", terms=True, pow=None):
    f = {"email": email, "password": password, "birthdate": birthdate, "accept_terms": terms}
    if pow is not None:
        f["pow"] = pow
    return f


def error_code(body):
    try:
        return body["error"]["code"]
    except (KeyError, TypeError):
        return None


def testkeys(count=0, first_id=1):
    out = subprocess.run([PATHS["testkeys"], str(count), str(first_id)], check=True, capture_output=True, timeout=30)
    return json.loads(out.stdout)


def b64(hex_text):
    return base64.b64encode(bytes.fromhex(hex_text)).decode()


def login_device(server, email, keys, name, password="Secret1", registration_id=77):
    device = {"name": name, "identity_key": keys["identity_key"], "registration_id": registration_id}
    status, _, resp = server.request("POST", "/v1/sessions", {"email": email, "password": password, "device": device})
    assert status == 201, (status, resp)
    return resp


def signup_and_login(server, email, keys=None, name="phone", password="Secret1"):
    """Registers the account and logs in its first device: {"account_id", "device_id", "token"}."""
    if keys is None:
        keys = testkeys(0)
    status, _, resp = server.request("POST", "/v1/accounts", form(email=email, password=password, pow=pow_for(server)))
    assert status == 201, (status, resp)
    return login_device(server, email, keys, name, password)


# ---- protobuf (just what the delivery frames need) ----

def pb_varint(n):
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def pb_encode(fields):
    """fields: [(number, value)], value an int (varint), bytes/str (length-delimited) or a list of
    fields (a nested message)."""
    out = bytearray()
    for number, value in fields:
        if isinstance(value, bool) or isinstance(value, int):
            out += pb_varint(number << 3) + pb_varint(int(value))
        else:
            if isinstance(value, str):
                value = value.encode()
            elif isinstance(value, list):
                value = pb_encode(value)
            out += pb_varint(number << 3 | 2) + pb_varint(len(value)) + value
    return bytes(out)


def pb_read_varint(data, pos):
    n = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        b = data[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, pos


def pb_decode(data):
    """{number: [values]}: ints for varints, bytes for length-delimited fields."""
    fields = {}
    pos = 0
    while pos < len(data):
        key, pos = pb_read_varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = pb_read_varint(data, pos)
        elif wire == 2:
            length, pos = pb_read_varint(data, pos)
            value = bytes(data[pos:pos + length])
            pos += length
        elif wire == 1:
            value = struct.unpack_from("<Q", data, pos)[0]
            pos += 8
        elif wire == 5:
            value = struct.unpack_from("<I", data, pos)[0]
            pos += 4
        else:
            raise ValueError(f"wire type {wire}")
        fields.setdefault(number, []).append(value)
    return fields


def pb_packed(values):
    """A repeated varint field that may be packed (bytes) or not (ints)."""
    out = []
    for v in values or []:
        if isinstance(v, bytes):
            pos = 0
            while pos < len(v):
                n, pos = pb_read_varint(v, pos)
                out.append(n)
        else:
            out.append(v)
    return out


def signed64(n):
    return n - (1 << 64) if n >= 1 << 63 else n


def decode_server_frame(data):
    """A ServerFrame as a dict with "kind": envelope / queue_empty / send_response / error."""
    f = pb_decode(data)
    if 1 in f:
        e = pb_decode(f[1][0])
        return {"kind": "envelope", "server_id": e.get(1, [0])[0], "sender_account": signed64(e.get(2, [0])[0]),
                "sender_device": e.get(3, [0])[0], "type": signed64(e.get(4, [0])[0]),
                "timestamp": signed64(e.get(5, [0])[0]), "content": e.get(6, [b""])[0],
                "client_id": e.get(7, [b""])[0]}
    if 2 in f:
        return {"kind": "queue_empty"}
    if 3 in f:
        r = pb_decode(f[3][0])
        results = []
        for raw in r.get(3, []):
            x = pb_decode(raw)
            results.append({"device_id": x.get(1, [0])[0], "server_id": x.get(2, [0])[0],
                            "duplicate": bool(x.get(3, [0])[0])})
        return {"kind": "send_response", "request_id": r.get(1, [0])[0], "status": r.get(2, [0])[0],
                "results": results, "missing": pb_packed(r.get(4)), "extra": pb_packed(r.get(5)),
                "stale": pb_packed(r.get(6)), "code": r.get(7, [b""])[0].decode(),
                "message": r.get(8, [b""])[0].decode(), "retry_after_ms": r.get(9, [0])[0]}
    if 5 in f:
        inner = pb_decode(f[5][0])
        return {"kind": "batch", "frames": [decode_server_frame(x) for x in inner.get(1, [])]}
    if 4 in f:
        e = pb_decode(f[4][0])
        return {"kind": "error", "code": e.get(1, [b""])[0].decode(), "message": e.get(2, [b""])[0].decode()}
    return {"kind": "unknown", "fields": f}


def send_frame(request_id, recipient, envelopes):
    """ClientFrame{send}; envelopes: dicts with device_id, content, client_id and optional type,
    timestamp, registration_id."""
    envs = []
    for e in envelopes:
        envs.append((3, [(1, e["device_id"]), (2, e.get("registration_id", 0)), (3, e.get("type", 1)),
                         (4, e["content"]), (5, e["client_id"]), (6, e.get("timestamp", int(time.time() * 1000)))]))
    return pb_encode([(1, [(1, request_id), (2, recipient)] + envs)])


def batch_frame(frames):
    """ClientFrame{batch} of serialised ClientFrames."""
    return pb_encode([(3, [(1, f) for f in frames])])


def ack_frame(server_ids):
    packed = b"".join(pb_varint(i) for i in server_ids)
    return pb_encode([(2, [(1, packed)])])


# ---- WebSocket client (RFC 6455), over the server's TLS ----

class WebSocketRefused(Exception):
    def __init__(self, status, body):
        super().__init__(f"HTTP {status}")
        self.status = status
        self.body = body


class WebSocket:
    GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    def __init__(self, server, token, path="/v1/websocket", timeout=10):
        raw = socket.create_connection(("127.0.0.1", server.port), timeout=timeout)
        self.sock = server.ctx.wrap_socket(raw, server_hostname="127.0.0.1")
        self.buf = b""
        key = base64.b64encode(os.urandom(16))
        lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{server.port}", "Upgrade: websocket",
                 "Connection: Upgrade", f"Sec-WebSocket-Key: {key.decode()}", "Sec-WebSocket-Version: 13"]
        if token is not None:
            lines.append(f"Authorization: Bearer {token}")
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed during the upgrade")
            self.buf += chunk
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:])}
        if status != 101:
            length = int(headers.get("content-length", "0"))
            while len(self.buf) < length:
                chunk = self.sock.recv(65536)
                if not chunk:
                    break
                self.buf += chunk
            body = self.buf[:length]
            self.sock.close()
            raise WebSocketRefused(status, json.loads(body) if body else None)
        expected = base64.b64encode(hashlib.sha1(key + self.GUID).digest()).decode()
        if headers.get("sec-websocket-accept") != expected:
            raise ConnectionError("bad Sec-WebSocket-Accept")
        self.close_code = None
        self.pending = []  # frames of a batch not yet returned
        self.batches = 0

    def send(self, payload, opcode=2):
        mask = os.urandom(4)
        n = len(payload)
        head = bytes([0x80 | opcode])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 65536:
            head += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack(">Q", n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload)) if n < 4096 else _mask_fast(payload, mask)
        self.sock.sendall(head + mask + masked)

    def _read(self, n, deadline):
        while len(self.buf) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no frame in time")
            self.sock.settimeout(remaining)
            chunk = self.sock.recv(262144)
            if not chunk:
                raise ConnectionError("connection closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv(self, timeout=10):
        """The next data message as (opcode, payload); answers pings; ("close", code) on a close."""
        deadline = time.monotonic() + timeout
        message = b""
        first_opcode = None
        while True:
            b0, b1 = self._read(2, deadline)
            opcode, fin, n = b0 & 0x0F, b0 & 0x80, b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._read(2, deadline))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read(8, deadline))[0]
            if b1 & 0x80:
                raise ConnectionError("server frames must not be masked")
            payload = self._read(n, deadline)
            if opcode == 9:
                self.send(payload, opcode=10)
                continue
            if opcode == 10:
                continue
            if opcode == 8:
                self.close_code = struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else 1005
                try:
                    self.send(payload[:2], opcode=8)
                except OSError:
                    pass
                return "close", self.close_code
            if opcode != 0:
                first_opcode = opcode
            message += payload
            if fin:
                return first_opcode, message

    def recv_frame(self, timeout=10):
        """The next ServerFrame, decoded (the frames of a batch one by one, in order);
        {"kind": "close", "code": ...} on a close."""
        if self.pending:
            return self.pending.pop(0)
        opcode, payload = self.recv(timeout)
        if opcode == "close":
            return {"kind": "close", "code": payload}
        frame = decode_server_frame(payload)
        if frame["kind"] == "batch":
            self.batches += 1
            self.pending = frame["frames"]
            return self.recv_frame(timeout) if self.pending else {"kind": "empty_batch"}
        return frame

    def close(self, code=1000):
        try:
            self.send(struct.pack(">H", code), opcode=8)
            self.recv(2)
        except (OSError, TimeoutError, ConnectionError, ValueError):
            pass
        self.sock.close()


def _mask_fast(payload, mask):
    n = len(payload)
    key = int.from_bytes((mask * ((n + 3) // 4))[:n], "big")
    return (int.from_bytes(payload, "big") ^ key).to_bytes(n, "big")
