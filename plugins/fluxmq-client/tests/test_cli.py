"""`fluxmq pub|sub|queue publish|consume` as a user runs them: a subprocess per
command against our broker on an ephemeral port; exit codes and messages checked."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import sys

import pytest
from fluxmq_client import Client, Properties

from fluxmq_core.testing.tls import make_test_certs


def fluxmq(
    *args: str, stdin: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fluxmq_core.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def collect(port: int, topic: str, n: int, action) -> list:
    """Subscribe, run ``action`` (a CLI call) in a thread, return n messages."""
    async with Client("127.0.0.1", port) as c:
        sub = await c.subscribe(topic, qos=1)
        result = await asyncio.to_thread(action)
        assert result.returncode == 0, result.stderr
        return [await sub.get(10) for _ in range(n)]


async def test_pub_message_sources_and_properties(broker):
    port = str(broker.port())
    msgs = await collect(
        broker.port(),
        "cli/#",
        1,
        lambda: fluxmq(
            "pub",
            "-p",
            port,
            "-t",
            "cli/a",
            "-m",
            "hello",
            "-q",
            "1",
            "-D",
            "k=v",
            "--content-type",
            "text/plain",
            "--response-topic",
            "cli/r",
            "--correlation-data",
            "c1",
            "--message-expiry",
            "60",
        ),
    )
    m = msgs[0]
    assert m.payload == b"hello" and m.qos == 1
    assert m.properties.content_type == "text/plain"
    assert m.properties.response_topic == "cli/r"
    assert m.properties.correlation_data == b"c1"
    assert m.user_properties == {"k": "v"}
    lines = await collect(
        broker.port(),
        "cli/l",
        3,
        lambda: fluxmq("pub", "-p", port, "-t", "cli/l", "-l", "-q", "1", stdin="a\nb\nc\n"),
    )
    assert [x.payload for x in lines] == [b"a", b"b", b"c"]
    whole = await collect(
        broker.port(),
        "cli/s",
        1,
        lambda: fluxmq("pub", "-p", port, "-t", "cli/s", "-s", "-V", "3.1.1", stdin="x\ny\n"),
    )
    assert whole[0].payload == b"x\ny\n"
    empty = await collect(
        broker.port(),
        "cli/n",
        1,
        lambda: fluxmq("pub", "-L", f"mqtt://127.0.0.1:{port}/cli/n", "-n"),
    )
    assert empty[0].payload == b""


async def test_pub_count_rate_prints_a_final_rate(broker):
    port = str(broker.port())
    got = await collect(
        broker.port(),
        "load/x",
        20,
        lambda: fluxmq(
            "pub",
            "-p",
            port,
            "-t",
            "load/x",
            "-m",
            "z",
            "--count",
            "20",
            "--rate",
            "2000",
            "-q",
            "1",
        ),
    )
    assert len(got) == 20


def test_final_rate_line(broker):
    r = fluxmq("pub", "-p", str(broker.port()), "-t", "load/y", "-m", "z", "--count", "5")
    assert r.returncode == 0
    assert "sent 5 messages in" in r.stderr and "msg/s" in r.stderr


async def test_sub_outputs_and_count(broker):
    async with Client("127.0.0.1", broker.port()) as c:
        await c.publish(
            "keep/a",
            "v1",
            qos=1,
            retain=True,
            properties=Properties(user_properties=(("u", "1"),)),
        )
        await c.publish("keep/b", b"\xff\x00", qos=1, retain=True)
    port = str(broker.port())
    r = fluxmq("sub", "-p", port, "-t", "keep/a", "-C", "1", "-v")
    assert (r.returncode, r.stdout) == (0, "keep/a v1\n")
    r = fluxmq("sub", "-p", port, "-t", "keep/a", "-C", "1", "-F", "%t|%p|%q|%r|%l")
    assert r.stdout == "keep/a|v1|0|1|2\n"
    r = fluxmq("sub", "-p", port, "-t", "keep/#", "-C", "2", "--json", "-q", "1")
    rows = sorted((json.loads(line) for line in r.stdout.splitlines()), key=lambda o: o["topic"])
    assert rows[0]["payload"] == "v1" and rows[0]["encoding"] == "text"
    assert rows[0]["properties"]["user_properties"] == [["u", "1"]]
    assert rows[0]["retain"] is True and rows[0]["qos"] == 1
    assert rows[1]["encoding"] == "base64" and rows[1]["payload"] == "/wA="
    r = fluxmq("sub", "-p", port, "-t", "keep/a", "-C", "1", "-V", "3.1.1")
    assert r.stdout == "v1\n"


def test_exit_codes_and_errors(mqtt_broker_factory, tmp_path):
    broker = mqtt_broker_factory()
    r = fluxmq("sub", "-p", str(broker.port()), "-t", "never/#", "-W", "0.5")
    assert r.returncode == 27 and "timed out" in r.stderr
    r = fluxmq("pub", "-p", str(free_port()), "-t", "x", "-m", "y")
    assert r.returncode == 1 and "connection refused" in r.stderr
    assert "Traceback" not in r.stderr
    # An unknown host (the .invalid domain never resolves): named, no traceback.
    r = fluxmq("sub", "-h", "no-such-host.invalid", "-t", "x", "-C", "1")
    assert r.returncode == 1 and "cannot connect to no-such-host.invalid:1883" in r.stderr
    assert "Traceback" not in r.stderr
    r = fluxmq("pub", "-L", "http://127.0.0.1/x", "-m", "y")
    assert r.returncode == 1 and "scheme must be" in r.stderr
    r = fluxmq("pub", "-h", "127.0.0.1", "-t", "x")
    assert r.returncode == 1 and "message source" in r.stderr
    r = fluxmq("pub", "-p", str(broker.port()), "-t", "x", "-m", "y", "-V", "7")
    assert r.returncode == 1 and "-V must be" in r.stderr
    pw = tmp_path / "passwd"
    pw.write_text("")
    locked = mqtt_broker_factory(config={"auth": {"anonymous": False, "password_file": str(pw)}})
    r = fluxmq("pub", "-p", str(locked.port()), "-t", "x", "-m", "y", "-u", "bob", "-P", "no")
    assert r.returncode == 1
    assert "refused" in r.stderr and ("0x86" in r.stderr or "0x87" in r.stderr)


def test_tls_and_websocket_urls(mqtt_broker_factory, tmp_path):
    certs = make_test_certs(tmp_path)
    broker = mqtt_broker_factory(
        config={
            "mqtt": {
                "tls_cert": certs["server.pem"],
                "tls_key": certs["server.key"],
                "tls": "127.0.0.1:0",
                "websocket": "127.0.0.1:0",
                "wss": "127.0.0.1:0",
            }
        }
    )
    tls = str(broker.port("mqtt.tls"))
    r = fluxmq("pub", "-p", tls, "--cafile", certs["ca.pem"], "-t", "t/s", "-m", "x", "-r")
    assert r.returncode == 0, r.stderr
    r = fluxmq("sub", "-L", f"mqtts://127.0.0.1:{tls}/t/s", "--cafile", certs["ca.pem"], "-C", "1")
    assert r.stdout == "x\n", r.stderr
    r = fluxmq("sub", "-L", f"mqtts://127.0.0.1:{tls}/t/s", "--insecure", "-C", "1")
    assert r.stdout == "x\n", r.stderr
    r = fluxmq("sub", "-L", f"mqtts://127.0.0.1:{tls}/t/s", "-C", "1")
    assert r.returncode == 1 and "TLS failure" in r.stderr
    ws = broker.port("mqtt.websocket")
    r = fluxmq("sub", "-L", f"ws://127.0.0.1:{ws}/mqtt", "-t", "t/s", "-C", "1", "-v")
    assert r.stdout == "t/s x\n", r.stderr
    # A topic after '#' in a ws URL, a wildcard filter URL-encoded.
    r = fluxmq("pub", "-L", f"ws://127.0.0.1:{ws}/mqtt#t/w", "-m", "y", "-r")
    assert r.returncode == 0, r.stderr
    r = fluxmq("sub", "-L", f"ws://127.0.0.1:{ws}/mqtt#t/%23", "-C", "2", "-v")
    assert sorted(r.stdout.splitlines()) == ["t/s x", "t/w y"], r.stderr
    # wss://: WebSocket over TLS, verified with --cafile (and refused without it).
    wss = broker.port("mqtt.wss")
    r = fluxmq(
        "sub", "-L", f"wss://127.0.0.1:{wss}/mqtt#t/s", "--cafile", certs["ca.pem"], "-C", "1"
    )
    assert (r.returncode, r.stdout) == (0, "x\n"), r.stderr
    r = fluxmq("sub", "-L", f"wss://127.0.0.1:{wss}/mqtt#t/s", "-C", "1")
    assert r.returncode == 1 and "TLS failure" in r.stderr


def test_queue_publish_and_consume(broker):
    port = str(broker.port())
    for body in ("one", "two"):
        r = fluxmq("queue", "publish", "orders", "-p", port, "-m", body, "--key", "eu")
        assert r.returncode == 0, r.stderr
    r = fluxmq("queue", "consume", "orders", "-p", port, "--group", "g1", "-C", "2", "--json")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [(o["message_id"], o["offset"], o["delivery_count"]) for o in rows] == [
        ("orders:0", 0, 1),
        ("orders:1", 1, 1),
    ]
    assert rows[0]["payload"] == "one" and rows[0]["topic"] == "$queue/orders/eu"
    # --nack gives the message back: the next consumer of the group sees delivery 2.
    fluxmq("queue", "publish", "jobs", "-p", port, "-m", "retry-me")
    r = fluxmq("queue", "consume", "jobs", "-p", port, "--group", "w", "-C", "1", "--nack")
    assert r.stdout.startswith("jobs:0 offset=0 delivery=1 retry-me"), r.stderr
    r = fluxmq("queue", "consume", "jobs", "-p", port, "--group", "w", "-C", "1")
    # (delivery 2 may have reached the first consumer before it left: then it is 3)
    assert r.stdout.startswith(("jobs:0 offset=0 delivery=2", "jobs:0 offset=0 delivery=3"))
    assert r.stderr == ""
    r = fluxmq("queue", "consume", "jobs", "-p", port, "--cursor", "yesterday")
    assert r.returncode == 1 and "--cursor" in r.stderr


def test_queue_admin_commands_are_still_there():
    r = fluxmq("queue", "--help")
    for name in ("list", "info", "create", "publish", "consume"):
        assert name in r.stdout


@pytest.mark.parametrize("cmd", ["pub", "sub"])
def test_help_uses_double_dash(cmd):
    r = fluxmq(cmd, "--help")
    assert r.returncode == 0 and "-h, --host" in r.stdout.replace("--host  -h", "-h, --host")


def test_refusals_name_the_reason(broker):
    port = str(broker.port())
    r = fluxmq("pub", "-p", port, "-t", "a/#", "-m", "x")
    assert r.returncode == 1 and "cannot publish to 'a/#'" in r.stderr
    r = fluxmq("sub", "-p", port, "-t", "a/#/b", "-C", "1")
    assert r.returncode == 1 and "bad topic filter" in r.stderr
    # A control publish with nothing to settle: PUBACK 0x80 with the broker's reason.
    r = fluxmq("pub", "-p", port, "-t", "$queue/jobs/$ack", "-q", "1", "-m", "{}")
    assert r.returncode == 1
    assert "publish refused: UNSPECIFIED_ERROR (0x80)" in r.stderr and "message-id" in r.stderr


def test_pub_and_sub_against_mosquitto(mosquitto):
    port = str(mosquitto)
    r = fluxmq("pub", "-p", port, "-t", "mq/a", "-m", "from fluxmq", "-r", "-q", "2")
    assert r.returncode == 0, r.stderr
    for version in ("5", "3.1.1"):
        r = fluxmq("sub", "-p", port, "-V", version, "-t", "mq/#", "-C", "1", "-v")
        assert r.stdout == "mq/a from fluxmq\n", r.stderr
    r = fluxmq("sub", "-p", port, "-t", "mq/none", "-W", "0.5")
    assert r.returncode == 27


async def start_cli(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "fluxmq_core.cli",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def kill(proc: asyncio.subprocess.Process) -> None:
    """SIGKILL: the process's socket closes without a DISCONNECT."""
    if proc.returncode is None:
        proc.kill()
    await proc.wait()


