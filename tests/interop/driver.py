#!/usr/bin/env python3
"""Pairs two interop peers and checks that they interoperate (tests/interop/README.md).

    driver.py --a CMD --b CMD [--seed N] [--quick] [--verbose] [--only NAME] [--timeout S]

Each check in CHECKS runs twice, once with A initiating to B and once with B initiating to A, each time
after a fresh `init` of both peers. One line per check is printed (`PASS name` or `FAIL name: reason`),
then `N passed, M failed`; the exit status is 1 if anything failed. --quick shrinks the message counts
for local iteration; CI runs the full counts. Standard library only.

Speed: commands whose order allows it are written in one batch by a writer thread while a reader
thread collects the answers, so a 1000-message check costs a few pipe round trips, not thousands.
"""

from __future__ import annotations

import argparse
import hashlib
import queue
import random
import re
import shlex
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional

ANSWER_TIMEOUT_S = 120.0


class PeerError(Exception):
    """The peer died, timed out, or broke the line protocol; the peers are restarted."""


class CheckFailed(Exception):
    """A check's expectation did not hold."""


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


# ------------------------------------------------------------------------------------------------
# Peer processes


@dataclass
class Answer:
    ok: bool
    fields: list[str]  # ok: the result fields; err: [code, text]
    line: str

    @property
    def code(self) -> int:
        return int(self.fields[0]) if not self.ok else 0


ERR_RE = re.compile(r"^err (-[0-9]+)(?: (.*))?$")


def parse_answer(line: str) -> Answer:
    if line == "ok" or line.startswith("ok "):
        return Answer(True, line.split(" ")[1:], line)
    m = ERR_RE.match(line)
    if m:
        return Answer(False, [m.group(1), m.group(2) or ""], line)
    raise PeerError(f"answer is neither ok nor err <negative code>: {line[:120]!r}")


