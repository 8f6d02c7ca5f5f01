#!/usr/bin/env python3
"""Integration test of delivery over the WebSocket (GET /v1/websocket): the real postern-server on
127.0.0.1:0, driven over TLS. Online push, offline queue and the queue-empty signal, acknowledgements,
redelivery of what was not acknowledged, sends over the socket (200, retried send stored once,
409, 413, 429), order per sending device, a slow reader, malformed frames, replacement of a
device's older connection, logout closing the socket, SIGTERM with sockets open, and the server
killed with SIGKILL after acknowledging a send and before delivering it.

Usage: delivery_test.py PATH/TO/postern-server PATH/TO/postern-testkeys
"""
import time

from harness import (BASE_CONFIG, Server, WebSocket, WebSocketRefused, ack_frame, b64, batch_frame, check,
                     error_code, run_main, send_frame, signup_and_login)

# A tiny outbox, so that a few hundred envelopes make a slow reader; a small send budget.
CONFIG = BASE_CONFIG.replace("sends_per_account = { capacity = 100000, refill_per_second = 10000 }",
                             "sends_per_account = { capacity = 400, refill_per_second = 0.001 }") + """
[messages]
ws_outbox_frames = 8
ws_fetch_page = 16
ws_max_frame_bytes = 1048576
"""


def http_send(server, sender, recipient_id, client_id, content, device_id=1):
    body = {"messages": [{"device_id": device_id, "type": 1, "timestamp": 1700000000000, "client_id": client_id,
                          "content": b64(content.hex())}]}
    return server.request("PUT", f"/v1/messages/{recipient_id}", body, token=sender["token"])


def frames_until(ws, stop_kind, timeout=10, limit=10000):
    """Frames up to and including the first of kind stop_kind."""
    out = []
    while len(out) < limit:
        f = ws.recv_frame(timeout)
        out.append(f)
        if f["kind"] == stop_kind or f["kind"] == "close":
            break
    return out


def envelopes_of(frames):
    return [f for f in frames if f["kind"] == "envelope"]