@pytest.fixture(params=["fluxmq", "mosquitto"])
def any_broker_port(request) -> int:
    """Our broker, then Mosquitto (skipped when it is not installed)."""
    if request.param == "fluxmq":
        return request.getfixturevalue("broker").port()
    return request.getfixturevalue("mosquitto")


@pytest.mark.parametrize("version", ["5", "3.1.1"])
async def test_will_options_deliver_the_will_when_the_connection_dies(any_broker_port, version):
    port = str(any_broker_port)
    will = ["--will-topic", "wills/cli", "--will-payload", "gone", "--will-qos", "1"]
    async with Client("127.0.0.1", any_broker_port) as watcher:
        wills = await watcher.subscribe("wills/#", qos=1)
        # fluxmq sub: connected once it prints a message published to its filter.
        sub = await start_cli("sub", "-p", port, "-V", version, "-t", "alive/sub", *will)
        try:
            async with asyncio.timeout(30):
                line = b""
                while not line:
                    await watcher.publish("alive/sub", "ping", qos=1)
                    try:
                        line = await asyncio.wait_for(sub.stdout.readline(), 0.5)
                    except TimeoutError:
                        continue
            assert line == b"ping\n"
        finally:
            await kill(sub)
        m = await wills.get(20)
        assert (m.topic, m.payload, m.qos, m.retain) == ("wills/cli", b"gone", 1, False)
        # fluxmq pub -l: connected once its first line arrives; then killed.
        alive = await watcher.subscribe("alive/pub", qos=1)
        pub = await start_cli(
            "pub", "-p", port, "-V", version, "-t", "alive/pub", "-l", "-q", "1",
            *will[:2], "--will-payload", "retained-will", "--will-retain",
        )  # fmt: skip
        try:
            pub.stdin.write(b"first\n")
            await pub.stdin.drain()
            assert (await alive.get(30)).payload == b"first"
        finally:
            await kill(pub)
        m = await wills.get(20)
        assert (m.topic, m.payload) == ("wills/cli", b"retained-will")
    async with Client("127.0.0.1", any_broker_port) as late:  # --will-retain kept it
        kept = await (await late.subscribe("wills/cli", qos=1)).get(10)
        assert kept.payload == b"retained-will" and kept.retain
        await late.publish("wills/cli", b"", retain=True, qos=1)  # clear it


