#!/usr/bin/env python3
"""Integration test of attachments (TUS 1.0 uploads, Range downloads) in postern-server: starts the
real binary on 127.0.0.1:0 with a temporary data directory and drives /v1/attachments over TLS.

Covers: a small upload in two PATCHes read back; a 200 MB upload cut half-way by closing the socket
mid-body, resumed from the offset HEAD reports, downloaded in two Range requests whose SHA-256
equals the original's; 413 over the size limit; 429 from the byte rate limit; 401; 409, 415, 412,
411, 400, 416, 404, 405; ownership; termination; files removed with the account.

Usage: attachments_test.py PATH/TO/postern-server PATH/TO/postern-testkeys
Standard library only; the shared helpers (server process, accounts, PASS/FAIL counting) are in
harness.py. Every server it starts is killed by PID at the end.
"""
import hashlib
import json
import os
import random
import time

from harness import BASE_CONFIG, Server, check, error_code, run_main, signup_and_login

TUS = {"Tus-Resumable": "1.0.0"}
OCTETS = "application/offset+octet-stream"
MIB = 1024 * 1024
BIG = 200 * MIB

MAIN_CONFIG = BASE_CONFIG + """
[attachments]
max_upload_bytes = 314572800
quota_bytes = 1073741824
bytes_per_account = { capacity = 1073741824, refill_per_second = 1073741824 }
"""

# A small maximum (1000 bytes) and a byte bucket of 3000 that does not refill in the test's time.
LIMITS_CONFIG = BASE_CONFIG + """
[attachments]
max_upload_bytes = 1000
bytes_per_account = { capacity = 3000, refill_per_second = 0.01 }
"""


def is_json_error(body, code):
    return isinstance(body, dict) and error_code(body) == code and isinstance(body["error"].get("message"), str)


# ---- TUS helpers ----

def create(server, token, length, extra=None):
    h = dict(TUS)
    h["Upload-Length"] = str(length)
    h.update(extra or {})
    return server.request("POST", "/v1/attachments", token=token, headers=h)


def patch(server, token, location, offset, data, content_type=OCTETS, extra=None):
    h = dict(TUS)
    h["Upload-Offset"] = str(offset)
    h["Content-Type"] = content_type
    h.update(extra or {})
    return server.request("PATCH", location, token=token, raw=data, headers=h)


def head(server, token, location):
    return server.request("HEAD", location, token=token, headers=TUS)


def stream(seed, total, start=0, chunk=MIB):
    """The bytes [start, total) of a reproducible pseudo-random stream, in pieces."""
    rng = random.Random(seed)
    pos = 0
    while pos < total:
        n = min(chunk, total - pos)
        block = rng.randbytes(n)
        if pos + n > start:
            yield block[max(0, start - pos):]
        pos += n


def cut_upload(server, token, location, total, seed, stop_after):
    """Starts a PATCH of the whole stream and closes the socket after stop_after body bytes."""
    sock = server.raw_socket(timeout=60)
    header = (f"PATCH {location} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
              f"Tus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\nContent-Type: {OCTETS}\r\n"
              f"Content-Length: {total}\r\n\r\n")
    sock.sendall(header.encode())
    sent = 0
    for block in stream(seed, total):
        block = block[:stop_after - sent]
        sock.sendall(block)
        sent += len(block)
        if sent >= stop_after:
            break
    sock.close()  # mid-body: the server sees the connection end
    return sent


def read_head(f):
    """(status, headers) of the next response header on the file f."""
    line = f.readline()
    if not line:
        return None, {}
    status = int(line.split()[1])
    headers = {}
    while True:
        line = f.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.decode().partition(":")
        headers[name.strip()] = value.strip()
    return status, headers


