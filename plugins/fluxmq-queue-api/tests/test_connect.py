"""The Connect protocol on the HTTP listener, called with plain ``http.client`` as
``curl`` would: unary JSON and binary, streaming with envelopes, error bodies."""

from __future__ import annotations

import base64
import gzip
import json
import threading
import time

from fluxmq_queue_api._proto import queue_pb2 as pb
from fluxmq_queue_api.testing import (
    TOKEN,
    connect_call,
    connect_stream_open,
    envelope,
    read_envelope,
)

from fluxmq_core.testing.broker import BrokerThread


def ok_json(broker: BrokerThread, method: str, body: dict, **kw) -> dict:
    status, ctype, data = connect_call(broker, method, body, **kw)
    assert status == 200, data
    assert ctype == "application/json"
    return json.loads(data)


def test_unary_json_round_trip(broker: BrokerThread) -> None:
    created = ok_json(broker, "CreateQueue", {"name": "cj", "topics": ["cj/#"]})
    assert created["name"] == "cj" and created["topics"] == ["cj/#"]
    value = base64.b64encode(b"hello").decode()
    r = ok_json(
        broker,
        "Append",
        {"queueName": "cj", "key": base64.b64encode(b"k").decode(), "value": value},
    )
    assert r.get("offset", "0") == "0"  # uint64 is a JSON string; 0 is omitted
    # snake_case field names are accepted too (protobuf JSON parsing)
    ok_json(broker, "Append", {"queue_name": "cj", "value": base64.b64encode(b"two").decode()})
    m = ok_json(broker, "Read", {"queueName": "cj", "offset": "1"})
    assert base64.b64decode(m["value"]) == b"two" and m["offset"] == "1"
    info = ok_json(broker, "GetQueueInfo", {"queueName": "cj"})
    assert info["tailOffset"] == "2" and info["messageCount"] == "2"
    assert ok_json(broker, "DeleteQueue", {"name": "cj"}) == {}


def test_unary_binary_and_gzip(broker: BrokerThread) -> None:
    ok_json(broker, "CreateQueue", {"name": "cb"})
    req = pb.AppendRequest(queue_name="cb", value=b"\x00\x01binary")
    status, ctype, data = connect_call(
        broker, "Append", req.SerializeToString(), content_type="application/proto"
    )
    assert (status, ctype) == (200, "application/proto")
    assert pb.AppendResponse.FromString(data).offset == 0
    body = gzip.compress(json.dumps({"queueName": "cb", "offset": "0"}).encode())
    status, _ctype, data = connect_call(broker, "Read", body, headers={"Content-Encoding": "gzip"})
    assert status == 200 and base64.b64decode(json.loads(data)["value"]) == b"\x00\x01binary"


def test_error_codes_and_statuses(broker: BrokerThread) -> None:
    cases = [
        ("GetQueue", {"name": "missing"}, TOKEN, 404, "not_found"),
        ("CreateQueue", {"name": "small"}, TOKEN, 409, "already_exists"),
        (
            "Append",
            {"queueName": "small", "key": base64.b64encode(b"#").decode()},
            TOKEN,
            400,
            "invalid_argument",
        ),
        # Claim is for classic queues: on a stream it is a failed precondition
        ("Claim", {"queueName": "events", "groupId": "cg-claim", "consumerId": "c"}, TOKEN, 400,
         "failed_precondition"),
    ]  # fmt: skip
    ok_json(broker, "CreateConsumerGroup", {"queueName": "events", "groupId": "cg-claim"})
    for method, body, token, status, code in cases:
        got, _ctype, data = connect_call(broker, method, body, token=token)
        assert got == status, (method, data)
        err = json.loads(data)
        assert err["code"] == code and err["message"], (method, err)
    status, _c, data = connect_call(
        broker, "GetQueue", {"name": "small"}, token=None, headers={"Authorization": "Basic !!"}
    )
    assert status == 401 and json.loads(data)["code"] == "unauthenticated"
    status, _c, _d = connect_call(broker, "NoSuchMethod", {})
    assert status == 404  # no such procedure (the router's answer, as connect-go's)
    status, _c, data = connect_call(broker, "GetQueue", b"{not json")
    assert status == 400 and json.loads(data)["code"] == "invalid_argument"
    status, _c, _d = connect_call(broker, "Tail", {"queueName": "x"})
    assert status == 415  # a streaming method needs the connect+ content types


def test_full_queue_is_resource_exhausted_429(broker: BrokerThread) -> None:
    ok_json(broker, "Purge", {"queueName": "small"})
    for _ in range(2):
        ok_json(broker, "Append", {"queueName": "small", "value": ""})
    status, _c, data = connect_call(broker, "Append", {"queueName": "small", "value": ""})
    assert status == 429 and json.loads(data)["code"] == "resource_exhausted"