def wait_queue_empty(server, who, timeout=5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, _, resp = server.request("GET", "/v1/messages", token=who["token"])
        if status == 200 and resp["messages"] == []:
            return True
        time.sleep(0.05)
    return False


def main():
    s = Server(CONFIG)
    alice = signup_and_login(s, "alice@example.com")
    bob = signup_and_login(s, "bob@example.com")
    carol = signup_and_login(s, "carol@example.com")

    # --- authentication of the upgrade ---
    for name, token in (("no token", None), ("unknown token", "A" * 43)):
        try:
            WebSocket(s, token)
            check(f"ws: {name} is refused", False, "upgraded")
        except WebSocketRefused as e:
            check(f"ws: {name} gets 401 unauthorized, no upgrade", e.status == 401 and error_code(e.body) == "unauthorized",
                  f"{e.status} {e.body}")

    # --- an empty queue: QueueEmpty at once ---
    wb = WebSocket(s, bob["token"])
    f = wb.recv_frame()
    check("ws: an empty queue is signalled at once (queue_empty)", f["kind"] == "queue_empty", f"{f}")

    # --- online delivery: pushed as soon as it is durable ---
    started = time.monotonic()
    status, _, resp = http_send(s, alice, bob["account_id"], "m1", b"hello bob")
    f = wb.recv_frame(5)
    elapsed = time.monotonic() - started
    check("ws: HTTP send answered 200", status == 200, f"{status} {resp}")
    check("ws: the envelope is pushed to the connected device",
          f["kind"] == "envelope" and f["content"] == b"hello bob" and f["sender_account"] == alice["account_id"]
          and f["sender_device"] == 1 and f["client_id"] == b"m1" and f["type"] == 1
          and f["timestamp"] == 1700000000000 and f["server_id"] == resp["messages"][0]["server_id"], f"{f}")
    check("ws: pushed within 1 s of the send", elapsed < 1.0, f"{elapsed:.3f}s")

    # --- acknowledgement over the socket deletes it ---
    wb.send(ack_frame([f["server_id"]]))
    check("ws: an acknowledged envelope leaves the queue", wait_queue_empty(s, bob))

    # --- offline delivery after reconnecting, in order, then queue_empty ---
    wb.close()
    ids = []
    for i in range(3):
        status, _, resp = http_send(s, alice, bob["account_id"], f"off{i}", f"offline {i}".encode())
        ids.append(resp["messages"][0]["server_id"] if status == 200 else None)
    wb = WebSocket(s, bob["token"])
    frames = frames_until(wb, "queue_empty")
    got = envelopes_of(frames)
    check("ws: offline envelopes are delivered on connect, in order, then queue_empty",
          [e["server_id"] for e in got] == ids and frames[-1]["kind"] == "queue_empty"
          and [e["content"] for e in got] == [b"offline 0", b"offline 1", b"offline 2"], f"{frames}")

    # --- what was not acknowledged comes again on the next connection ---
    wb.close()
    wb = WebSocket(s, bob["token"])
    again = envelopes_of(frames_until(wb, "queue_empty"))
    check("ws: unacknowledged envelopes are delivered again after reconnecting",
          [e["server_id"] for e in again] == ids, f"{again}")
    wb.send(ack_frame(ids))
    check("ws: a batch acknowledgement deletes them all", wait_queue_empty(s, bob))

    # --- sends over the socket ---
    wa = WebSocket(s, alice["token"])
    check("ws: alice's empty queue", wa.recv_frame()["kind"] == "queue_empty")
    wa.send(send_frame(7, bob["account_id"], [{"device_id": 1, "content": b"over ws", "client_id": b"w1"}]))
    r = wa.recv_frame()
    pushed = wb.recv_frame()
    check("ws: a send over the socket is answered 200 with its request id and server id",
          r["kind"] == "send_response" and r["request_id"] == 7 and r["status"] == 200
          and len(r["results"]) == 1 and not r["results"][0]["duplicate"], f"{r}")
    check("ws: and pushed to the recipient", pushed["kind"] == "envelope" and pushed["content"] == b"over ws"
          and pushed["server_id"] == r["results"][0]["server_id"], f"{pushed}")
    wa.send(send_frame(8, bob["account_id"], [{"device_id": 1, "content": b"over ws", "client_id": b"w1"}]))
    r2 = wa.recv_frame()
    check("ws: a retried send (same client id) is stored once: duplicate, same server id",
          r2["status"] == 200 and r2["results"][0]["duplicate"]
          and r2["results"][0]["server_id"] == r["results"][0]["server_id"], f"{r2}")
    wb.send(ack_frame([pushed["server_id"]]))
    wa.send(send_frame(9, bob["account_id"], [{"device_id": 1, "content": b"marker", "client_id": b"w2"}]))
    wa.recv_frame()
    nxt = wb.recv_frame()
    check("ws: the duplicate is not pushed again", nxt["kind"] == "envelope" and nxt["content"] == b"marker", f"{nxt}")
    wb.send(ack_frame([nxt["server_id"]]))

    wa.send(send_frame(10, bob["account_id"], [{"device_id": 2, "content": b"x", "client_id": b"w3"}]))
    r = wa.recv_frame()
    check("ws: wrong devices get 409 device_mismatch with missing and extra",
          r["status"] == 409 and r["code"] == "device_mismatch" and r["missing"] == [1] and r["extra"] == [2], f"{r}")
    wa.send(send_frame(11, 999999, [{"device_id": 1, "content": b"x", "client_id": b"w4"}]))
    r = wa.recv_frame()
    check("ws: an unknown recipient gets 404 account_not_found", r["status"] == 404 and r["code"] == "account_not_found",
          f"{r}")
    wa.send(send_frame(12, bob["account_id"], [{"device_id": 1, "content": b"x" * (256 * 1024 + 1), "client_id": b"w5"}]))
    r = wa.recv_frame()
    check("ws: content over 256 KiB gets 413", r["status"] == 413 and r["code"] == "content_too_large", f"{r}")
    wa.send(send_frame(13, bob["account_id"], [{"device_id": 1, "content": b"x", "client_id": b""}]))
    r = wa.recv_frame()
    check("ws: an empty client id gets 422 invalid_fields", r["status"] == 422 and r["code"] == "invalid_fields"
          and "client_id" in r["message"], f"{r}")

    # --- malformed frames get an error frame and the connection stays usable ---
    wa.send(b"\xff\xff\xff\xff")
    r = wa.recv_frame()
    check("ws: a malformed frame gets an error frame (malformed_frame)", r["kind"] == "error"
          and r["code"] == "malformed_frame", f"{r}")
    wa.send(b"hello", opcode=1)
    r = wa.recv_frame()
    check("ws: a text frame gets an error frame (text_frame)", r["kind"] == "error" and r["code"] == "text_frame", f"{r}")
    wa.send(b"")
    r = wa.recv_frame()
    check("ws: an empty frame gets an error frame (unknown_frame)", r["kind"] == "error" and r["code"] == "unknown_frame",
          f"{r}")
    wa.send(send_frame(14, bob["account_id"], [{"device_id": 1, "content": b"still ok", "client_id": b"w6"}]))
    r = wa.recv_frame()
    check("ws: the connection still works after bad frames", r["kind"] == "send_response" and r["status"] == 200, f"{r}")
    pushed = wb.recv_frame()
    wb.send(ack_frame([pushed["server_id"]]))

    # --- several client frames in one message (a batch), handled in order ---
    wa.send(batch_frame([send_frame(20 + i, bob["account_id"], [{"device_id": 1, "content": f"b{i}".encode(),
                                                                  "client_id": f"batch{i}".encode()}])
                         for i in range(3)]))
    answers = sorted((wa.recv_frame() for _ in range(3)), key=lambda r: r["request_id"])
    got = [wb.recv_frame() for _ in range(3)]
    check("ws: a batch of 3 sends gets 3 answers", [a["request_id"] for a in answers] == [20, 21, 22]
          and all(a["status"] == 200 for a in answers), f"{answers}")
    check("ws: and its envelopes arrive in the batch's order", [g["content"] for g in got] == [b"b0", b"b1", b"b2"],
          f"{got}")
    wb.send(batch_frame([ack_frame([g["server_id"] for g in got]), batch_frame([])]))
    r = wb.recv_frame()
    check("ws: a nested batch is refused (nested_batch), the rest of the batch is handled",
          r["kind"] == "error" and r["code"] == "nested_batch" and wait_queue_empty(s, bob), f"{r}")

    # --- order per sending device, many sends in flight on one socket ---
    n = 200
    for i in range(n):
        wa.send(send_frame(100 + i, bob["account_id"], [{"device_id": 1, "content": f"seq {i}".encode(),
                                                         "client_id": f"seq{i}".encode()}]))
    answers = [wa.recv_frame() for _ in range(n)]
    got = []
    while len(got) < n:
        f = wb.recv_frame(10)
        if f["kind"] != "envelope":
            break
        got.append(f)
    check("ws: 200 pipelined sends are all answered 200", all(a["status"] == 200 for a in answers),
          f"{[a for a in answers if a['status'] != 200][:2]}")
    check("ws: they arrive in the order sent, each once (slow reader: outbox of 8)",
          [g["content"] for g in got] == [f"seq {i}".encode() for i in range(n)], f"{len(got)}")
    wb.send(ack_frame([g["server_id"] for g in got]))
    check("ws: all acknowledged", wait_queue_empty(s, bob))

    # --- a slow reader: many envelopes pushed while bob does not read ---
    for i in range(60):
        wa.send(send_frame(1000 + i, bob["account_id"], [{"device_id": 1, "content": f"burst {i}".encode(),
                                                          "client_id": f"burst{i}".encode()}]))
    for _ in range(60):
        wa.recv_frame()
    time.sleep(0.5)
    got = []
    while len(got) < 60:
        f = wb.recv_frame(10)
        if f["kind"] != "envelope":
            break
        got.append(f)
    check("ws: a reader that fell behind gets everything once, in order",
          [g["content"] for g in got] == [f"burst {i}".encode() for i in range(60)],
          f"{len(got)} {[g['content'] for g in got][:12]}")
    check("ws: what piled up for it came in batches", wb.batches > 0, f"{wb.batches}")
    wb.send(ack_frame([g["server_id"] for g in got]))
    wait_queue_empty(s, bob)

    # --- a newer connection of the same device replaces the older ---
    wb2 = WebSocket(s, bob["token"])
    check("ws: the new connection gets queue_empty", wb2.recv_frame()["kind"] == "queue_empty")
    f = wb.recv_frame(5)
    check("ws: the older connection of the device is closed with 4000", f == {"kind": "close", "code": 4000}, f"{f}")
    http_send(s, alice, bob["account_id"], "after-replace", b"to the new one")
    f = wb2.recv_frame(5)
    check("ws: deliveries go to the newer connection", f["kind"] == "envelope" and f["content"] == b"to the new one",
          f"{f}")
    wb2.send(ack_frame([f["server_id"]]))

    # --- logout closes the device's socket ---
    wc = WebSocket(s, carol["token"])
    wc.recv_frame()
    status, _, _ = s.request("DELETE", "/v1/sessions/current", token=carol["token"])
    f = wc.recv_frame(5)
    check("ws: logging out closes the device's WebSocket with 4001", status == 204 and f == {"kind": "close", "code": 4001},
          f"{status} {f}")

    # --- 429 from the send rate limit over the socket (a burst of 400 per account) ---
    eve = signup_and_login(s, "eve@example.com")
    we = WebSocket(s, eve["token"])
    we.recv_frame()
    for i in range(401):
        we.send(send_frame(5000 + i, carol["account_id"], [{"device_id": 1, "content": b"r",
                                                             "client_id": f"rl{i}".encode()}]))
    statuses = [we.recv_frame()["status"] for _ in range(401)]
    check("ws: over the send rate limit (burst 400) one of 401 sends gets 429",
          statuses.count(200) == 400 and statuses.count(429) == 1, f"{statuses.count(200)} {statuses.count(429)}")
    we.send(send_frame(9999, carol["account_id"], [{"device_id": 1, "content": b"r", "client_id": b"rl-last"}]))
    r = we.recv_frame()
    check("ws: a 429 carries rate_limited and retry_after_ms", r["status"] == 429 and r["code"] == "rate_limited"
          and r["retry_after_ms"] > 0, f"{r}")
    we.close()
    wa.close()
    wb2.close()

    # --- SIGTERM with WebSockets open: closed with 1001, exit 0 ---
    wb = WebSocket(s, bob["token"])
    frames_until(wb, "queue_empty", timeout=30)
    code = s.stop()
    f = None
    try:
        while True:
            f = wb.recv_frame(5)
            if f["kind"] == "close":
                break
    except (ConnectionError, TimeoutError, OSError):
        pass
    check("ws: SIGTERM closes open WebSockets with 1001 (going away)", f == {"kind": "close", "code": 1001}, f"{f}")
    check("ws: and the server exits 0", code == 0, f"exit {code}")

    # --- killed with SIGKILL after acknowledging a send, before delivering it ---
    k = Server(BASE_CONFIG)
    sender = signup_and_login(k, "sender@example.com")
    receiver = signup_and_login(k, "receiver@example.com")
    status, _, resp = http_send(k, sender, receiver["account_id"], "durable-1", b"must survive")
    wa = WebSocket(k, sender["token"])
    wa.recv_frame()
    wa.send(send_frame(1, receiver["account_id"], [{"device_id": 1, "content": b"ws survives", "client_id": b"d2"}]))
    r = wa.recv_frame()
    k.kill()
    check("durability: both sends were acknowledged before the kill", status == 200 and r["status"] == 200,
          f"{status} {r}")
    k2 = Server(directory=k.dir)
    wr = WebSocket(k2, receiver["token"])
    frames = frames_until(wr, "queue_empty")
    got = envelopes_of(frames)
    check("durability: after SIGKILL and restart both envelopes are delivered, once each, in order",
          [g["content"] for g in got] == [b"must survive", b"ws survives"], f"{frames}")
    wr.send(ack_frame([g["server_id"] for g in got]))
    wr.close()
    check("durability: acknowledged, the queue is empty", wait_queue_empty(k2, receiver))
    wr = WebSocket(k2, receiver["token"])
    f = wr.recv_frame()
    check("durability: a reconnect after the acknowledgement delivers nothing again", f["kind"] == "queue_empty", f"{f}")
    wr.close()
    check("durability: restarted server exits 0 on SIGTERM", k2.stop() == 0)


if __name__ == "__main__":
    run_main(main)
