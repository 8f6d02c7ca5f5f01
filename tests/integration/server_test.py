#!/usr/bin/env python3
"""Integration test of postern-server: starts the real binary on 127.0.0.1:0 with a temporary data
directory and drives its HTTPS JSON API over TLS, pinned to the certificate the server created.

Usage: server_test.py PATH/TO/postern-server PATH/TO/postern-testkeys
Prints PASS/FAIL lines and "N passed, M failed"; exits non-zero on any failure. Every server it
starts is killed by PID when the script ends, whatever happens. Standard library only.
"""
import base64
import datetime
import hashlib
import http.client
import json
import os
import select
import signal
import socket
import ssl
import stat
import subprocess
import time

from harness import (BASE_CONFIG, PATHS, PROCS, Server, b64, check, error_code, form, login_device, pow_for, run_main,
                     signup_and_login, solve, testkeys)


# The harness's configuration without its send limit: tests below append their own.
TEST_CONFIG = "".join(line + "\n" for line in BASE_CONFIG.splitlines() if not line.startswith("sends_per_account"))

# A server whose directory and key fetches allow a burst of 2 only.
LOOKUP_CONFIG = """
[pow]
difficulty = 8
[password]
opslimit = 1
memlimit = 8192
[rate_limits]
directory_per_account = { capacity = 2, refill_per_second = 0.001 }
key_fetch_per_account = { capacity = 2, refill_per_second = 0.001 }
"""

# A second server: challenges expire after 1 ms, and registration allows a burst of 2 only.
SHORT_CONFIG = """
[pow]
difficulty = 8
ttl_ms = 1
[password]
opslimit = 1
memlimit = 8192
[rate_limits]
registration_per_address = { capacity = 2, refill_per_second = 0.001 }
"""

PASSWORD_TEXT = "Must be at least 6 characters, include an upper and lower case character and a number"
AGE_TEXT = "You must be at least 18 years old"
EMAIL_TEXT = "Enter a valid e-mail address, like name@example.com"
TERMS_TEXT = "You must accept the terms of service"
FUTURE_TEXT = "Date of birth cannot be in the future"
IDENTITY_KEY = "05" + "11" * 32


# ---- DER: the SubjectPublicKeyInfo of a certificate (for the pin) ----

def der_read(data, pos):
    """(tag, content start, content end) of the DER element at pos."""
    tag = data[pos]
    length = data[pos + 1]
    pos += 2
    if length & 0x80:
        n = length & 0x7F
        length = int.from_bytes(data[pos:pos + n], "big")
        pos += n
    return tag, pos, pos + length


def spki_of(cert_der):
    _, cert_start, _ = der_read(cert_der, 0)           # Certificate SEQUENCE
    _, tbs_start, _ = der_read(cert_der, cert_start)   # tbsCertificate SEQUENCE
    pos = tbs_start
    tag, _, end = der_read(cert_der, pos)
    if tag == 0xA0:                                    # [0] version
        pos = end
    for _ in range(5):                                 # serial, signature, issuer, validity, subject
        _, _, end = der_read(cert_der, pos)
        pos = end
    _, _, end = der_read(cert_der, pos)
    return cert_der[pos:end]


def pin_of(cert_der):
    digest = hashlib.sha256(spki_of(cert_der)).digest()
    return "sha256/" + base64.urlsafe_b64encode(digest).decode().rstrip("=")


def unsolving_nonce(token, difficulty):
    nonce = 0
    while True:
        digest = hashlib.sha256(token.encode() + nonce.to_bytes(8, "little")).digest()
        if int.from_bytes(digest, "big") >> (256 - difficulty) != 0:
            return nonce
        nonce += 1


def fields_of(body):
    try:
        return [(f["field"], f["message"]) for f in body["error"]["fields"]]
    except (KeyError, TypeError):
        return None