def resume_upload(server, token, location, total, seed, offset):
    """A PATCH of the stream from offset with Expect: 100-continue, as a careful client does: the
    body goes only once the server said it will take it (not when it answers 409 or 423)."""
    sock = server.raw_socket(timeout=60)
    try:
        f = sock.makefile("rb")
        header = (f"PATCH {location} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
                  f"Tus-Resumable: 1.0.0\r\nUpload-Offset: {offset}\r\nContent-Type: {OCTETS}\r\n"
                  f"Content-Length: {total - offset}\r\nExpect: 100-continue\r\n\r\n")
        sock.sendall(header.encode())
        status, headers = read_head(f)
        if status == 100:
            for block in stream(seed, total, offset):
                sock.sendall(block)
            status, headers = read_head(f)
        return status, headers
    finally:
        sock.close()


def range_digest(server, token, location, ranges):
    """SHA-256 over the bodies of GETs with these Range headers, in order, read in pieces."""
    digest = hashlib.sha256()
    results = []
    for r in ranges:
        conn = server.connection()
        try:
            conn.request("GET", location, headers={"Authorization": "Bearer " + token, "Range": r})
            resp = conn.getresponse()
            n = 0
            while True:
                block = resp.read(MIB)
                if not block:
                    break
                digest.update(block)
                n += len(block)
            results.append((resp.status, resp.getheader("Content-Range"), n))
        finally:
            conn.close()
    return digest.hexdigest(), results


