"""docs/queue-api.md stays true: its curl examples, run as the same HTTP requests
(``http.client``), succeed against a broker in order, and its Tail example's
envelope is well formed."""

from __future__ import annotations

import base64
import json
import re
import shlex
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from fluxmq_queue_api.testing import connect_call, connect_stream_open, read_envelope

from fluxmq_core.testing.broker import BrokerThread

DOC = Path(__file__).resolve().parents[3] / "docs" / "queue-api.md"


@pytest.fixture(scope="module")
def doc_broker() -> Iterator[BrokerThread]:
    with BrokerThread(plugins=["queue_api"], config={"http": {"admin_token": "s3cret"}}) as b:
        yield b


def curl_commands() -> list[list[str]]:
    if not DOC.exists():
        pytest.skip("docs/queue-api.md is not beside this checkout")
    blocks = re.findall(r"```sh\n(.*?)```", DOC.read_text(), re.S)
    commands = []
    for block in blocks:
        for cmd in block.replace("\\\n", " ").split("\n\n"):
            cmd = cmd.strip()
            if cmd.startswith("curl"):
                commands.append(shlex.split(cmd))
    return commands


def test_unary_curl_examples_work(doc_broker: BrokerThread) -> None:
    commands = curl_commands()
    assert len(commands) == 4, commands
    answers = []
    for argv in commands:
        headers = dict(
            h.split(": ", 1) for flag, h in zip(argv, argv[1:], strict=False) if flag == "-H"
        )
        body = argv[argv.index("-d") + 1]
        method = argv[-1].rsplit("/", 1)[1]
        token = headers.pop("Authorization").removeprefix("Bearer ")
        status, ctype, data = connect_call(
            doc_broker, method, json.loads(body), token=token, headers=headers
        )
        assert status == 200, (method, data)
        answers.append(json.loads(data))
    created, appended, consumed, acked = answers
    assert created["name"] == "orders"
    assert appended.get("offset", "0") == "0"
    msg = consumed["messages"][0]
    assert base64.b64decode(msg["key"]) == b"eu" and base64.b64decode(msg["value"]) == b"hello"
    assert acked["ackedCount"] == 1


def test_tail_example_envelope(doc_broker: BrokerThread) -> None:
    text = DOC.read_text()
    m = re.search(r"printf '\\x00\\x00\\x00\\x00\\x([0-9a-f]{2})(\{.*?\})'", text)
    assert m, "the Tail example is missing"
    length, payload = int(m.group(1), 16), m.group(2)
    assert length == len(payload.encode())
    connect_call(doc_broker, "CreateQueue", {"name": "orders"})
    connect_call(doc_broker, "Append", {"queueName": "orders", "value": "aGk="})
    conn, resp = connect_stream_open(
        doc_broker, "Tail", struct.pack(">BI", 0, length) + payload.encode(), token="s3cret"
    )
    try:
        flags, first = read_envelope(resp)
        assert flags == 0 and "value" in first
    finally:
        conn.close()
