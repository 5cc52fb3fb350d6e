"""``fluxmq queue ...`` against a running broker through the admin API, and the
admin queue routes it uses (``fluxmq_core/queue_cli.py``, ``http/admin.py``)."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest
from typer.testing import CliRunner

from fluxmq_core.cli import app
from fluxmq_core.message import Message

runner = CliRunner()


@pytest.fixture
def broker(fluxmq_broker_factory: Any) -> Any:
    return fluxmq_broker_factory(plugins=[], config={"http": {"admin_token": "s3cret"}})


def fluxmq(broker: Any, *args: str, token: str | None = "s3cret") -> Any:
    url = f"http://127.0.0.1:{broker.port('http.bind')}"
    extra = ["--url", url] + (["--token", token] if token is not None else [])
    return runner.invoke(app, ["queue", *args, *extra], env={"FLUXMQ_ADMIN_TOKEN": ""})


def append(broker: Any, queue: str, *messages: Message) -> None:
    async def go() -> None:
        for m in messages:
            await broker.context.queues.append(queue, m)

    broker.call(go())


def test_create_list_info_purge_delete(broker: Any) -> None:
    r = fluxmq(
        broker,
        "create",
        "orders",
        "--option",
        "max_depth=100",
        "--option",
        "topics=shop/#,orders/+",
    )
    assert r.exit_code == 0, r.output
    assert "created: queue orders (classic)" in r.output
    assert (
        "exists"
        in fluxmq(
            broker, "create", "orders", "-o", "max_depth=100", "-o", "topics=shop/#,orders/+"
        ).output
    )
    r = fluxmq(broker, "create", "orders", "-o", "max_depth=5")
    assert r.exit_code == 1 and "HTTP 409" in r.output
    r = fluxmq(broker, "create", "bad", "-o", "no_such_key=1")
    assert r.exit_code == 1 and "no_such_key" in r.output
    assert fluxmq(broker, "create", "events", "--type", "stream").exit_code == 0
    append(broker, "orders", Message("$queue/orders/a", b"one"), Message("$queue/orders/b", b"two"))
    r = fluxmq(broker, "list")
    assert r.exit_code == 0, r.output
    lines = {line.split()[0]: line.split() for line in r.output.splitlines()[1:]}
    assert lines["orders"][:3] == ["orders", "classic", "2"] and lines["events"][1] == "stream"
    listed = json.loads(fluxmq(broker, "list", "--json").output)
    assert {q["name"] for q in listed["queues"]} == {"orders", "events"}
    r = fluxmq(broker, "info", "orders")
    assert r.exit_code == 0 and "queue orders (classic): 2 message(s)" in r.output
    assert "captures: shop/#, orders/+" in r.output and "max_depth=100" in r.output
    assert (
        json.loads(fluxmq(broker, "info", "orders", "--json").output)["config"]["max_depth"] == 100
    )
    r = fluxmq(broker, "purge", "orders")
    assert r.exit_code == 0 and "purged: 2 message(s)" in r.output
    assert fluxmq(broker, "delete", "orders").exit_code == 0
    r = fluxmq(broker, "info", "orders")
    assert r.exit_code == 5 and "no queue 'orders'" in r.output


def test_errors_have_their_own_exit_codes(broker: Any) -> None:
    r = fluxmq(broker, "list", token=None)
    assert r.exit_code == 4 and "HTTP 401" in r.output
    r = fluxmq(broker, "list", token="wrong")
    assert r.exit_code == 4
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    r = runner.invoke(app, ["queue", "list", "--url", f"http://127.0.0.1:{dead}"])
    assert r.exit_code == 3 and "cannot reach the broker" in r.output
    r = fluxmq(broker, "create", "x", "--option", "novalue")
    assert r.exit_code == 2


def test_token_from_the_environment(broker: Any) -> None:
    url = f"http://127.0.0.1:{broker.port('http.bind')}"
    r = runner.invoke(app, ["queue", "list", "--url", url], env={"FLUXMQ_ADMIN_TOKEN": "s3cret"})
    assert r.exit_code == 0, r.output


def test_records_route_exports_json_lines_and_dlq_names_travel_encoded(broker: Any) -> None:
    import http.client

    broker.call_soon(broker.context.queues.declare, "$dlq/orders", {})
    append(
        broker,
        "$dlq/orders",
        *[Message("$queue/orders/k", b"%d" % i, 1, user_properties=[("k", "v")]) for i in range(5)],
    )
    conn = http.client.HTTPConnection("127.0.0.1", broker.port("http.bind"), timeout=5)
    conn.request(
        "GET",
        "/api/v1/queues/%24dlq%2Forders/records?from=1&limit=3",
        headers={"Authorization": "Bearer s3cret"},
    )
    resp = conn.getresponse()
    assert resp.status == 200 and resp.getheader("content-type") == "application/x-ndjson"
    rows = [json.loads(line) for line in resp.read().splitlines()]
    conn.close()
    assert [r["offset"] for r in rows] == [1, 2, 3]
    assert rows[0]["topic"] == "$queue/orders/k" and rows[0]["qos"] == 1
    assert rows[0]["properties"]["user_properties"] == [["k", "v"]]


def test_sql_over_a_running_brokers_queue(broker: Any) -> None:
    pytest.importorskip("duckdb")
    broker.call_soon(broker.context.queues.declare, "metrics", {})
    append(
        broker,
        "metrics",
        *[Message(f"$queue/metrics/{'a' if i % 2 else 'b'}", b"%d" % i) for i in range(10)],
    )
    r = fluxmq(
        broker,
        "sql",
        "metrics",
        "SELECT topic, count(*) AS n, sum(CAST(decode(payload) AS INT)) AS total "
        "FROM metrics GROUP BY topic ORDER BY topic",
    )
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[1].split() == ["$queue/metrics/a", "5", "25"]
    assert r.output.splitlines()[2].split() == ["$queue/metrics/b", "5", "20"]
    r = fluxmq(
        broker,
        "sql",
        "metrics",
        "SELECT min(msg_offset), max(msg_offset), count(*) FROM messages",
        "--from",
        "4",
        "--format",
        "json",
    )
    assert r.exit_code == 0, r.output
    assert list(json.loads(r.output)[0].values()) == ["4", "9", "6"]
    r = fluxmq(broker, "sql", "metrics", "SELECT nope FROM messages")
    assert r.exit_code == 6 and "SQL failed" in r.output
    r = fluxmq(broker, "sql", "metrics", "SELECT offset FROM messages")  # the old column
    assert r.exit_code == 6 and "SQL failed" in r.output
    # the broker kept running and its queue is untouched
    assert broker.call_soon(broker.context.queues.info, "metrics").depth == 10


def test_sql_says_how_to_install_duckdb_when_missing(broker: Any, monkeypatch: Any) -> None:
    import builtins

    real = builtins.__import__

    def no_duckdb(name: str, *a: Any, **k: Any) -> Any:
        if name == "duckdb":
            raise ImportError("no duckdb")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_duckdb)
    r = fluxmq(broker, "sql", "metrics", "SELECT 1")
    assert r.exit_code == 6 and "fluxmq-core[sql]" in r.output


def test_sql_payload_text_is_null_for_payloads_that_are_not_utf8(broker: Any) -> None:
    pytest.importorskip("duckdb")
    broker.call_soon(broker.context.queues.declare, "mixed", {})
    append(
        broker,
        "mixed",
        Message("$queue/mixed/t", "grüße".encode()),
        Message("$queue/mixed/b", b"\xff\xfe\x00"),
        Message("$queue/mixed/e", b""),
    )
    r = fluxmq(
        broker,
        "sql",
        "mixed",
        "SELECT msg_offset, payload_text, octet_length(payload) AS n FROM mixed "
        "ORDER BY msg_offset",
        "--format",
        "json",
    )
    assert r.exit_code == 0, r.output
    rows = json.loads(r.output)
    assert [row["payload_text"] for row in rows] == ["grüße", None, ""]
    assert [row["n"] for row in rows] == ["7", "3", "0"]


def test_sql_help_names_the_columns() -> None:
    from typer.testing import CliRunner

    from fluxmq_core.cli import app

    out = CliRunner().invoke(app, ["queue", "sql", "--help"], env={"COLUMNS": "200"})
    assert out.exit_code == 0
    for column in ("msg_offset", "payload_text", "properties"):
        assert column in out.output