async def test_no_will_after_a_clean_exit(broker):
    port = str(broker.port())
    async with Client("127.0.0.1", broker.port()) as watcher:
        wills = await watcher.subscribe("wills/#", qos=1)
        r = await asyncio.to_thread(
            fluxmq, "pub", "-p", port, "-t", "x", "-m", "y", "--will-topic", "wills/clean"
        )
        assert r.returncode == 0, r.stderr
        # A round trip after the exit: the marker is the next message, not a will.
        await watcher.publish("wills/marker", "m", qos=1)
        assert (await wills.get(10)).topic == "wills/marker"


async def test_pub_file_progress_bar_and_retained_only(broker, tmp_path):
    port = str(broker.port())
    body = tmp_path / "body.bin"
    body.write_bytes(b"\x00file\xff")
    got = await collect(
        broker.port(), "f/x", 1, lambda: fluxmq("pub", "-p", port, "-t", "f/x", "-f", str(body))
    )
    assert got[0].payload == b"\x00file\xff"
    r = fluxmq("pub", "-p", port, "-t", "f/none", "-f", str(tmp_path / "missing"))
    assert r.returncode == 1 and "cannot read" in r.stderr and "Traceback" not in r.stderr
    # With --count > 1 and no --quiet: the progress bar's task, then the final rate.
    r = fluxmq("pub", "-p", port, "-t", "keep/r", "-m", "v", "-r", "-q", "1", "--count", "3")
    assert r.returncode == 0, r.stderr
    assert "publishing to keep/r" in r.stderr and "sent 3 messages in" in r.stderr
    # --retained-only: the retained message is printed, then the first live one ends it.
    sub = await start_cli("sub", "-p", port, "-t", "keep/r", "--retained-only", "-q", "1")
    try:
        async with asyncio.timeout(30):
            assert await sub.stdout.readline() == b"v\n"  # retained: printed
            async with Client("127.0.0.1", broker.port()) as c:
                while sub.returncode is None:  # not retained: ends the command
                    await c.publish("keep/r", "live", qos=1)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(sub.wait(), 0.5)
        assert sub.returncode == 0 and await sub.stdout.read() == b""
    finally:
        await kill(sub)