def main():
    a = Server(TEST_CONFIG)

    # --- TLS identity and invite ---
    with socket.create_connection(("127.0.0.1", a.port)) as raw_sock:
        with a.ctx.wrap_socket(raw_sock, server_hostname="127.0.0.1") as tls:
            peer_der = tls.getpeercert(binary_form=True)
            version = tls.version()
    with open(os.path.join(a.data, "cert.pem")) as f:
        file_der = ssl.PEM_cert_to_DER_cert(f.read())
    check("tls: peer certificate is the one in DIR/cert.pem", peer_der == file_der)
    check("tls: TLS 1.2 or 1.3 negotiated", version in ("TLSv1.2", "TLSv1.3"), version)
    with open(os.path.join(a.data, "invite.txt")) as f:
        invite = f.read()
    expected = f"postern://127.0.0.1:{a.port}?pin={pin_of(peer_der)}&key="
    check("invite.txt: one line with the address, the SPKI pin, the Noise key and the secret",
          invite.startswith(expected) and "&secret=" in invite and invite.endswith("\n") and invite.count("\n") == 1,
          f"{invite!r} does not start with {expected!r}")
    check("invite.txt: mode 0600 (it carries the deployment secret)",
          stat.S_IMODE(os.stat(os.path.join(a.data, "invite.txt")).st_mode) == 0o600)
    check("data dir: pow.secret is 32 bytes, mode 0600",
          os.path.getsize(os.path.join(a.data, "pow.secret")) == 32
          and (os.stat(os.path.join(a.data, "pow.secret")).st_mode & 0o777) == 0o600)
    check("data dir: key.pem is mode 0600", (os.stat(os.path.join(a.data, "key.pem")).st_mode & 0o777) == 0o600)

    # --- challenge ---
    status, _, c = a.request("POST", "/v1/challenge")
    check("challenge: 200 with token, difficulty, expires_ms",
          status == 200 and len(c["token"]) == 116 and c["difficulty"] == 8 and c["expires_ms"] > time.time() * 1000,
          f"{status} {c}")

    # --- registration rules, each alone (no proof needed: fields are checked first) ---
    today = datetime.date.today()
    too_young = today.replace(year=today.year - 17).isoformat()
    future = (today + datetime.timedelta(days=2)).isoformat()
    cases = [
        ("bad e-mail", form(email="not-an-address"), [("email", EMAIL_TEXT)]),
        ("weak password", form(password="abcdef"), [("password", PASSWORD_TEXT)]),
        ("short password", form(password="Ab1"), [("password", PASSWORD_TEXT)]),
        ("under 18", form(birthdate=too_young), [("birthdate", AGE_TEXT)]),
        ("future birthdate", form(birthdate=future), [("birthdate", FUTURE_TEXT)]),
        ("terms not accepted", form(terms=False), [("terms", TERMS_TEXT)]),
        ("several at once", form(email="a@b", password="short", birthdate=too_young, terms=False),
         [("email", EMAIL_TEXT), ("password", PASSWORD_TEXT), ("birthdate", AGE_TEXT), ("terms", TERMS_TEXT)]),
    ]
    for name, body, want in cases:
        status, _, resp = a.request("POST", "/v1/accounts", body)
        check(f"register: {name} -> 422 with exact texts",
              status == 422 and error_code(resp) == "invalid_fields" and fields_of(resp) == want, f"{status} {resp}")

    # --- registration ok, duplicates, proofs of work ---
    status, _, resp = a.request("POST", "/v1/accounts", form(pow=None))
    check("register: without pow -> 400 pow_required", status == 400 and error_code(resp) == "pow_required",
          f"{status} {resp}")
    first_pow = pow_for(a)
    status, _, resp = a.request("POST", "/v1/accounts", form(pow=first_pow))
    check("register: valid form -> 201 account_id", status == 201 and isinstance(resp.get("account_id"), int),
          f"{status} {resp}")
    account_id = resp.get("account_id") if resp else None
    status, _, resp = a.request("POST", "/v1/accounts", form(email="  ALICE@Example.COM ", pow=pow_for(a)))
    check("register: duplicate e-mail (other case) -> 409 email_taken",
          status == 409 and error_code(resp) == "email_taken", f"{status} {resp}")
    status, _, resp = a.request("POST", "/v1/accounts", form(email="bob@example.com", pow=first_pow))
    check("register: reused proof of work -> 403 pow_reused", status == 403 and error_code(resp) == "pow_reused",
          f"{status} {resp}")
    status, _, c = a.request("POST", "/v1/challenge")
    status, _, resp = a.request("POST", "/v1/accounts", form(
        email="bob@example.com", pow={"token": c["token"], "nonce": unsolving_nonce(c["token"], 8)}))
    check("register: wrong nonce -> 403 pow_insufficient", status == 403 and error_code(resp) == "pow_insufficient",
          f"{status} {resp}")
    status, _, resp = a.request("POST", "/v1/accounts", form(email="bob@example.com",
                                                             pow={"token": "00" * 58, "nonce": 0}))
    check("register: forged token -> 403 pow_invalid", status == 403 and error_code(resp) == "pow_invalid",
          f"{status} {resp}")
    status, _, resp = a.request("POST", "/v1/accounts", form(email="bob@example.com",
                                                             pow={"token": "zz", "nonce": "x"}))
    check("register: pow of the wrong types -> 400 pow_required",
          status == 400 and error_code(resp) == "pow_required", f"{status} {resp}")

    b = Server(SHORT_CONFIG)
    other_pow = pow_for(b)
    status, _, resp = a.request("POST", "/v1/accounts", form(email="carol@example.com", pow=other_pow))
    check("register: token from another server's secret -> 403 pow_invalid",
          status == 403 and error_code(resp) == "pow_invalid", f"{status} {resp}")
    time.sleep(0.01)
    status, _, resp = b.request("POST", "/v1/accounts", form(email="carol@example.com", pow=other_pow))
    check("register: expired proof of work -> 403 pow_expired",
          status == 403 and error_code(resp) == "pow_expired", f"{status} {resp}")
    status, headers, resp = b.request("POST", "/v1/accounts", form(email="carol@example.com", pow=pow_for(b)))
    check("rate limit: second registration attempt within the burst of 2 is served", status == 403, f"{status}")
    status, headers, resp = b.request("POST", "/v1/accounts", form(email="carol@example.com"))
    check("rate limit: third registration attempt -> 429 with Retry-After",
          status == 429 and error_code(resp) == "rate_limited" and int(headers.get("Retry-After", "0")) >= 1,
          f"{status} {headers} {resp}")
    check("sigterm: second server exits with 0", b.stop() == 0)

    # --- login, tokens, devices, logout ---
    device = {"name": "laptop", "identity_key": IDENTITY_KEY, "registration_id": 4242}
    login = {"email": "Alice@Example.com", "password": "Secret1", "device": device}
    status, _, s1 = a.request("POST", "/v1/sessions", login)
    check("login: ok -> 201 account_id, device_id 1, token",
          status == 201 and s1["account_id"] == account_id and s1["device_id"] == 1 and len(s1["token"]) == 43,
          f"{status} {s1}")
    token = s1["token"] if status == 201 else "x"
    status, _, wrong = a.request("POST", "/v1/sessions", dict(login, password="Secret2"))
    check("login: wrong password -> 401 bad_credentials", status == 401 and error_code(wrong) == "bad_credentials",
          f"{status} {wrong}")
    status, _, unknown = a.request("POST", "/v1/sessions", dict(login, email="nobody@example.com"))
    check("login: unknown e-mail -> the same 401", status == 401 and unknown == wrong, f"{status} {unknown}")
    status, _, resp = a.request("POST", "/v1/sessions", dict(login, device=dict(device, identity_key="abcd")))
    check("login: bad identity key -> 422 device.identity_key",
          status == 422 and [f for f, _ in fields_of(resp) or []] == ["device.identity_key"], f"{status} {resp}")

    status, _, resp = a.request("GET", "/v1/devices", token=token)
    check("devices: list with the token -> 200, one current device",
          status == 200 and [(d["id"], d["name"], d["registration_id"], d["current"]) for d in resp["devices"]]
          == [(1, "laptop", 4242, True)], f"{status} {resp}")
    status, headers, resp = a.request("GET", "/v1/devices")
    check("devices: no token -> 401", status == 401 and error_code(resp) == "unauthorized", f"{status} {resp}")
    status, _, resp = a.request("GET", "/v1/devices", token="A" * 43)
    check("devices: unknown token -> 401", status == 401, f"{status}")
    status, _, resp = a.request("GET", "/v1/devices", headers={"Authorization": "Basic Zm9vOmJhcg=="})
    check("devices: non-bearer authorization -> 401", status == 401, f"{status}")

    key_b64 = base64.b64encode(bytes.fromhex(IDENTITY_KEY)).decode()
    status, _, s2 = a.request("POST", "/v1/sessions", dict(login, device=dict(device, name="phone", identity_key=key_b64)))
    check("login: second device (base64 key) -> device_id 2", status == 201 and s2["device_id"] == 2, f"{status} {s2}")
    status, _, _ = a.request("DELETE", "/v1/devices/2", token=token)
    check("devices: remove device 2 -> 204", status == 204)
    status, _, resp = a.request("GET", "/v1/devices", token=s2.get("token", "x"))
    check("devices: the removed device's token -> 401", status == 401, f"{status}")
    status, _, resp = a.request("DELETE", "/v1/devices/99", token=token)
    check("devices: remove unknown device -> 404", status == 404 and error_code(resp) == "device_not_found",
          f"{status} {resp}")

    status, _, _ = a.request("DELETE", "/v1/sessions/current", token=token)
    check("logout: -> 204", status == 204)
    status, _, _ = a.request("GET", "/v1/devices", token=token)
    check("logout: the token is refused afterwards -> 401", status == 401)
    status, _, _ = a.request("DELETE", "/v1/sessions/current", token=token)
    check("logout: again -> 401", status == 401)

    keys_directory_and_account(a, account_id)
    messages()

    # --- malformed requests ---
    status, _, resp = a.request("GET", "/v1/nothing")
    check("http: unknown route -> 404 JSON", status == 404 and error_code(resp) == "not_found", f"{status} {resp}")
    status, headers, resp = a.request("GET", "/v1/accounts")
    check("http: wrong method -> 405 with Allow", status == 405 and headers.get("Allow") == "POST", f"{status}")
    status, _, resp = a.request("POST", "/v1/accounts", raw=b'{"email": ')
    check("http: malformed JSON -> 400 malformed_json", status == 400 and error_code(resp) == "malformed_json",
          f"{status} {resp}")
    status, _, resp = a.request("POST", "/v1/accounts", raw=b'[1, 2, 3]')
    check("http: JSON that is not an object -> 400", status == 400 and error_code(resp) == "malformed_json",
          f"{status} {resp}")
    status, _, resp = a.request("POST", "/v1/accounts", raw=b'{"email": 5}')
    check("http: field of the wrong type -> 400 bad_request", status == 400 and error_code(resp) == "bad_request",
          f"{status} {resp}")
    status, _, resp = a.request("POST", "/v1/accounts", raw=b'{"email": "\xff\xfe"}')
    check("http: invalid UTF-8 in JSON -> 400", status == 400, f"{status} {resp}")
    status, _, resp = a.request("POST", "/v1/accounts", raw=b"x" * (64 * 1024 + 1))
    check("http: body over 64 KiB -> 413", status == 413 and error_code(resp) == "body_too_large", f"{status} {resp}")
    status, _, resp = a.request("GET", "/v1/devices", headers={"X-Big": "y" * 9000})
    # The front reads request heads with nginx's limits (a header line over 8 KiB) and answers
    # as nginx does, before the API's own limit (431) is reached.
    check("http: header over 8 KiB -> the site's 400 'Request Header Or Cookie Too Large'",
          status == 400 and b"Request Header Or Cookie Too Large" in (resp if isinstance(resp, bytes) else b""),
          f"{status} {resp}")
    with socket.create_connection(("127.0.0.1", a.port)) as raw_sock:
        with a.ctx.wrap_socket(raw_sock, server_hostname="127.0.0.1") as tls:
            tls.sendall(b"NOT HTTP AT ALL\r\n\r\n")
            reply = tls.recv(4096)
    check("http: garbage request line -> 400", reply.startswith(b"HTTP/1.1 400"), repr(reply[:40]))

    # keep-alive: two requests on one connection
    conn = a.connection()
    conn.request("POST", "/v1/challenge")
    resp1 = conn.getresponse()
    resp1.read()
    conn.request("POST", "/v1/challenge")
    resp2 = conn.getresponse()
    resp2.read()
    r1, r2 = resp1.status, resp2.status
    conn.close()
    check("http: keep-alive serves two requests on one connection", r1 == 200 and r2 == 200)

    # --- graceful stop with an idle connection open ---
    idle = a.connection()
    idle.connect()
    code = a.stop()
    idle.close()
    check("sigterm: server exits with 0 (idle connection open)", code == 0, f"exit {code}")
    check("restart: data survives (login works on a new process)", restart_login(a.data, login), "")