def main():
    a = Server(MAIN_CONFIG)
    alice = signup_and_login(a, "alice@example.com")["token"]
    bob = signup_and_login(a, "bob@example.com")["token"]

    # --- discovery ---
    status, h, _ = a.request("OPTIONS", "/v1/attachments", token=alice)
    check("options: 204 with Tus-Version, Tus-Max-Size, Tus-Extension",
          status == 204 and h.get("Tus-Version") == "1.0.0" and h.get("Tus-Max-Size") == "314572800"
          and "creation" in h.get("Tus-Extension", "") and h.get("Tus-Resumable") == "1.0.0", f"{status} {h}")

    # --- authentication ---
    status, h, body = create(a, None, 10)
    check("no token -> 401 unauthorized with WWW-Authenticate",
          status == 401 and is_json_error(body, "unauthorized") and h.get("WWW-Authenticate") == "Bearer",
          f"{status} {h} {body}")
    status, _, body = create(a, "not-a-real-token", 10)
    check("bad token -> 401", status == 401 and is_json_error(body, "unauthorized"), f"{status} {body}")
    status, _, body = a.request("GET", "/v1/attachments/" + "A" * 43, token="x" * 43)
    check("download with a bad token -> 401", status == 401, f"{status} {body}")

    # --- a small upload in two PATCHes ---
    small = b"hello, tus!"
    status, h, _ = create(a, alice, len(small), {"Upload-Metadata": "filename aGVsbG8udHh0,secret"})
    location = h.get("Location", "")
    check("create: 201 with Location and Upload-Expires",
          status == 201 and location.startswith("/v1/attachments/") and len(location) == len("/v1/attachments/") + 43
          and h.get("Upload-Expires", "").endswith("GMT") and h.get("Tus-Resumable") == "1.0.0", f"{status} {h}")
    status, h, _ = head(a, alice, location)
    check("head: 200 offset 0, length, no-store",
          status == 200 and h.get("Upload-Offset") == "0" and h.get("Upload-Length") == str(len(small))
          and h.get("Cache-Control") == "no-store", f"{status} {h}")
    status, _, body = a.request("GET", location, token=alice)
    check("download of an incomplete upload -> 409 upload_incomplete",
          status == 409 and is_json_error(body, "upload_incomplete"), f"{status} {body}")
    status, h, _ = patch(a, alice, location, 0, small[:5])
    check("patch 1: 204 Upload-Offset 5", status == 204 and h.get("Upload-Offset") == "5", f"{status} {h}")
    status, _, body = patch(a, alice, location, 3, small[5:])
    check("patch at a wrong offset -> 409 offset_mismatch", status == 409 and is_json_error(body, "offset_mismatch"),
          f"{status} {body}")
    status, _, body = patch(a, alice, location, 5, small[5:], content_type="application/octet-stream")
    check("patch with a wrong Content-Type -> 415", status == 415 and is_json_error(body, "unsupported_media_type"),
          f"{status} {body}")
    status, _, body = patch(a, alice, location, 5, small[5:] + b"extra")
    check("patch past Upload-Length -> 413 too_large", status == 413 and is_json_error(body, "too_large"),
          f"{status} {body}")
    status, _, body = patch(a, alice, location, "five", small[5:])
    check("patch with a malformed Upload-Offset -> 400", status == 400 and is_json_error(body, "bad_upload_offset"),
          f"{status} {body}")
    status, _, body = a.request("PATCH", location, token=alice, headers={"Upload-Offset": "5", "Content-Type": OCTETS})
    check("patch without Tus-Resumable -> 412", status == 412 and is_json_error(body, "unsupported_tus_version"),
          f"{status} {body}")
    status, _, body = head(a, bob, location)
    check("another account cannot HEAD -> 404", status == 404, f"{status}")
    status, _, body = patch(a, bob, location, 5, small[5:])
    check("another account cannot PATCH -> 404", status == 404 and is_json_error(body, "not_found"), f"{status} {body}")
    status, _, body = a.request("DELETE", location, token=bob, headers=TUS)
    check("another account cannot DELETE -> 404", status == 404, f"{status} {body}")
    conn = a.connection()  # no Content-Length at all
    try:
        conn.putrequest("PATCH", location)
        for k, v in {"Authorization": "Bearer " + alice, "Tus-Resumable": "1.0.0", "Upload-Offset": "5",
                     "Content-Type": OCTETS}.items():
            conn.putheader(k, v)
        conn.endheaders()
        resp = conn.getresponse()
        body = json.loads(resp.read() or b"null")
        check("patch without Content-Length -> 411", resp.status == 411 and is_json_error(body, "length_required"),
              f"{resp.status} {body}")
    finally:
        conn.close()
    status, h, _ = patch(a, alice, location, 5, small[5:])
    check("patch 2: 204 Upload-Offset 11 (complete)", status == 204 and h.get("Upload-Offset") == "11",
          f"{status} {h}")
    status, _, body = patch(a, alice, location, 11, b"x")
    check("patch of a complete upload -> 413", status == 413, f"{status} {body}")
    status, h, body = a.request("GET", location, token=bob)
    check("download (any account): 200, the bytes, Accept-Ranges, octet-stream",
          status == 200 and body == small and h.get("Accept-Ranges") == "bytes"
          and h.get("Content-Type") == "application/octet-stream", f"{status} {h} {body!r}")
    status, h, body = a.request("GET", location, token=alice, headers={"Range": "bytes=-4"})
    check("download bytes=-4: 206, the last 4 bytes",
          status == 206 and body == small[-4:] and h.get("Content-Range") == "bytes 7-10/11", f"{status} {h} {body!r}")
    status, h, body = a.request("GET", location, token=alice, headers={"Range": "bytes=100-"})
    check("unsatisfiable range -> 416 with Content-Range bytes */11",
          status == 416 and h.get("Content-Range") == "bytes */11" and is_json_error(body, "range_not_satisfiable"),
          f"{status} {h} {body}")
    status, h, body = a.request("GET", location, token=alice, headers={"Range": "bytes=0-1,4-5"})
    check("several ranges: answered whole (200)", status == 200 and body == small, f"{status} {body!r}")
    status, h, body = a.request("GET", location, token=alice, headers={"Range": "bytes=zz"})
    check("malformed range: ignored (200)", status == 200 and body == small, f"{status} {body!r}")

    # --- malformed requests ---
    for name, extra, code in [("missing", None, "bad_upload_length"), ("not a number", "abc", "bad_upload_length"),
                              ("negative", "-1", "bad_upload_length"), ("with spaces", "1 0", "bad_upload_length"),
                              ("huge", "9" * 30, "bad_upload_length")]:
        h = dict(TUS)
        if extra is not None:
            h["Upload-Length"] = extra
        status, _, body = a.request("POST", "/v1/attachments", token=alice, headers=h)
        check(f"create with Upload-Length {name} -> 400", status == 400 and is_json_error(body, code), f"{status} {body}")
    status, _, body = create(a, alice, 10, {"Upload-Metadata": "bad key!!, ,"})
    check("create with malformed Upload-Metadata -> 400", status == 400 and is_json_error(body, "bad_upload_metadata"),
          f"{status} {body}")
    status, _, body = create(a, alice, 10, {"Upload-Defer-Length": "1"})
    check("create with Upload-Defer-Length -> 400", status == 400, f"{status} {body}")
    status, _, body = a.request("POST", "/v1/attachments", token=alice, headers={"Upload-Length": "10"})
    check("create without Tus-Resumable -> 412", status == 412 and is_json_error(body, "unsupported_tus_version"),
          f"{status} {body}")
    status, _, body = a.request("POST", "/v1/attachments", token=alice,
                                headers={"Upload-Length": "10", "Tus-Resumable": "0.2.2"})
    check("create with another Tus-Resumable -> 412", status == 412, f"{status} {body}")
    status, _, body = create(a, alice, 314572801)
    check("create over the maximum -> 413 too_large", status == 413 and is_json_error(body, "too_large"),
          f"{status} {body}")
    status, h, body = a.request("PUT", "/v1/attachments", token=alice, headers=TUS)
    check("PUT on the collection -> 405 with Allow", status == 405 and "POST" in h.get("Allow", ""),
          f"{status} {h} {body}")
    status, _, body = a.request("GET", "/v1/attachments/" + "B" * 43, token=alice)
    check("unknown id -> 404 not_found", status == 404 and is_json_error(body, "not_found"), f"{status} {body}")
    status, _, body = head(a, alice, "/v1/attachments/" + "B" * 43)
    check("HEAD unknown id -> 404", status == 404, f"{status}")
    for path in ["/v1/attachments/a/b", "/v1/attachments/"]:
        status, _, body = a.request("GET", path, token=alice)
        check(f"GET {path} -> 404", status == 404 and is_json_error(body, "not_found"), f"{status} {body}")
    # Paths the camouflage front (nginx's rules) normalises or refuses before the API sees them:
    # the web site answers, as nginx would ("/../../etc/passwd" -> "/etc/passwd": 404; %00: 400).
    for path, code in [("/v1/attachments/../../etc/passwd", 404), ("/v1/attachments/%00", 400)]:
        status, h, body = a.request("GET", path, token=alice)
        check(f"GET {path} -> the site's {code}", status == code and h.get("Server") == "nginx/1.22.1",
              f"{status} {h} {body}")
    sock = a.raw_socket(timeout=60)  # a request that is not HTTP at all after a valid start
    sock.sendall(b"PATCH " + location.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Length: zz\r\n\r\n")
    sock.settimeout(10)
    reply = sock.recv(200)
    sock.close()
    check("garbage Content-Length -> 400 (server still up)", reply.startswith(b"HTTP/1.1 400"), repr(reply[:40]))

    # --- an empty attachment is complete at once ---
    status, h, _ = create(a, alice, 0)
    status2, h2, body = a.request("GET", h.get("Location", "/v1/attachments/x"), token=bob)
    check("empty upload: 201, then GET -> 200 with no bytes", status == 201 and status2 == 200 and body is None
          and h2.get("Content-Length") == "0", f"{status} {status2} {h2} {body!r}")

    # --- termination ---
    status, h, _ = create(a, alice, 5)
    doomed = h.get("Location", "")
    status, _, _ = a.request("DELETE", doomed, token=alice, headers=TUS)
    status2, _, _ = head(a, alice, doomed)
    check("delete: 204, then HEAD -> 404", status == 204 and status2 == 404, f"{status} {status2}")

    # --- 200 MB: cut half-way, resumed, downloaded in two ranges ---
    started = time.time()
    seed = 20261129
    original = hashlib.sha256()
    for block in stream(seed, BIG):
        original.update(block)
    status, h, _ = create(a, alice, BIG)
    big = h.get("Location", "")
    check("200 MB: created", status == 201, f"{status} {h}")
    sent = cut_upload(a, alice, big, BIG, seed, BIG // 2)
    offset = -1
    deadline = time.time() + 20
    while time.time() < deadline:  # the server commits what arrived once it sees the connection end
        status, h, _ = head(a, alice, big)
        if status == 200 and 0 < int(h.get("Upload-Offset", "0")):
            later_status, later, _ = head(a, alice, big)
            if later.get("Upload-Offset") == h.get("Upload-Offset"):
                offset = int(h["Upload-Offset"])
                break
        time.sleep(0.2)
    check("200 MB: after the cut HEAD shows 0 < offset <= bytes sent", 0 < offset <= sent, f"{offset} {sent}")
    print(f"(cut after {sent} body bytes sent; HEAD then showed {offset}; with TLS 1.3 the client's close may reset the"
          " connection and drop bytes still in the server's receive buffer)", flush=True)
    status, h = None, {}
    resume_offset = offset
    deadline = time.time() + 30
    while time.time() < deadline:
        status, h = resume_upload(a, alice, big, BIG, seed, resume_offset)
        # The cut PATCH may still hold the upload (423) and then record a larger offset (409):
        # ask again and resume from there.
        if status not in (409, 423):
            break
        time.sleep(0.2)
        resume_offset = int(head(a, alice, big)[1].get("Upload-Offset", "0"))
    check("200 MB: resumed from the offset -> 204, complete", status == 204 and h.get("Upload-Offset") == str(BIG),
          f"{status} {h}")
    half = BIG // 2
    digest, results = range_digest(a, bob, big, [f"bytes=0-{half - 1}", f"bytes={half}-"])
    check("200 MB: two Range downloads -> 206 with Content-Range",
          results == [(206, f"bytes 0-{half - 1}/{BIG}", half), (206, f"bytes {half}-{BIG - 1}/{BIG}", BIG - half)],
          f"{results}")
    check("200 MB: SHA-256 of the ranges equals the original's", digest == original.hexdigest(),
          f"{digest} != {original.hexdigest()}")
    print(f"(200 MB cut, resume and download took {time.time() - started:.1f} s)", flush=True)

    # --- deleting the account deletes its files ---
    files_dir = os.path.join(a.data, "attachments")
    before = set(os.listdir(files_dir))
    big_file = big.rsplit("/", 1)[1]
    status, _, body = a.request("DELETE", "/v1/account", {"password": "Secret1"}, token=alice)
    after = set(os.listdir(files_dir))
    check("account deletion: 204 and its upload files are gone",
          status in (200, 204) and big_file in before and big_file not in after and not after, f"{status} {body} {after}")
    status, _, _ = a.request("GET", big, token=bob)
    check("account deletion: its attachments are no longer served", status == 404, f"{status}")

    # --- limits: a small maximum and a byte bucket ---
    b = Server(LIMITS_CONFIG)
    carol = signup_and_login(b, "carol@example.com")["token"]
    status, _, body = create(b, carol, 1001)
    check("limits: Upload-Length over max_upload_bytes -> 413 too_large",
          status == 413 and is_json_error(body, "too_large"), f"{status} {body}")
    statuses = [create(b, carol, 1000)[0] for _ in range(3)]
    status, h, body = create(b, carol, 1000)
    check("limits: byte bucket of 3000 -> 3 x 201, then 429 rate_limited with Retry-After",
          statuses == [201, 201, 201] and status == 429 and is_json_error(body, "rate_limited")
          and int(h.get("Retry-After", "0")) > 0, f"{statuses} {status} {h} {body}")
    dave = signup_and_login(b, "dave@example.com")["token"]
    status, _, _ = create(b, dave, 1000)
    check("limits: the bucket is per account", status == 201, f"{status}")


if __name__ == "__main__":
    run_main(main)