def test_session_options_resume_a_session(broker):
    """-c (no clean start) with -i keeps the session between two runs: a QoS 1 message
    published in between is delivered to the second; -x 0 asks for none."""
    port = str(broker.port())
    first = fluxmq("sub", "-p", port, "-i", "keeper", "-c", "-q", "1", "-t", "ses/x", "-W", "1")
    assert first.returncode == 27, first.stderr  # subscribed, then gave up waiting
    r = fluxmq("pub", "-p", port, "-t", "ses/x", "-m", "while away", "-q", "1")
    assert r.returncode == 0, r.stderr
    again = fluxmq("sub", "-p", port, "-i", "keeper", "-c", "-q", "1", "-t", "ses/x", "-C", "1")
    assert (again.returncode, again.stdout) == (0, "while away\n"), again.stderr
    # -x 0: the session ends with the connection, so nothing is kept for the next run.
    r = fluxmq(
        "sub", "-p", port, "-i", "brief", "-c", "-x", "0", "-q", "1", "-t", "ses/y", "-W", "1"
    )
    assert r.returncode == 27
    fluxmq("pub", "-p", port, "-t", "ses/y", "-m", "lost", "-q", "1")
    r = fluxmq("sub", "-p", port, "-i", "brief", "-c", "-q", "1", "-t", "ses/y", "-W", "1")
    assert (r.returncode, r.stdout) == (27, "")


