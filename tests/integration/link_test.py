#!/usr/bin/env python3
"""Integration test of linked devices (docs/protocol.md, "Linked devices") against the real
postern-server process over HTTPS: an existing device creates a one-time link, a new device
(without a session) leaves its request with the hash of a token it made itself, the existing
device reads the request and approves it, the new device's token then works, it picks the
provisioning blob up once, and the link is gone. Also the errors on the way and the limits.

Usage: link_test.py PATH/TO/postern-server PATH/TO/postern-testkeys
"""
import base64
import hashlib
import os
import secrets

from harness import BASE_CONFIG, Server, check, error_code, run_main, signup_and_login, testkeys

LINK_CONFIG = BASE_CONFIG + """
[devices]
link_ttl_ms = 600000
max_open_links = 5
links_per_account = { capacity = 1000, refill_per_second = 100 }
link_requests_per_address = { capacity = 1000, refill_per_second = 100 }
"""


def new_token():
    """A session token as the new device makes it: 256 random bits, unpadded base64url."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()


def token_hash(token):
    return hashlib.sha256(token.encode()).hexdigest()


def b64(data):
    return base64.b64encode(data).decode()


def main():
    server = Server(LINK_CONFIG)
    alice = signup_and_login(server, "alice@example.com")
    bob = signup_and_login(server, "bob@example.com")

    # 1. The existing device creates a link.
    status, _, created = server.request("POST", "/v1/devices/links", token=alice["token"])
    check("create link 201", status == 201, (status, created))
    link_id = created["link_id"]
    check("link id is 22 characters of base64url",
          len(link_id) == 22 and all(c.isalnum() or c in "-_" for c in link_id), link_id)
    check("link has an expiry", isinstance(created.get("expires_ms"), int) and created["expires_ms"] > 0, created)
    link = "/v1/devices/links/" + link_id
    status, _, state = server.request("GET", link, token=alice["token"])
    check("new link is open", status == 200 and state["state"] == "open" and "request" not in state, (status, state))
    status, _, body = server.request("GET", link, token=bob["token"])
    check("another account gets 404", status == 404 and error_code(body) == "link_not_found", (status, body))
    status, _, body = server.request("POST", link + "/approve", {"device": {}, "provision": "AA=="}, token=alice["token"])
    check("approve with a bad device object is 422", status == 422 and error_code(body) == "invalid_fields", (status, body))

    # 2. The new device posts its request, without a session.
    token = new_token()
    request_blob = secrets.token_bytes(200)
    status, _, body = server.request("POST", link + "/approve",
                                     {"device": {"name": "x", "identity_key": testkeys(0)["identity_key"],
                                                 "registration_id": 1}, "provision": "AA=="},
                                     token=alice["token"])
    check("approve before request is 409", status == 409 and error_code(body) == "link_not_requested", (status, body))
    status, _, body = server.request("PUT", link + "/request",
                                     {"request": b64(os.urandom(4097)), "token_hash": token_hash(token)})
    check("oversize request is 413", status == 413 and error_code(body) == "request_too_large", (status, body))
    status, _, body = server.request("PUT", link + "/request", {"request": b64(request_blob), "token_hash": token_hash(token)})
    check("request 202", status == 202 and body == {}, (status, body))
    status, _, body = server.request("PUT", link + "/request",
                                     {"request": b64(b"other"), "token_hash": token_hash(new_token())})
    check("second request is 409 link_used", status == 409 and error_code(body) == "link_used", (status, body))
    status, _, body = server.request("GET", link + "/provision", token=token)
    check("pickup before approval is 409", status == 409 and error_code(body) == "link_not_approved", (status, body))
    status, _, body = server.request("GET", "/v1/devices", token=token)
    check("the new token is not a session yet", status == 401, (status, body))

    # 3. The existing device reads the request and approves it.
    status, _, state = server.request("GET", link, token=alice["token"])
    check("link is requested with the request blob",
          status == 200 and state["state"] == "requested" and base64.b64decode(state["request"]) == request_blob,
          (status, state))
    keys = testkeys(0)
    provision_blob = secrets.token_bytes(1000)
    approve = {"device": {"name": "laptop", "identity_key": keys["identity_key"], "registration_id": 9090},
               "provision": b64(provision_blob)}
    status, _, body = server.request("POST", link + "/approve", dict(approve, provision=b64(os.urandom(8193))),
                                     token=alice["token"])
    check("oversize provision is 413", status == 413 and error_code(body) == "provision_too_large", (status, body))
    status, _, body = server.request("POST", link + "/approve", approve, token=bob["token"])
    check("another account cannot approve", status == 404 and error_code(body) == "link_not_found", (status, body))
    status, _, approved = server.request("POST", link + "/approve", approve, token=alice["token"])
    check("approve 201 with the new device id", status == 201 and approved.get("device_id") == 2, (status, approved))
    status, _, body = server.request("POST", link + "/approve", approve, token=alice["token"])
    check("approve twice is 409", status == 409 and error_code(body) == "link_not_requested", (status, body))
    status, _, state = server.request("GET", link, token=alice["token"])
    check("link is approved", status == 200 and state["state"] == "approved" and state.get("device_id") == 2,
          (status, state))

    # 4. The new device's token is a session of the account now.
    status, _, devices = server.request("GET", "/v1/devices", token=token)
    check("new device lists the account's devices", status == 200 and [d["id"] for d in devices["devices"]] == [1, 2],
          (status, devices))
    check("new device is current and named",
          devices["devices"][1]["current"] is True and devices["devices"][1]["name"] == "laptop"
          and devices["devices"][1]["registration_id"] == 9090, devices)
    status, _, body = server.request("GET", "/v1/directory?email=alice%40example.com", token=bob["token"])
    check("directory shows both devices", status == 200 and body["device_ids"] == [1, 2], (status, body))

    # 5. The pickup: once, only with the new device's token.
    status, _, body = server.request("GET", link + "/provision", token=alice["token"])
    check("pickup with another token is 404", status == 404 and error_code(body) == "link_not_found", (status, body))
    status, _, picked = server.request("GET", link + "/provision", token=token)
    check("pickup 200", status == 200 and base64.b64decode(picked["provision"]) == provision_blob
          and picked["account_id"] == alice["account_id"] and picked["device_id"] == 2, (status, picked))
    status, _, body = server.request("GET", link + "/provision", token=token)
    check("second pickup is 404", status == 404 and error_code(body) == "link_not_found", (status, body))
    status, _, body = server.request("GET", link, token=alice["token"])
    check("the link is gone after the pickup", status == 404, (status, body))

    # 6. A linked device is an ordinary device: it logs out and is removed like any other.
    status, _, _ = server.request("DELETE", "/v1/sessions/current", token=token)
    check("linked device logs out", status == 204, status)
    status, _, _ = server.request("DELETE", "/v1/devices/2", token=alice["token"])
    check("linked device is removed", status == 204, status)

    # 7. Cancel, the limit of open links, unknown ids, no token.
    ids = []
    for _ in range(5):
        status, _, created = server.request("POST", "/v1/devices/links", token=alice["token"])
        if status == 201:
            ids.append(created["link_id"])
    check("five links may be open", len(ids) == 5, ids)
    status, _, body = server.request("POST", "/v1/devices/links", token=alice["token"])
    check("a sixth is 409 too_many_links", status == 409 and error_code(body) == "too_many_links", (status, body))
    status, _, body = server.request("DELETE", "/v1/devices/links/" + ids[0], token=alice["token"])
    check("cancel 204", status == 204, (status, body))
    status, _, body = server.request("PUT", "/v1/devices/links/" + ids[0] + "/request",
                                     {"request": "AA==", "token_hash": token_hash(new_token())})
    check("a cancelled link takes no request", status == 404 and error_code(body) == "link_not_found", (status, body))
    status, _, body = server.request("POST", "/v1/devices/links", token=alice["token"])
    check("after a cancel a new link fits", status == 201, (status, body))
    status, _, body = server.request("PUT", "/v1/devices/links/" + "A" * 22 + "/request",
                                     {"request": "AA==", "token_hash": token_hash(new_token())})
    check("unknown link is 404", status == 404 and error_code(body) == "link_not_found", (status, body))
    status, headers, body = server.request("POST", "/v1/devices/links")
    check("create without a token is 401", status == 401 and error_code(body) == "unauthorized", (status, body))
    status, headers, body = server.request("PATCH", "/v1/devices/links/" + ids[1], token=alice["token"])
    check("wrong method is 405 with Allow", status == 405 and headers.get("Allow") == "GET, DELETE", (status, headers))

    # 8. Deleting the account deletes its links.
    status, _, _ = server.request("DELETE", "/v1/account", {"password": "Secret1"}, token=alice["token"])
    check("account deleted", status == 204, status)
    status, _, body = server.request("PUT", "/v1/devices/links/" + ids[1] + "/request",
                                     {"request": "AA==", "token_hash": token_hash(new_token())})
    check("its links are gone", status == 404 and error_code(body) == "link_not_found", (status, body))

    check("server stops cleanly", server.stop() == 0)


if __name__ == "__main__":
    run_main(main)