def test_server_stream_tail_with_envelopes(broker: BrokerThread) -> None:
    ok_json(broker, "CreateQueue", {"name": "ctail"})
    ok_json(broker, "Append", {"queueName": "ctail", "value": base64.b64encode(b"first").decode()})
    body = envelope(json.dumps({"queueName": "ctail", "startFrom": "START_FROM_EARLIEST"}).encode())
    conn, resp = connect_stream_open(broker, "Tail", body)
    try:
        assert resp.status == 200
        assert resp.getheader("content-type") == "application/connect+json"
        flags, msg = read_envelope(resp)
        assert flags == 0 and base64.b64decode(msg["value"]) == b"first"
        ok_json(
            broker, "Append", {"queueName": "ctail", "value": base64.b64encode(b"second").decode()}
        )
        flags, msg = read_envelope(resp)
        assert base64.b64decode(msg["value"]) == b"second" and msg["offset"] == "1"
    finally:
        conn.close()


def test_stream_error_is_in_the_end_of_stream_envelope(broker: BrokerThread) -> None:
    body = envelope(
        json.dumps({"queueName": "nowhere", "groupId": "g", "consumerId": "c"}).encode()
    )
    conn, resp = connect_stream_open(broker, "ConsumeQueue", body)
    try:
        assert resp.status == 200
        flags, end = read_envelope(resp)
        assert flags == 0x02 and end["error"]["code"] == "not_found"
    finally:
        conn.close()


def test_client_stream_append_queue_over_http1(broker: BrokerThread) -> None:
    ok_json(broker, "CreateQueue", {"name": "cstream"})
    body = b"".join(
        envelope(
            json.dumps({"queueName": "cstream", "value": base64.b64encode(v).decode()}).encode()
        )
        for v in (b"a", b"b", b"c")
    )
    conn, resp = connect_stream_open(broker, "AppendQueue", body)
    try:
        flags, msg = read_envelope(resp)
        assert flags == 0 and msg["count"] == 3 and msg["lastOffset"] == "2"
        flags, end = read_envelope(resp)
        assert flags == 0x02 and end == {}
    finally:
        conn.close()


def test_consume_queue_stream_and_ack_over_connect(broker: BrokerThread) -> None:
    ok_json(broker, "CreateQueue", {"name": "cconsume"})
    ok_json(broker, "Append", {"queueName": "cconsume", "value": base64.b64encode(b"job").decode()})
    body = envelope(
        json.dumps(
            {"queueName": "cconsume", "groupId": "g", "consumerId": "c1", "maxInFlight": 5}
        ).encode()
    )
    conn, resp = connect_stream_open(broker, "ConsumeQueue", body)
    try:
        flags, msg = read_envelope(resp)
        assert base64.b64decode(msg["value"]) == b"job"
        assert msg["deliveryInfo"]["consumerId"] == "c1"
        acked = ok_json(
            broker,
            "Ack",
            {"queueName": "cconsume", "groupId": "g", "consumerId": "c1", "offsets": ["0"]},
        )
        assert acked["ackedCount"] == 1
        group = ok_json(broker, "GetConsumerGroup", {"queueName": "cconsume", "groupId": "g"})
        assert [c["consumerId"] for c in group["consumers"]] == ["c1"]
    finally:
        conn.close()
    # The client went away: the stream's consumer leaves the group.
    deadline = time.monotonic() + 10
    while ok_json(broker, "GetConsumerGroup", {"queueName": "cconsume", "groupId": "g"}).get(
        "consumers"
    ):
        assert time.monotonic() < deadline, "the Connect stream's consumer stayed"
        time.sleep(0.02)


def test_long_poll_consume_wakes_on_append(broker: BrokerThread) -> None:
    ok_json(broker, "CreateQueue", {"name": "cpoll"})
    ok_json(broker, "JoinGroup", {"queueName": "cpoll", "groupId": "g", "consumerId": "p"})
    result: dict = {}

    def poll() -> None:
        result.update(
            ok_json(
                broker,
                "Consume",
                {"queueName": "cpoll", "groupId": "g", "consumerId": "p", "waitTime": "10s"},
            )
        )

    t = threading.Thread(target=poll)
    t.start()
    ok_json(broker, "Append", {"queueName": "cpoll", "value": base64.b64encode(b"late").decode()})
    t.join(15)
    assert [base64.b64decode(m["value"]) for m in result["messages"]] == [b"late"]


def test_openapi_document_stays_valid(broker: BrokerThread) -> None:
    """The procedures join the HTTP listener's OpenAPI document, which stays valid."""
    import http.client

    host, port = broker.address("http.bind")
    conn = http.client.HTTPConnection(host, port, timeout=10)
    conn.request("GET", "/api/v1/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"})
    resp = conn.getresponse()
    doc = json.loads(resp.read())
    conn.close()
    assert resp.status == 200
    assert "/fluxmq.queue.v1.QueueService/ConsumeQueue" in doc["paths"]
    try:
        from openapi_spec_validator import validate
    except ImportError:  # a dev dependency, not in the plugin's test extra
        return
    validate(doc)


def test_connect_error_has_queue_error_detail(broker: BrokerThread) -> None:
    status, _c, data = connect_call(broker, "GetQueue", {"name": "missing"})
    assert status == 404
    [detail] = json.loads(data)["details"]
    assert detail["type"] == "fluxmq.queue.v1.QueueErrorDetail"
    raw = base64.b64decode(detail["value"] + "=" * (-len(detail["value"]) % 4))
    assert pb.QueueErrorDetail.FromString(raw).code == pb.QUEUE_ERROR_CODE_NOT_FOUND