def test_client_certificate(mqtt_broker_factory, tmp_path):
    certs = make_test_certs(tmp_path)
    broker = mqtt_broker_factory(
        config={
            "mqtt": {
                "tls_cert": certs["server.pem"],
                "tls_key": certs["server.key"],
                "tls_ca": certs["ca.pem"],
                "tls_client_auth": "required",
                "tls": "127.0.0.1:0",
            }
        }
    )
    tls = str(broker.port("mqtt.tls"))
    ca = ["--cafile", certs["ca.pem"]]
    mine = ["--cert", certs["client.pem"], "--key", certs["client.key"]]
    r = fluxmq("pub", "-p", tls, *ca, *mine, "-t", "m/t", "-m", "x", "-r", "-q", "1")
    assert r.returncode == 0, r.stderr
    r = fluxmq("sub", "-p", tls, *ca, *mine, "-t", "m/t", "-C", "1")
    assert (r.returncode, r.stdout) == (0, "x\n"), r.stderr
    r = fluxmq("sub", "-p", tls, *ca, "-t", "m/t", "-C", "1", "-W", "20")
    assert r.returncode == 1 and r.stderr.startswith("fluxmq: error: ")
    assert "Traceback" not in r.stderr
    r = fluxmq("sub", "-p", tls, *ca, "--cert", str(tmp_path / "nope.pem"), "-t", "m/t")
    assert r.returncode == 1 and "Traceback" not in r.stderr