def keys_directory_and_account(a, alice_id):
    # --- key directory: upload ---
    k1 = testkeys(5)
    bob1 = signup_and_login(a, "bob@example.com", k1, "bob laptop")
    bob_id, t1 = bob1["account_id"], bob1["token"]
    k2 = testkeys(1, 100)
    bob2 = login_device(a, "bob@example.com", k2, "bob phone")
    t2 = bob2["token"]
    check("keys: bob's second device is device 2", bob2["device_id"] == 2, f"{bob2}")

    status, _, resp = a.request("PUT", "/v1/keys", {"signed_pre_key": k1["signed_pre_key"],
                                                    "one_time_pre_keys": k1["one_time_pre_keys"]}, token=t1)
    check("keys: upload signed prekey + 5 one-time prekeys (hex) -> 200 with count 5",
          status == 200 and resp == {"one_time_pre_keys": 5}, f"{status} {resp}")
    bad = dict(k1["signed_pre_key"], signature=k1["other_signature"])
    status, _, resp = a.request("PUT", "/v1/keys", {"signed_pre_key": bad}, token=t1)
    check("keys: signature by another identity key -> 422 invalid_signature",
          status == 422 and error_code(resp) == "invalid_signature", f"{status} {resp}")
    status, _, resp = a.request("PUT", "/v1/keys", {"signed_pre_key": k1["signed_pre_key"]}, token=t2)
    check("keys: device 1's signed prekey uploaded by device 2 -> 422 invalid_signature",
          status == 422 and error_code(resp) == "invalid_signature", f"{status} {resp}")
    flipped = bytearray.fromhex(k1["signed_pre_key"]["signature"])
    flipped[5] ^= 1
    status, _, resp = a.request("PUT", "/v1/keys", {"signed_pre_key": dict(k1["signed_pre_key"],
                                                                           signature=flipped.hex())}, token=t1)
    check("keys: one flipped signature bit -> 422 invalid_signature",
          status == 422 and error_code(resp) == "invalid_signature", f"{status} {resp}")
    many = testkeys(101, 1000)["one_time_pre_keys"]
    status, _, resp = a.request("PUT", "/v1/keys", {"one_time_pre_keys": many}, token=t1)
    check("keys: 101 one-time prekeys -> 422 too_many_prekeys",
          status == 422 and error_code(resp) == "too_many_prekeys", f"{status} {resp}")
    dup = [k1["one_time_pre_keys"][0], dict(k1["one_time_pre_keys"][1], id=k1["one_time_pre_keys"][0]["id"])]
    status, _, resp = a.request("PUT", "/v1/keys", {"one_time_pre_keys": dup}, token=t1)
    check("keys: the same id twice -> 422 invalid_fields one_time_pre_keys[1].id",
          status == 422 and [f for f, _ in fields_of(resp) or []] == ["one_time_pre_keys[1].id"], f"{status} {resp}")
    status, _, resp = a.request("PUT", "/v1/keys", {"signed_pre_key": {"id": -1, "public_key": "06" + "11" * 32,
                                                                       "signature": "00"}}, token=t1)
    check("keys: bad signed prekey fields -> 422 listing id, public_key, signature",
          status == 422 and [f for f, _ in fields_of(resp) or []]
          == ["signed_pre_key.id", "signed_pre_key.public_key", "signed_pre_key.signature"], f"{status} {resp}")
    status, _, resp = a.request("PUT", "/v1/keys", {}, token=t1)
    check("keys: empty upload -> 400 bad_request", status == 400 and error_code(resp) == "bad_request",
          f"{status} {resp}")
    status, _, resp = a.request("PUT", "/v1/keys", {"one_time_pre_keys": {"id": 1}}, token=t1)
    check("keys: one_time_pre_keys not an array -> 400", status == 400 and error_code(resp) == "bad_request",
          f"{status} {resp}")
    status, _, resp = a.request("PUT", "/v1/keys", raw=b"{not json", token=t1)
    check("keys: malformed JSON -> 400 malformed_json", status == 400 and error_code(resp) == "malformed_json",
          f"{status} {resp}")
    status, _, resp = a.request("PUT", "/v1/keys", {"signed_pre_key": k1["signed_pre_key"]})
    check("keys: upload without a token -> 401", status == 401, f"{status} {resp}")
    status, _, resp = a.request("GET", "/v1/keys/count", token=t1)
    check("keys: count -> 5 and signed prekey id 1",
          status == 200 and resp == {"one_time_pre_keys": 5, "signed_pre_key_id": 1}, f"{status} {resp}")
    status, _, resp = a.request("GET", "/v1/keys/count", token=t2)
    check("keys: count of a device without keys -> 0 and null",
          status == 200 and resp == {"one_time_pre_keys": 0, "signed_pre_key_id": None}, f"{status} {resp}")
    spk2 = k2["signed_pre_key"]
    status, _, resp = a.request("PUT", "/v1/keys", {
        "signed_pre_key": {"id": spk2["id"], "public_key": b64(spk2["public_key"]), "signature": b64(spk2["signature"])},
        "one_time_pre_keys": [{"id": k["id"], "public_key": b64(k["public_key"])} for k in k2["one_time_pre_keys"]]},
        token=t2)
    check("keys: device 2 uploads in base64 -> 200 count 1", status == 200 and resp == {"one_time_pre_keys": 1},
          f"{status} {resp}")

    # --- key directory: fetch and consumption ---
    alice = login_device(a, "alice@example.com", testkeys(), "alice tablet")
    ta = alice["token"]
    status, _, resp = a.request("GET", f"/v1/keys/{bob_id}", token=ta)
    devices = resp.get("devices", []) if status == 200 else []
    check("keys: fetch -> bundles of both devices", status == 200 and resp.get("account_id") == bob_id
          and [d["device_id"] for d in devices] == [1, 2], f"{status} {resp}")
    if len(devices) == 2:
        d1, d2 = devices
        check("keys: bundle carries identity key, registration id and signed prekey (base64)",
              d1["identity_key"] == b64(k1["identity_key"]) and d1["registration_id"] == 77
              and d1["signed_pre_key"] == {"id": 1, "public_key": b64(k1["signed_pre_key"]["public_key"]),
                                           "signature": b64(k1["signed_pre_key"]["signature"])}
              and d2["identity_key"] == b64(k2["identity_key"]), f"{devices}")
        check("keys: first fetch consumes the lowest one-time prekey of each device",
              d1["one_time_pre_key"] == {"id": 1, "public_key": b64(k1["one_time_pre_keys"][0]["public_key"])}
              and d1["remaining"] == 4 and d2["one_time_pre_key"]["id"] == 100 and d2["remaining"] == 0, f"{devices}")
    status, _, resp = a.request("GET", f"/v1/keys/{bob_id}", token=ta)
    devices = resp.get("devices", []) if status == 200 else []
    check("keys: second fetch -> next one-time prekey; signed prekey only when none is left",
          status == 200 and len(devices) == 2 and devices[0]["one_time_pre_key"]["id"] == 2
          and devices[0]["remaining"] == 3 and devices[1]["one_time_pre_key"] is None and devices[1]["remaining"] == 0
          and devices[1]["signed_pre_key"]["id"] == spk2["id"], f"{status} {resp}")
    status, _, resp = a.request("GET", "/v1/keys/count", token=t1)
    check("keys: owner's count went down to 3", status == 200 and resp["one_time_pre_keys"] == 3, f"{status} {resp}")
    rotated = k1["signed_pre_key_2"]
    refill = testkeys(10, 50)["one_time_pre_keys"]
    status, _, resp = a.request("PUT", "/v1/keys", {"signed_pre_key": rotated, "one_time_pre_keys": refill}, token=t1)
    check("keys: rotation + refill of 10 -> count 13", status == 200 and resp == {"one_time_pre_keys": 13},
          f"{status} {resp}")
    status, _, resp = a.request("GET", f"/v1/keys/{bob_id}", token=ta)
    d1 = resp["devices"][0] if status == 200 else {}
    check("keys: fetch after rotation serves the new signed prekey",
          d1.get("signed_pre_key", {}).get("id") == 2 and d1["signed_pre_key"]["public_key"] == b64(rotated["public_key"])
          and d1["one_time_pre_key"]["id"] == 3 and d1["remaining"] == 12, f"{status} {resp}")
    status, _, resp = a.request("GET", f"/v1/keys/{alice_id}", token=t1)
    check("keys: account without uploaded keys -> 404 no_keys", status == 404 and error_code(resp) == "no_keys",
          f"{status} {resp}")
    for target in ("/v1/keys/999999", "/v1/keys/abc", "/v1/keys/0", "/v1/keys/-1"):
        status, _, resp = a.request("GET", target, token=ta)
        check(f"keys: GET {target} -> 404 account_not_found",
              status == 404 and error_code(resp) == "account_not_found", f"{status} {resp}")
    status, _, resp = a.request("GET", f"/v1/keys/{bob_id}")
    check("keys: fetch without a token -> 401", status == 401, f"{status}")
    status, headers, resp = a.request("POST", f"/v1/keys/{bob_id}", token=ta)
    check("keys: POST on a bundle -> 405 Allow GET", status == 405 and headers.get("Allow") == "GET", f"{status}")

    # --- directory ---
    status, _, resp = a.request("GET", "/v1/directory?email=%20BOB%40Example.COM", token=ta)
    check("directory: e-mail (other case, percent-encoded) -> account id and device ids",
          status == 200 and resp == {"account_id": bob_id, "device_ids": [1, 2]}, f"{status} {resp}")
    plus = signup_and_login(a, "dave+chat@example.com", testkeys(), "dave")
    for query in ("dave+chat@example.com", "dave%2Bchat%40example.com"):
        status, _, resp = a.request("GET", "/v1/directory?email=" + query, token=ta)
        check(f"directory: {query} ('+' is literal) -> found",
              status == 200 and resp == {"account_id": plus["account_id"], "device_ids": [1]}, f"{status} {resp}")
    status, _, resp = a.request("GET", "/v1/directory?email=nobody%40example.com", token=ta)
    check("directory: unknown e-mail -> 404 account_not_found",
          status == 404 and error_code(resp) == "account_not_found", f"{status} {resp}")
    status, _, resp = a.request("GET", "/v1/directory?email=bob", token=ta)
    check("directory: not an exact address -> 404", status == 404, f"{status} {resp}")
    for query in ("", "?email=", "?mail=bob%40example.com", "?email=%zz"):
        status, _, resp = a.request("GET", "/v1/directory" + query, token=ta)
        check(f"directory: {query or 'no query'} -> 400 bad_request",
              status == 400 and error_code(resp) == "bad_request", f"{status} {resp}")
    status, _, resp = a.request("GET", "/v1/directory?email=bob%40example.com")
    check("directory: without a token -> 401", status == 401, f"{status}")

    c = Server(LOOKUP_CONFIG)
    carol = signup_and_login(c, "carol@example.com", testkeys(), "carol")
    codes = [c.request("GET", "/v1/directory?email=carol%40example.com", token=carol["token"])[0] for _ in range(3)]
    status, headers, resp = c.request("GET", "/v1/directory?email=carol%40example.com", token=carol["token"])
    check("directory: rate limited per account -> 200, 200, then 429 with Retry-After",
          codes == [200, 200, 429] and status == 429 and error_code(resp) == "rate_limited"
          and int(headers.get("Retry-After", "0")) >= 1, f"{codes} {status} {resp}")
    codes = [c.request("GET", f"/v1/keys/{carol['account_id']}", token=carol["token"])[0] for _ in range(3)]
    check("keys: fetches rate limited per account -> 404, 404, then 429", codes == [404, 404, 429], f"{codes}")
    check("sigterm: look-up server exits with 0", c.stop() == 0)

    # --- change password ---
    change = {"old_password": "Secret1", "new_password": "Better2"}
    status, _, resp = a.request("PUT", "/v1/account/password", dict(change, old_password="Wrong1"), token=t1)
    check("password: wrong old password -> 403 wrong_password",
          status == 403 and error_code(resp) == "wrong_password", f"{status} {resp}")
    status, _, resp = a.request("PUT", "/v1/account/password", dict(change, new_password="weakpw"), token=t1)
    check("password: weak new password -> 422 with the exact text",
          status == 422 and fields_of(resp) == [("new_password", PASSWORD_TEXT)], f"{status} {resp}")
    status, _, resp = a.request("PUT", "/v1/account/password", {"old_password": 1, "new_password": "Better2"}, token=t1)
    check("password: wrong types -> 400 bad_request", status == 400 and error_code(resp) == "bad_request",
          f"{status} {resp}")
    status, _, resp = a.request("PUT", "/v1/account/password", change)
    check("password: without a token -> 401", status == 401, f"{status}")
    status, _, resp = a.request("PUT", "/v1/account/password", change, token=t1)
    check("password: change -> 204", status == 204, f"{status} {resp}")
    status, _, _ = a.request("GET", "/v1/devices", token=t1)
    check("password: the current session stays valid", status == 200, f"{status}")
    status, _, _ = a.request("GET", "/v1/devices", token=t2)
    check("password: the account's other sessions are ended -> 401", status == 401, f"{status}")
    status, _, _ = a.request("POST", "/v1/sessions", {"email": "bob@example.com", "password": "Secret1",
                                                      "device": {"name": "x", "identity_key": k1["identity_key"],
                                                                 "registration_id": 1}})
    check("password: the old password no longer logs in", status == 401, f"{status}")
    bob3 = login_device(a, "bob@example.com", testkeys(), "bob desktop", password="Better2")
    check("password: the new password logs in", bool(bob3.get("token")), f"{bob3}")
    status, _, _ = a.request("GET", "/v1/devices", token=ta)
    check("password: another account's session is untouched", status == 200, f"{status}")

    # --- delete the account ---
    status, _, resp = a.request("DELETE", "/v1/account", {"password": "Secret1"}, token=t1)
    check("delete account: wrong password -> 403 wrong_password",
          status == 403 and error_code(resp) == "wrong_password", f"{status} {resp}")
    status, _, resp = a.request("DELETE", "/v1/account", raw=b"", token=t1)
    check("delete account: no body -> 400 malformed_json", status == 400 and error_code(resp) == "malformed_json",
          f"{status} {resp}")
    status, _, resp = a.request("DELETE", "/v1/account", {"password": "Better2"})
    check("delete account: without a token -> 401", status == 401, f"{status}")
    status, _, resp = a.request("DELETE", "/v1/account", {"password": "Better2"}, token=t1)
    check("delete account: -> 204", status == 204, f"{status} {resp}")
    for name, token in (("the deleting session", t1), ("another device's session", bob3["token"])):
        status, _, _ = a.request("GET", "/v1/devices", token=token)
        check(f"delete account: {name} is refused -> 401", status == 401, f"{status}")
    status, _, resp = a.request("GET", "/v1/directory?email=bob%40example.com", token=ta)
    check("delete account: the directory no longer finds it -> 404", status == 404, f"{status} {resp}")
    status, _, resp = a.request("GET", f"/v1/keys/{bob_id}", token=ta)
    check("delete account: its keys are gone -> 404 account_not_found",
          status == 404 and error_code(resp) == "account_not_found", f"{status} {resp}")
    status, _, _ = a.request("POST", "/v1/sessions", {"email": "bob@example.com", "password": "Better2",
                                                      "device": {"name": "x", "identity_key": k1["identity_key"],
                                                                 "registration_id": 1}})
    check("delete account: login -> 401", status == 401, f"{status}")
    status, _, resp = a.request("POST", "/v1/accounts", form(email="bob@example.com", pow=pow_for(a)))
    check("delete account: the e-mail can register again with a new id",
          status == 201 and resp["account_id"] not in (bob_id, alice_id), f"{status} {resp}")