class Peer:
    timeout = ANSWER_TIMEOUT_S

    def __init__(self, label: str, command: str):
        self.label = label
        self.command = command
        self.proc: Optional[subprocess.Popen] = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(shlex.split(self.command), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.answers: queue.Queue = queue.Queue()
        self.outbox: queue.Queue = queue.Queue()
        self.threads = [threading.Thread(target=self._read, args=(self.proc, self.answers), daemon=True),
                        threading.Thread(target=self._write, args=(self.proc, self.outbox), daemon=True)]
        for t in self.threads:
            t.start()

    @staticmethod
    def _read(proc: subprocess.Popen, answers: queue.Queue) -> None:
        reader = proc.stdout
        for raw in iter(reader.readline, b""):
            answers.put(raw.decode("utf-8", "replace").rstrip("\r\n"))
        answers.put(None)

    @staticmethod
    def _write(proc: subprocess.Popen, outbox: queue.Queue) -> None:
        while True:
            chunk = outbox.get()
            if chunk is None:
                return
            try:
                proc.stdin.write(chunk)
                proc.stdin.flush()
            except (BrokenPipeError, OSError):
                return

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is None:
            return
        self.outbox.put(None)
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for t in self.threads:
            t.join(timeout=5)
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass

    def restart(self) -> None:
        self.stop()
        self.start()

    def send(self, lines: list[str]) -> None:
        if lines:
            self.outbox.put(("\n".join(lines) + "\n").encode("utf-8"))

    def recv(self, count: int) -> list[Answer]:
        out = []
        for _ in range(count):
            try:
                line = self.answers.get(timeout=self.timeout)
            except queue.Empty:
                raise PeerError(f"peer {self.label}: no answer within {self.timeout:g} s") from None
            if line is None:
                self.answers.put(None)
                raise PeerError(f"peer {self.label} exited (status {self.proc.wait()})")
            out.append(parse_answer(line))
        return out

    def batch(self, lines: list[str]) -> list[Answer]:
        self.send(lines)
        return self.recv(len(lines))

    def call(self, line: str) -> Answer:
        return self.batch([line])[0]

    def ok(self, line: str, what: str = "") -> list[str]:
        a = self.call(line)
        expect(a.ok, f"{self.label}: {what or line.split(' ')[0]} failed: {a.line[:160]}")
        return a.fields


# ------------------------------------------------------------------------------------------------
# Wire helpers (independent of both peers)


def hexs(b: bytes) -> str:
    return b.hex() if b else "-"


def unhex(s: str) -> bytes:
    return b"" if s == "-" else bytes.fromhex(s)


def read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("truncated varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def pb_fields(buf: bytes) -> dict[int, list[tuple]]:
    """field number -> [(value, start, end)] with start/end the value's byte range (minimal protobuf)."""
    fields: dict[int, list[tuple]] = {}
    pos = 0
    while pos < len(buf):
        key, pos = read_varint(buf, pos)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            start = pos
            value, pos = read_varint(buf, pos)
        elif wire_type == 2:
            length, pos = read_varint(buf, pos)
            start = pos
            if pos + length > len(buf):
                raise ValueError("truncated field")
            value, pos = buf[pos:pos + length], pos + length
        elif wire_type in (1, 5):
            start = pos
            size = 8 if wire_type == 1 else 4
            value, pos = buf[pos:pos + size], pos + size
        else:
            raise ValueError(f"unsupported wire type {wire_type}")
        fields.setdefault(number, []).append((value, start, pos))
    return fields


def field(fields: dict, number: int, default=None):
    return fields[number][0][0] if number in fields else default


@dataclass
class SignalMessage:
    ratchet_key: bytes
    counter: int
    ciphertext_start: int  # offsets into the whole wire message
    ciphertext_end: int


def parse_signal_message(wire: bytes) -> SignalMessage:
    expect(len(wire) > 9 and wire[0] == 0x33, f"SignalMessage does not start with 0x33: {wire[:4].hex()}")
    f = pb_fields(wire[1:-8])
    key, counter = field(f, 1), field(f, 2)
    expect(key is not None and len(key) == 33 and key[0] == 5, "SignalMessage ratchet key is not 33 bytes 05...")
    expect(counter is not None, "SignalMessage has no counter")
    expect(4 in f, "SignalMessage has no ciphertext")
    _, start, end = f[4][0]
    expect((end - start) % 16 == 0 and end > start, "SignalMessage ciphertext is not whole AES blocks")
    return SignalMessage(key, counter, 1 + start, 1 + end)


def fingerprint_hash(identity: bytes, stable_id: str, iterations: int) -> bytes:
    h = hashlib.sha512(b"\x00\x00" + identity + stable_id.encode() + identity).digest()
    for _ in range(iterations - 1):
        h = hashlib.sha512(h + identity).digest()
    return h


def display_digits(h: bytes) -> str:
    return "".join(f"{int.from_bytes(h[i:i + 5], 'big') % 100000:05d}" for i in range(0, 30, 5))


# ------------------------------------------------------------------------------------------------
# Parties and sessions


@dataclass
class Party:
    peer: Peer
    name: str
    device: int
    registration_id: int = 0
    identity: str = ""
    stable_id: str = ""


@dataclass
class Counts:
    messages: int
    batch: int
    ping_pong: int
    shuffled: int
    signatures: int
    group: int


FULL = Counts(messages=1000, batch=50, ping_pong=1000, shuffled=200, signatures=300, group=1000)
QUICK = Counts(messages=100, batch=10, ping_pong=100, shuffled=40, signatures=30, group=100)


class Run:
    """One check in one direction: `i` initiates, `r` responds."""

    def __init__(self, i: Party, r: Party, rng: random.Random, counts: Counts, notes: list[str]):
        self.i, self.r, self.rng, self.n, self.notes = i, r, rng, counts, notes

    def note(self, text: str) -> None:
        self.notes.append(text)

    def plaintext(self, max_len: int = 200) -> bytes:
        return self.rng.randbytes(self.rng.randint(0, max_len))

    def bundle(self, party: Party, signed_prekey_id: int, prekey_id: Optional[int]) -> list[str]:
        fields = party.peer.ok(f"bundle {signed_prekey_id} {-1 if prekey_id is None else prekey_id}")
        expect(len(fields) == 8, f"bundle answer has {len(fields)} fields, not 8")
        reg, dev, ik, spk_id, spk, sig, pk_id, pk = fields
        expect(int(reg) == party.registration_id and int(dev) == party.device and ik == party.identity,
               "bundle registration id / device / identity differ from init")
        expect(int(spk_id) == signed_prekey_id and len(unhex(spk)) == 33 and len(unhex(sig)) == 64,
               "bundle signed pre key fields malformed")
        if prekey_id is None:
            expect(pk_id == "-1" and pk == "-", "bundle without one-time pre key must print -1 -")
        else:
            expect(int(pk_id) == prekey_id and len(unhex(pk)) == 33, "bundle one-time pre key malformed")
        return fields

    def process_bundle(self, src: Party, dst: Party, fields: list[str]) -> Answer:
        """`fields` as printed by `bundle`: the device id moves in front of the registration id."""
        reg, dev, rest = fields[0], fields[1], fields[2:]
        return src.peer.call(f"process_bundle {dst.name} {dev} {reg} " + " ".join(rest))

    def start_session(self, prekey: bool = True) -> tuple[int, Optional[int]]:
        spk_id, pk_id = self.rng.randint(1, 0xFFFFFF), (self.rng.randint(1, 0xFFFFFE) if prekey else None)
        fields = self.bundle(self.r, spk_id, pk_id)
        a = self.process_bundle(self.i, self.r, fields)
        expect(a.ok, f"process_bundle of a valid bundle failed: {a.line}")
        return spk_id, pk_id

    def encrypt_lines(self, src: Party, dst: Party, plaintexts: list[bytes]) -> list[str]:
        return [f"encrypt {dst.name} {dst.device} {hexs(p)}" for p in plaintexts]

    def encrypt(self, src: Party, dst: Party, plaintexts: list[bytes]) -> list[tuple[int, str]]:
        return self.collect_ciphertexts(src, src.peer.batch(self.encrypt_lines(src, dst, plaintexts)))

    @staticmethod
    def collect_ciphertexts(src: Party, answers: list[Answer]) -> list[tuple[int, str]]:
        out = []
        for k, a in enumerate(answers):
            expect(a.ok and len(a.fields) == 2, f"{src.peer.label}: encrypt #{k} failed: {a.line[:160]}")
            expect(a.fields[0] in ("2", "3"), f"encrypt #{k} returned type {a.fields[0]}")
            out.append((int(a.fields[0]), a.fields[1]))
        return out

    def decrypt(self, src: Party, dst: Party, messages: list[tuple[int, str]]) -> list[Answer]:
        return dst.peer.batch([f"decrypt {src.name} {src.device} {t} {w}" for t, w in messages])

    def expect_plaintexts(self, dst: Party, answers: list[Answer], plaintexts: list[bytes], what: str) -> None:
        for k, (a, p) in enumerate(zip(answers, plaintexts)):
            expect(a.ok, f"{dst.peer.label}: decrypt of {what} #{k} failed: {a.line[:160]}")
            expect(len(a.fields) == 1 and unhex(a.fields[0]) == p, f"{what} #{k}: plaintext differs")

    def transfer(self, src: Party, dst: Party, count: int, what: str, order: Optional[list[int]] = None,
                 expect_type: Optional[int] = None) -> list[tuple[int, str]]:
        plaintexts = [self.plaintext() for _ in range(count)]
        messages = self.encrypt(src, dst, plaintexts)
        if expect_type is not None:
            expect(all(t == expect_type for t, _ in messages), f"{what}: expected message type {expect_type}")
        order = list(range(count)) if order is None else order
        answers = self.decrypt(src, dst, [messages[k] for k in order])
        self.expect_plaintexts(dst, answers, [plaintexts[k] for k in order], what)
        return messages

    def establish(self, prekey: bool = True) -> None:
        """X3DH plus one message each way, so that both sides hold complete sessions."""
        spk_id, pk_id = self.start_session(prekey)
        first = self.transfer(self.i, self.r, 1, "first message", expect_type=3)
        self.check_prekey_message(unhex(first[0][1]), spk_id, pk_id)
        self.transfer(self.r, self.i, 1, "first reply", expect_type=2)

    def check_prekey_message(self, wire: bytes, spk_id: int, pk_id: Optional[int]) -> None:
        expect(wire[:1] == b"\x33", "PreKeySignalMessage does not start with 0x33")
        f = pb_fields(wire[1:])
        expect(field(f, 1) == pk_id, f"PreKeySignalMessage preKeyId {field(f, 1)} != bundle's {pk_id}")
        expect(field(f, 6) == spk_id, "PreKeySignalMessage signedPreKeyId differs from the bundle's")
        expect(field(f, 5) == self.i.registration_id, "PreKeySignalMessage registrationId is not the sender's")
        expect(field(f, 3, b"").hex() == self.i.identity, "PreKeySignalMessage identityKey is not the sender's")
        base = field(f, 2, b"")
        expect(len(base) == 33 and base[0] == 5, "PreKeySignalMessage baseKey is not 33 bytes 05...")
        parse_signal_message(field(f, 4, b""))


# ------------------------------------------------------------------------------------------------
# Checks. Each takes a Run and raises CheckFailed (or PeerError) on failure.


def check_batches(run: Run) -> None:
    """Messages each way in batches; the initiator sends PreKeySignalMessages until it hears back."""
    i, r, n = run.i, run.r, run.n
    run.start_session()
    sent = 0
    while sent < n.messages:
        count = min(n.batch, n.messages - sent)
        initiator_type = 3 if sent == 0 else 2
        run.transfer(i, r, count, f"{i.peer.label}->{r.peer.label} batch at {sent}", expect_type=initiator_type)
        run.transfer(r, i, count, f"{r.peer.label}->{i.peer.label} batch at {sent}", expect_type=2)
        sent += count


def check_ping_pong(run: Run) -> None:
    """Strictly alternating messages: every message is a DH ratchet step."""
    run.start_session()
    for k in range(run.n.ping_pong):
        src, dst = (run.i, run.r) if k % 2 == 0 else (run.r, run.i)
        run.transfer(src, dst, 1, f"ping-pong #{k}", expect_type=3 if k == 0 else 2)


def check_shuffled(run: Run) -> None:
    """Both sides encrypt a batch at once; each decrypts the other's in a random order."""
    i, r, count = run.i, run.r, run.n.shuffled
    run.establish()
    pi = [run.plaintext() for _ in range(count)]
    pr = [run.plaintext() for _ in range(count)]
    i.peer.send(run.encrypt_lines(i, r, pi))
    r.peer.send(run.encrypt_lines(r, i, pr))
    mi = run.collect_ciphertexts(i, i.peer.recv(count))
    mr = run.collect_ciphertexts(r, r.peer.recv(count))
    oi, orr = list(range(count)), list(range(count))
    run.rng.shuffle(oi)
    run.rng.shuffle(orr)
    r.peer.send([f"decrypt {i.name} {i.device} {mi[k][0]} {mi[k][1]}" for k in oi])
    i.peer.send([f"decrypt {r.name} {r.device} {mr[k][0]} {mr[k][1]}" for k in orr])
    run.expect_plaintexts(r, r.peer.recv(count), [pi[k] for k in oi], "shuffled message")
    run.expect_plaintexts(i, i.peer.recv(count), [pr[k] for k in orr], "shuffled message")


def skip_setup(run: Run) -> tuple[list[bytes], list[tuple[int, str]], int]:
    """Established session, 3 messages delivered on the initiator's current chain, then 2002 more
    encrypted. Returns (plaintexts, messages, next expected counter) after checking on the wire that
    the 2002 counters are consecutive from the receiver's next expected counter."""
    i, r = run.i, run.r
    run.establish()
    warm = run.transfer(i, r, 3, "warm-up", expect_type=2)
    warm_counters = [parse_signal_message(unhex(w)).counter for _, w in warm]
    expect(warm_counters == [0, 1, 2], f"a new sending chain should count 0,1,2; got {warm_counters}")
    plaintexts = [run.plaintext(40) for _ in range(2002)]
    messages = run.encrypt(i, r, plaintexts)
    counters = [parse_signal_message(unhex(w)).counter for _, w in messages]
    expect(counters == list(range(3, 2005)), "the 2002 messages do not carry consecutive counters 3..2004")
    return plaintexts, messages, 3


def check_skip_2000_accepted(run: Run) -> None:
    """Receiving counter next+2000 first (exactly 2000 skipped keys) must work; then all the rest."""
    i, r = run.i, run.r
    plaintexts, messages, _ = skip_setup(run)
    a = run.decrypt(i, r, [messages[2000]])[0]
    expect(a.ok, f"decrypt with exactly 2000 skipped message keys failed: {a.line[:160]}")
    expect(unhex(a.fields[0]) == plaintexts[2000], "plaintext of message 2000 differs")
    rest = list(range(2000)) + [2001]
    answers = run.decrypt(i, r, [messages[k] for k in rest])
    run.expect_plaintexts(r, answers, [plaintexts[k] for k in rest], "skipped message")
    run.transfer(r, i, 2, "reply after the skip", expect_type=2)


def check_skip_2001_rejected(run: Run) -> None:
    """Receiving counter next+2001 first must fail and leave the session intact."""
    i, r = run.i, run.r
    plaintexts, messages, _ = skip_setup(run)
    a = run.decrypt(i, r, [messages[2001]])[0]
    expect(not a.ok, "decrypt with 2001 skipped message keys must be rejected, but it succeeded")
    run.note(f"2001 skipped keys rejected with {a.code}")
    answers = run.decrypt(i, r, messages)
    run.expect_plaintexts(r, answers, plaintexts, "message after the rejected jump")
    run.transfer(r, i, 2, "reply after the rejected jump", expect_type=2)


def check_no_one_time_prekey(run: Run) -> None:
    """X3DH with three DH (bundle without a one-time pre key), then traffic both ways."""
    run.establish(prekey=False)
    for k in range(10):
        src, dst = (run.i, run.r) if k % 2 == 0 else (run.r, run.i)
        run.transfer(src, dst, 3, f"3-DH session round {k}", expect_type=2)


def check_bad_signed_prekey_signature(run: Run) -> None:
    """A bundle whose signed pre key signature has one bit flipped must be rejected."""
    i, r = run.i, run.r
    fields = run.bundle(r, 11, 12)
    for attempt in range(4):
        sig = bytearray(unhex(fields[5]))
        bit = run.rng.randrange(len(sig) * 8) if attempt else 511  # always include the top bit of S
        sig[bit // 8] ^= 1 << (bit % 8)
        bad = fields[:5] + [sig.hex()] + fields[6:]
        a = run.process_bundle(i, r, bad)
        expect(not a.ok, f"process_bundle accepted a signature with bit {bit} flipped")
        run.note(f"bad signed pre key signature rejected with {a.code}")
    a = run.process_bundle(i, r, fields)
    expect(a.ok, f"process_bundle of the untampered bundle failed after the rejections: {a.line}")
    run.transfer(i, r, 1, "message after rejected bundles", expect_type=3)
    run.transfer(r, i, 1, "reply after rejected bundles", expect_type=2)


def check_signatures(run: Run) -> None:
    """The initiator signs; the responder verifies with the initiator's identity key."""
    i, r, count = run.i, run.r, run.n.signatures
    messages = [run.plaintext() for _ in range(count)]
    answers = i.peer.batch([f"sign {hexs(m)}" for m in messages])
    sigs = []
    for k, a in enumerate(answers):
        expect(a.ok and len(a.fields) == 1 and len(unhex(a.fields[0])) == 64, f"sign #{k} failed: {a.line[:120]}")
        sigs.append(a.fields[0])
    lines, expected = [], []
    for m, s in zip(messages, sigs):
        lines.append(f"verify {i.identity} {hexs(m)} {s}")
        expected.append("1")
        tampered = bytearray(m or b"\x00")
        if m:
            bit = run.rng.randrange(len(m) * 8)
            tampered[bit // 8] ^= 1 << (bit % 8)
        lines.append(f"verify {i.identity} {tampered.hex()} {s}")
        expected.append("0")
        bad_r = bytearray(unhex(s))
        bad_r[run.rng.randrange(32)] ^= 1 << run.rng.randrange(8)  # R half: never a malformed field
        lines.append(f"verify {i.identity} {hexs(m)} {bad_r.hex()}")
        expected.append("0")
    for k, (a, e) in enumerate(zip(r.peer.batch(lines), expected)):
        what = ("valid signature", "tampered message", "tampered signature")[k % 3]
        expect(a.ok, f"verify of {what} #{k // 3} answered err: {a.line[:120]}")
        expect(a.fields == [e], f"verify of {what} #{k // 3}: expected ok {e}, got {a.line[:60]}")


def fingerprint_check(run: Run, version: int, iterations: int) -> None:
    i, r = run.i, run.r
    fi = i.peer.ok(f"fingerprint {iterations} {version} {i.stable_id} {r.stable_id} {r.identity}")
    fr = r.peer.ok(f"fingerprint {iterations} {version} {r.stable_id} {i.stable_id} {i.identity}")
    expect(len(fi) == 2 and len(fr) == 2, "fingerprint answers must have two fields")
    hi = fingerprint_hash(bytes.fromhex(i.identity), i.stable_id, iterations)
    hr = fingerprint_hash(bytes.fromhex(r.identity), r.stable_id, iterations)
    safety = "".join(sorted([display_digits(hi), display_digits(hr)]))
    expect(fi[0] == fr[0], f"safety numbers differ: {fi[0]} vs {fr[0]}")
    expect(fi[0] == safety, f"safety number {fi[0]} differs from the specification's {safety}")
    si, sr = pb_fields(unhex(fi[1])), pb_fields(unhex(fr[1]))
    for label, s in ((i.peer.label, si), (r.peer.label, sr)):
        expect(field(s, 1) == version, f"{label}: scannable version {field(s, 1)} != {version}")
        expect(2 in s and 3 in s, f"{label}: scannable lacks local or remote fingerprint")
    expect(field(si, 2) == field(sr, 3) and field(si, 3) == field(sr, 2),
           "scannable: one side's local fingerprint is not the other side's remote one")
    if version == 1:
        expect(field(pb_fields(field(si, 2)), 1) == hi[:32], "scannable v1 local content != hash[0:32]")
        expect(field(pb_fields(field(si, 3)), 1) == hr[:32], "scannable v1 remote content != hash[0:32]")
    else:
        local = pb_fields(field(si, 2))
        expect(field(local, 1) == bytes.fromhex(i.identity) and field(local, 2) == i.stable_id.encode(),
               "scannable v0 local fingerprint is not (identity key, stable id)")


def check_fingerprint_v1(run: Run) -> None:
    """Equal 60-digit safety numbers, matching scannable codes (v1), also for another iteration count."""
    fingerprint_check(run, 1, 5200)
    fingerprint_check(run, 1, 1024)


def check_fingerprint_v0(run: Run) -> None:
    fingerprint_check(run, 0, 5200)


def check_sender_keys(run: Run) -> None:
    """SKDMs exchanged inside the 1:1 session, then group messages each way decrypted out of order."""
    i, r, count = run.i, run.r, run.n.group
    run.establish()
    group = f"group-{run.rng.randbytes(4).hex()}"
    for src, dst in ((i, r), (r, i)):
        skdm = src.peer.ok(f"skdm_create {group}")
        expect(len(skdm) == 1 and unhex(skdm[0])[:1] == b"\x33", "skdm_create answer malformed")
        (msg_type, wire), = run.encrypt(src, dst, [unhex(skdm[0])])
        a = run.decrypt(src, dst, [(msg_type, wire)])[0]
        expect(a.ok and a.fields == [skdm[0]], f"SKDM did not survive the 1:1 session: {a.line[:120]}")
        dst.peer.ok(f"skdm_process {group} {src.name} {src.device} {a.fields[0]}", "skdm_process")
    for src, dst in ((i, r), (r, i)):
        plaintexts = [run.plaintext() for _ in range(count)]
        answers = src.peer.batch([f"group_encrypt {group} {hexs(p)}" for p in plaintexts])
        wires = []
        for k, a in enumerate(answers):
            expect(a.ok and len(a.fields) == 1, f"group_encrypt #{k} failed: {a.line[:120]}")
            wires.append(a.fields[0])
        order = list(range(count))
        run.rng.shuffle(order)
        answers = dst.peer.batch([f"group_decrypt {group} {src.name} {src.device} {wires[k]}" for k in order])
        run.expect_plaintexts(dst, answers, [plaintexts[k] for k in order], "group message")
        a = dst.peer.call(f"group_decrypt {group} {src.name} {src.device} {wires[order[0]]}")
        expect(not a.ok, "a replayed group message was accepted")
        run.note(f"group replay rejected with {a.code}")


def check_tamper_and_replay(run: Run) -> None:
    """A flipped ciphertext byte or MAC byte is rejected without damaging the session; a replay is
    rejected."""
    i, r = run.i, run.r
    run.establish()
    plaintext = run.plaintext()
    (msg_type, wire_hex), = run.encrypt(i, r, [plaintext])
    expect(msg_type == 2, "message after the handshake should be a SignalMessage")
    wire = unhex(wire_hex)
    m = parse_signal_message(wire)
    body = bytearray(wire)
    body[run.rng.randrange(m.ciphertext_start, m.ciphertext_end)] ^= 1 << run.rng.randrange(8)
    mac = bytearray(wire)
    mac[run.rng.randrange(len(wire) - 8, len(wire))] ^= 1 << run.rng.randrange(8)
    for what, bad in (("ciphertext", body), ("MAC", mac)):
        a = run.decrypt(i, r, [(2, bad.hex())])[0]
        expect(not a.ok, f"a message with a flipped {what} bit was accepted")
        run.note(f"flipped {what} rejected with {a.code}")
    a = run.decrypt(i, r, [(2, wire_hex)])[0]
    expect(a.ok and unhex(a.fields[0]) == plaintext, f"the original failed after tampered copies: {a.line[:120]}")
    a = run.decrypt(i, r, [(2, wire_hex)])[0]
    expect(not a.ok, "a replayed SignalMessage was accepted")
    run.note(f"replayed SignalMessage rejected with {a.code}")
    run.transfer(i, r, 3, "message after the replay", expect_type=2)
    run.transfer(r, i, 3, "reply after the replay", expect_type=2)


def check_prekey_replay(run: Run) -> None:
    """The first PreKeySignalMessage delivered twice: the second delivery must fail."""
    i, r = run.i, run.r
    spk_id, pk_id = run.start_session()
    plaintext = run.plaintext()
    first = run.encrypt(i, r, [plaintext])
    expect(first[0][0] == 3, "the first message must be a PreKeySignalMessage")
    run.check_prekey_message(unhex(first[0][1]), spk_id, pk_id)
    a, b = run.decrypt(i, r, first + first)
    expect(a.ok and unhex(a.fields[0]) == plaintext, f"first PreKeySignalMessage failed: {a.line[:120]}")
    expect(not b.ok, "a replayed PreKeySignalMessage was accepted")
    run.note(f"replayed PreKeySignalMessage rejected with {b.code}")
    run.transfer(i, r, 2, "second PreKeySignalMessage", expect_type=3)
    run.transfer(r, i, 2, "reply", expect_type=2)
    run.transfer(i, r, 2, "message after the reply", expect_type=2)


def check_malformed_input(run: Run) -> None:
    """The responder answers `err <negative code>` to bad lines and bad bytes, and keeps working."""
    i, r, rng = run.i, run.r, run.rng
    run.establish()
    (_, good), = run.encrypt(i, r, [b"still here"])
    good_bytes = unhex(good)
    src = f"{i.name} {i.device}"
    lines = [
        "frobnicate", "", "identity extra", "encrypt", f"encrypt {src}", f"encrypt {src} 0g",
        f"encrypt {src} abc", f"decrypt {src} 2 zz", f"decrypt {src} x 00", f"decrypt {i.name} x 2 00",
        f"decrypt {src} 9 {good}", f"decrypt {src} 2 -", f"decrypt {src} 3 -", f"decrypt nobody 1 2 {good}",
        "bundle x 1", "bundle 1 x", f"process_bundle {i.name} 1 2 3", "sign zz", "verify 05 00 00",
        f"verify 04{'00' * 32} 00 {'00' * 64}", f"verify {i.identity} 00 {'00' * 63}", "fingerprint x 1 a b 05",
        f"fingerprint 5200 7 a b {i.identity}", f"fingerprint 5200 1 a b {'05' * 10}",
        f"group_decrypt g {src} {'33' * 80}", f"skdm_process g {src} {'33' * 40}", "skdm_create",
    ]
    # Random and truncated wire messages reach the protobuf parsers and the ratchet.
    def junk(max_len: int) -> str:
        return (b"\x33" + rng.randbytes(rng.randint(1, max_len))).hex()

    for _ in range(20):
        lines.append(f"decrypt {src} 2 {junk(120)}")
        lines.append(f"decrypt {src} 3 {junk(200)}")
        lines.append(f"group_decrypt g {src} {junk(150)}")
    for cut in sorted(rng.sample(range(1, len(good_bytes)), 10)):
        lines.append(f"decrypt {src} 2 {good_bytes[:cut].hex()}")
    for k, a in enumerate(r.peer.batch(lines)):
        expect(not a.ok, f"bad line #{k} answered ok: {lines[k][:80]!r}")
    expect(r.peer.ok("identity") == [r.identity], "identity changed after bad input")
    a = run.decrypt(i, r, [(2, good)])[0]
    expect(a.ok and unhex(a.fields[0]) == b"still here", f"session damaged by bad input: {a.line[:120]}")


@dataclass
class Check:
    name: str
    run: Callable[[Run], None]


CHECKS: list[Check] = [
    Check("batches", check_batches),
    Check("ping_pong", check_ping_pong),
    Check("shuffled", check_shuffled),
    Check("skip_2000_accepted", check_skip_2000_accepted),
    Check("skip_2001_rejected", check_skip_2001_rejected),
    Check("no_one_time_prekey", check_no_one_time_prekey),
    Check("bad_signed_prekey_signature", check_bad_signed_prekey_signature),
    Check("signatures", check_signatures),
    Check("fingerprint_v1", check_fingerprint_v1),
    Check("fingerprint_v0", check_fingerprint_v0),
    Check("sender_keys", check_sender_keys),
    Check("tamper_and_replay", check_tamper_and_replay),
    Check("prekey_replay", check_prekey_replay),
    Check("malformed_input", check_malformed_input),
]


# ------------------------------------------------------------------------------------------------
# Main


def init_party(party: Party) -> None:
    fields = party.peer.ok(f"init {party.name} {party.device}")
    expect(len(fields) == 2, f"init answer has {len(fields)} fields, not 2")
    party.registration_id = int(fields[0])
    party.identity = fields[1]
    key = unhex(fields[1])
    expect(len(key) == 33 and key[0] == 5, "identity key is not 33 bytes 05...")
    expect(party.peer.ok("identity") == [fields[1]], "identity differs from init's")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--a", required=True, help="command of peer A")
    parser.add_argument("--b", required=True, help="command of peer B")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: from the clock)")
    parser.add_argument("--quick", action="store_true", help="smaller counts, for local iteration only")
    parser.add_argument("--only", action="append", default=[], help="run only checks with this name")
    parser.add_argument("--verbose", action="store_true", help="timings and observed error codes on stderr")
    parser.add_argument("--timeout", type=float, default=ANSWER_TIMEOUT_S, help="seconds to wait for an answer")
    args = parser.parse_args()
    Peer.timeout = args.timeout

    seed = args.seed if args.seed is not None else time.time_ns() % 1_000_000_007
    counts = QUICK if args.quick else FULL
    checks = [c for c in CHECKS if not args.only or c.name in args.only]
    print(f"# seed {seed}{' (quick)' if args.quick else ''}; A: {args.a}; B: {args.b}", flush=True)

    peers = {"a": Peer("a", args.a), "b": Peer("b", args.b)}
    parties = {"a": Party(peers["a"], "alice", 1, stable_id="alice@example.org"),
               "b": Party(peers["b"], "bob", 7, stable_id="bob@example.net")}
    passed = failed = 0
    started = time.monotonic()
    for number, check in enumerate(checks):
        for direction, (ini, res) in enumerate((("a", "b"), ("b", "a"))):
            name = f"{check.name}[{ini}->{res}]"
            rng = random.Random(f"{seed}/{number}/{direction}")
            notes: list[str] = []
            t0 = time.monotonic()
            try:
                for p in peers.values():
                    if not p.alive():
                        p.restart()
                for label in (ini, res):
                    init_party(parties[label])
                check.run(Run(parties[ini], parties[res], rng, counts, notes))
                passed += 1
                print(f"PASS {name}", flush=True)
            except Exception as e:  # noqa: BLE001 - any failure is reported, then the peers start afresh
                failed += 1
                reason = str(e) if isinstance(e, (CheckFailed, PeerError)) else f"{type(e).__name__}: {e}"
                print(f"FAIL {name}: {reason}", flush=True)
                # Unread answers or a wedged peer would desynchronize the next check.
                for p in peers.values():
                    p.restart()
            if args.verbose:
                detail = "; ".join(sorted(set(notes)))
                print(f"  {name}: {time.monotonic() - t0:.2f} s{'; ' + detail if detail else ''}", file=sys.stderr)

    for label, p in peers.items():
        name = f"quit[{label}]"
        if not p.alive():
            p.restart()
        p.send(["quit"])
        try:
            status = p.proc.wait(timeout=10)
            extra = p.answers.get(timeout=5)
            if status == 0 and extra is None:
                passed += 1
                print(f"PASS {name}", flush=True)
            else:
                failed += 1
                print(f"FAIL {name}: exit status {status}, output after quit: {extra!r}", flush=True)
        except (subprocess.TimeoutExpired, queue.Empty):
            failed += 1
            print(f"FAIL {name}: peer did not exit after quit", flush=True)
        p.stop()

    print(f"# {time.monotonic() - started:.1f} s", flush=True)
    print(f"{passed} passed, {failed} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