def test_queue_sources_cursor_and_no_ack(mqtt_broker_factory, tmp_path):
    broker = mqtt_broker_factory(config={"queues": {"log": {"type": "stream"}}})
    port = str(broker.port())
    body = tmp_path / "m.txt"
    body.write_text("from a file")
    assert fluxmq("queue", "publish", "log", "-p", port, "-f", str(body)).returncode == 0
    r = fluxmq("queue", "publish", "log", "-p", port, stdin="from stdin")
    assert r.returncode == 0, r.stderr
    assert fluxmq("queue", "publish", "log", "-p", port, "-m", "third").returncode == 0
    r = fluxmq("queue", "consume", "log", "-p", port, "-g", "a", "--cursor", "first", "-C", "3")
    assert [line.split(" ", 3)[3] for line in r.stdout.splitlines()] == [
        "from a file",
        "from stdin",
        "third",
    ], r.stderr
    r = fluxmq("queue", "consume", "log", "-p", port, "-g", "b", "--cursor", "2", "-C", "1")
    assert r.stdout == "log:2 offset=2 delivery=1 third\n", r.stderr
    # A time (broker clock, Unix seconds) long past: from the first message on.
    r = fluxmq("queue", "consume", "log", "-p", port, "-g", "c", "--cursor", "1.5", "-C", "1")
    assert r.stdout == "log:0 offset=0 delivery=1 from a file\n", r.stderr
    # last: only what is appended from now on, so nothing comes before -W.
    r = fluxmq("queue", "consume", "log", "-p", port, "-g", "d", "--cursor", "last", "-W", "1")
    assert (r.returncode, r.stdout) == (27, "")
    # --no-ack on a classic queue: the message stays pending and comes back.
    fluxmq("queue", "publish", "work", "-p", port, "-m", "w")
    r = fluxmq("queue", "consume", "work", "-p", port, "-g", "g", "-C", "1", "--no-ack")
    assert r.stdout.startswith("work:0 offset=0 delivery=1 w"), r.stderr
    r = fluxmq("queue", "consume", "work", "-p", port, "-g", "g", "-C", "1", "--json")
    row = json.loads(r.stdout)
    assert (row["message_id"], row["group"], row["payload"]) == ("work:0", "g", "w")
    assert row["delivery_count"] >= 2


def test_url_credentials_are_percent_decoded(mqtt_broker_factory, tmp_path):
    from fluxmq_core.passwords import set_password

    pw = tmp_path / "passwd"
    set_password(pw, "bob", "p@ss w/rd", iterations=1000)
    broker = mqtt_broker_factory(config={"auth": {"anonymous": False, "password_file": str(pw)}})
    port = broker.port()
    r = fluxmq("pub", "-L", f"mqtt://bob:p%40ss%20w%2Frd@127.0.0.1:{port}/c/u", "-m", "x")
    assert r.returncode == 0, r.stderr
    r = fluxmq("pub", "-L", f"mqtt://bob:wrong@127.0.0.1:{port}/c/u", "-m", "x")
    assert r.returncode == 1 and "refused" in r.stderr
    assert "0x86" in r.stderr or "0x87" in r.stderr
    # -u/-P given on the command line win over the URL's.
    url = f"mqtt://bob:wrong@127.0.0.1:{port}/c/u"
    r = fluxmq("pub", "-L", url, "-u", "bob", "-P", "p@ss w/rd", "-m", "x")
    assert r.returncode == 0, r.stderr