def envelope(device_id, client_id, content=b"ciphertext", type_=1, timestamp=1700000000000, registration_id=None):
    e = {"device_id": device_id, "type": type_, "content": base64.b64encode(content).decode(),
         "client_id": client_id, "timestamp": timestamp}
    if registration_id is not None:
        e["registration_id"] = registration_id
    return e


def messages():
    m = Server(TEST_CONFIG + 'sends_per_account = { capacity = 1000, refill_per_second = 100 }\n')
    alice1 = signup_and_login(m, "ann@example.com", testkeys(), "ann phone")
    alice2 = login_device(m, "ann@example.com", testkeys(), "ann laptop")
    bob = signup_and_login(m, "ben@example.com", testkeys(), "ben phone")
    ta1, ta2, tb = alice1["token"], alice2["token"], bob["token"]
    a_id, b_id = alice1["account_id"], bob["account_id"]

    # --- send A -> B, fetch, ack ---
    status, _, resp = m.request("PUT", f"/v1/messages/{b_id}", {"messages": [envelope(1, "c-1", b"hello bob")]},
                                token=ta1)
    ok = status == 200 and len(resp["messages"]) == 1 and resp["messages"][0]["device_id"] == 1 \
        and isinstance(resp["messages"][0]["server_id"], int) and resp["messages"][0]["duplicate"] is False
    check("messages: A sends to B's one device -> 200 with a server id", ok, f"{status} {resp}")
    sid = resp["messages"][0]["server_id"] if ok else -1
    status, _, resp = m.request("GET", "/v1/messages", token=tb)
    got = resp.get("messages", []) if status == 200 else []
    check("messages: B fetches it (sender, type, content, timestamp, client id) and more=false",
          status == 200 and resp["more"] is False and len(got) == 1 and got[0]["server_id"] == sid
          and got[0]["sender_account"] == a_id and got[0]["sender_device"] == 1 and got[0]["type"] == 1
          and base64.b64decode(got[0]["content"]) == b"hello bob" and got[0]["timestamp"] == 1700000000000
          and got[0]["client_id"] == "c-1", f"{status} {resp}")
    status, _, resp = m.request("GET", "/v1/messages", token=ta2)
    check("messages: another account's device does not see it", status == 200 and resp["messages"] == [],
          f"{status} {resp}")
    status, _, _ = m.request("DELETE", f"/v1/messages/{sid}", token=ta2)
    status2, _, resp = m.request("GET", "/v1/messages", token=tb)
    check("messages: an ack by another device deletes nothing (204, still queued)",
          status == 204 and status2 == 200 and len(resp["messages"]) == 1, f"{status} {status2} {resp}")
    status, _, _ = m.request("DELETE", f"/v1/messages/{sid}", token=tb)
    check("messages: B acknowledges it -> 204", status == 204, f"{status}")
    status, _, resp = m.request("GET", "/v1/messages", token=tb)
    check("messages: after the ack it is gone", status == 200 and resp["messages"] == [] and resp["more"] is False,
          f"{status} {resp}")
    status, _, _ = m.request("DELETE", f"/v1/messages/{sid}", token=tb)
    check("messages: acknowledging again (unknown id) -> idempotent 204", status == 204, f"{status}")

    # --- retried send with the same client id ---
    status, _, resp = m.request("PUT", f"/v1/messages/{b_id}", {"messages": [envelope(1, "c-1", b"hello bob")]},
                                token=ta1)
    check("messages: retry of an acknowledged send -> same server id, duplicate, not queued again",
          status == 200 and resp["messages"][0]["server_id"] == sid and resp["messages"][0]["duplicate"] is True
          and m.request("GET", "/v1/messages", token=tb)[2]["messages"] == [], f"{status} {resp}")
    r1 = m.request("PUT", f"/v1/messages/{b_id}", {"messages": [envelope(1, "c-2", b"again")]}, token=ta1)
    r2 = m.request("PUT", f"/v1/messages/{b_id}", {"messages": [envelope(1, "c-2", b"again")]}, token=ta1)
    queued = m.request("GET", "/v1/messages", token=tb)[2]["messages"]
    check("messages: a retried send with the same client_id is stored once",
          r1[0] == 200 and r2[0] == 200 and r1[2]["messages"][0]["server_id"] == r2[2]["messages"][0]["server_id"]
          and r2[2]["messages"][0]["duplicate"] is True and len(queued) == 1, f"{r1} {r2} {queued}")
    status, _, resp = m.request("POST", "/v1/messages/ack", {"server_ids": [q["server_id"] for q in queued] + [999999]},
                                token=tb)
    check("messages: batch ack -> 200 deleted 1 (unknown ids skipped)", status == 200 and resp == {"deleted": 1},
          f"{status} {resp}")

    # --- device mismatch ---
    status, _, resp = m.request("PUT", f"/v1/messages/{b_id}", {"messages": [envelope(1, "x-1"), envelope(2, "x-1")]},
                                token=ta1)
    err = resp.get("error", {}) if isinstance(resp, dict) else {}
    check("messages: an envelope for a device B lacks -> 409 device_mismatch extra [2]",
          status == 409 and err.get("code") == "device_mismatch" and err.get("extra_devices") == [2]
          and err.get("missing_devices") == [], f"{status} {resp}")
    status, _, resp = m.request("PUT", f"/v1/messages/{a_id}", {"messages": []}, token=tb)
    err = resp.get("error", {}) if isinstance(resp, dict) else {}
    check("messages: no envelope for A's devices -> 409 missing [1, 2]",
          status == 409 and err.get("code") == "device_mismatch" and err.get("missing_devices") == [1, 2]
          and err.get("extra_devices") == [], f"{status} {resp}")
    status, _, resp = m.request("PUT", f"/v1/messages/{b_id}", {"messages": [envelope(1, "x-2", registration_id=5)]},
                                token=ta1)
    check("messages: a stale registration id -> 410 stale_devices [1]",
          status == 410 and error_code(resp) == "stale_devices" and resp["error"]["stale_devices"] == [1],
          f"{status} {resp}")
    status, _, resp = m.request("PUT", f"/v1/messages/{b_id}", {"messages": [envelope(1, "x-3", registration_id=77)]},
                                token=ta1)
    check("messages: the right registration id is accepted", status == 200, f"{status} {resp}")
    m.request("POST", "/v1/messages/ack", {"server_ids": [resp["messages"][0]["server_id"]]}, token=tb)
    status, _, resp = m.request("PUT", "/v1/messages/999999", {"messages": []}, token=ta1)
    check("messages: unknown recipient -> 404 account_not_found",
          status == 404 and error_code(resp) == "account_not_found", f"{status} {resp}")

    # --- sync to A's own second device ---
    status, _, resp = m.request("PUT", f"/v1/messages/{a_id}", {"messages": [envelope(1, "s-1")]}, token=ta1)
    check("messages: sync including the sending device itself -> 409 extra [1]",
          status == 409 and resp["error"]["extra_devices"] == [1] and resp["error"]["missing_devices"] == [2],
          f"{status} {resp}")
    status, _, resp = m.request("PUT", f"/v1/messages/{a_id}", {"messages": [envelope(2, "s-1", b"sent to bob")]},
                                token=ta1)
    check("messages: sync to A's other device -> 200", status == 200 and resp["messages"][0]["device_id"] == 2,
          f"{status} {resp}")
    status, _, resp = m.request("GET", "/v1/messages", token=ta2)
    got = resp.get("messages", []) if status == 200 else []
    check("messages: A's second device receives the sync from device 1",
          len(got) == 1 and got[0]["sender_account"] == a_id and got[0]["sender_device"] == 1
          and base64.b64decode(got[0]["content"]) == b"sent to bob", f"{status} {resp}")
    m.request("POST", "/v1/messages/ack", {"server_ids": [g["server_id"] for g in got]}, token=ta2)
    status, _, resp = m.request("GET", "/v1/messages", token=ta1)
    check("messages: the sending device gets no copy of its own sync", status == 200 and resp["messages"] == [],
          f"{status} {resp}")

    # --- authentication and validation ---
    for method, path, body in (("PUT", f"/v1/messages/{b_id}", {"messages": [envelope(1, "u-1")]}),
                               ("GET", "/v1/messages", None), ("DELETE", "/v1/messages/1", None),
                               ("POST", "/v1/messages/ack", {"server_ids": [1]})):
        status, _, resp = m.request(method, path, body)
        check(f"messages: {method} {path.split('?')[0]} without a token -> 401",
              status == 401 and error_code(resp) == "unauthorized", f"{status} {resp}")
    status, _, resp = m.request("PUT", f"/v1/messages/{b_id}", {"messages": [envelope(1, "big", b"x" * (256 * 1024 + 1))]},
                                token=ta1)
    check("messages: content over 256 KiB -> 413 content_too_large",
          status == 413 and error_code(resp) == "content_too_large", f"{status} {resp}")
    status, _, resp = m.request("PUT", f"/v1/messages/{b_id}", {"messages": [envelope(1, "max", b"x" * (256 * 1024))]},
                                token=ta1)
    check("messages: content of exactly 256 KiB -> 200", status == 200, f"{status} {resp}")
    if status == 200:
        m.request("DELETE", f"/v1/messages/{resp['messages'][0]['server_id']}", token=tb)
    bad = {"device_id": 0, "type": "x", "content": "!!", "client_id": "", "timestamp": 1.5}
    status, _, resp = m.request("PUT", f"/v1/messages/{b_id}", {"messages": [bad]}, token=ta1)
    check("messages: bad envelope fields -> 422 listing each",
          status == 422 and [f for f, _ in fields_of(resp) or []] ==
          ["messages[0].device_id", "messages[0].type", "messages[0].timestamp", "messages[0].client_id",
           "messages[0].content"], f"{status} {resp}")
    status, _, resp = m.request("PUT", f"/v1/messages/{b_id}", {"messages": [envelope(1, "d"), envelope(1, "e")]},
                                token=ta1)
    check("messages: the same device twice -> 422", status == 422, f"{status} {resp}")
    status, _, resp = m.request("PUT", f"/v1/messages/{b_id}", raw=b"{", token=ta1)
    check("messages: malformed JSON -> 400", status == 400 and error_code(resp) == "malformed_json", f"{status}")
    status, _, resp = m.request("GET", "/v1/messages?limit=0", token=tb)
    check("messages: limit=0 -> 400", status == 400 and error_code(resp) == "bad_request", f"{status} {resp}")
    status, _, resp = m.request("GET", "/v1/messages/5", token=tb)
    check("messages: GET on a message id -> 405 with Allow", status == 405, f"{status} {resp}")

    # --- order of 50 messages from one device, paged ---
    conn = m.connection()
    sent_ids = []
    for i in range(50):
        body = json.dumps({"messages": [envelope(1, f"o-{i}", f"message {i}".encode())]})
        conn.request("PUT", f"/v1/messages/{b_id}", body=body,
                     headers={"Authorization": "Bearer " + ta1, "Content-Type": "application/json"})
        r = conn.getresponse()
        data = json.loads(r.read())
        sent_ids.append(data["messages"][0]["server_id"] if r.status == 200 else None)
    conn.close()
    received, after, pages, more = [], 0, 0, True
    while more and pages < 10:
        status, _, resp = m.request("GET", f"/v1/messages?after={after}&limit=20", token=tb)
        if status != 200:
            break
        received += resp["messages"]
        more = resp["more"]
        after = resp["messages"][-1]["server_id"] if resp["messages"] else after
        pages += 1
    check("messages: 50 messages from one device arrive in order, in 3 pages of at most 20",
          [base64.b64decode(r["content"]).decode() for r in received] == [f"message {i}" for i in range(50)]
          and [r["server_id"] for r in received] == sent_ids and pages == 3, f"{pages} {len(received)}")
    status, _, resp = m.request("POST", "/v1/messages/ack", {"server_ids": [r["server_id"] for r in received]},
                                token=tb)
    check("messages: batch ack of 50 -> deleted 50", status == 200 and resp == {"deleted": 50}, f"{status} {resp}")
    check("messages: the queue is drained", m.request("GET", "/v1/messages", token=tb)[2] == {"messages": [],
                                                                                          "more": False})

    # --- durability: acknowledged sends survive a restart (SIGTERM) ---
    status, _, resp = m.request("PUT", f"/v1/messages/{b_id}", {"messages": [envelope(1, "r-1", b"persist")]},
                                token=ta1)
    check("sigterm: message server exits with 0", m.stop() == 0)
    m2 = Server(None, directory=m.dir)
    status, _, resp = m2.request("GET", "/v1/messages", token=tb)
    check("messages: a queued message survives a restart",
          status == 200 and [base64.b64decode(r["content"]) for r in resp["messages"]] == [b"persist"],
          f"{status} {resp}")
    check("sigterm: restarted message server exits with 0", m2.stop() == 0)

    # --- send rate limit ---
    r = Server(TEST_CONFIG + 'sends_per_account = { capacity = 3, refill_per_second = 0.001 }\n'
               '[messages]\nretention_ms = 1000\n')
    sender = signup_and_login(r, "rate@example.com", testkeys(), "phone")
    target = signup_and_login(r, "target@example.com", testkeys(), "phone")
    codes = [r.request("PUT", f"/v1/messages/{target['account_id']}", {"messages": [envelope(1, f"rl-{i}")]},
                       token=sender["token"])[:2] for i in range(4)]
    check("rate limit: sends per account -> 200 x3, then 429 with Retry-After",
          [c for c, _ in codes] == [200, 200, 200, 429] and int(codes[3][1].get("Retry-After", "0")) >= 1,
          f"{[c for c, _ in codes]}")
    queued = r.request("GET", "/v1/messages", token=target["token"])[2]["messages"]
    time.sleep(1.2)
    status, _, resp = r.request("GET", "/v1/messages", token=target["token"])
    check("messages: with retention_ms = 1000 the 3 queued envelopes expire unread",
          len(queued) == 3 and status == 200 and resp["messages"] == [], f"{len(queued)} {status} {resp}")
    check("sigterm: rate-limit server exits with 0", r.stop() == 0)


def restart_login(data, login):
    config = os.path.join(os.path.dirname(data), "server.toml")
    proc = subprocess.Popen([PATHS["server"], "--data", data, "--listen", "127.0.0.1:0", "--admin-listen",
                             "127.0.0.1:0", "--config", config],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    PROCS.append(proc)
    ready, _, _ = select.select([proc.stdout], [], [], 30)
    line = proc.stdout.readline().decode() if ready else ""
    port = int(line.strip().rsplit(":", 1)[1])
    ctx = ssl.create_default_context(cafile=os.path.join(data, "cert.pem"))
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=30)
    conn.request("POST", "/v1/sessions", body=json.dumps(login), headers={"Content-Type": "application/json"})
    status = conn.getresponse().status
    conn.close()
    proc.send_signal(signal.SIGTERM)
    return status == 201 and proc.wait(timeout=30) == 0


if __name__ == "__main__":
    run_main(main)
