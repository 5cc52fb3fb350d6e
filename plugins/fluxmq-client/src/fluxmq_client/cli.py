"""``fluxmq pub``, ``fluxmq sub``, ``fluxmq queue publish`` and ``fluxmq queue consume``.

Registered into the core's ``fluxmq`` command through the ``fluxmq.cli`` entry point.
Options follow mosquitto_pub/mosquitto_sub (``-h`` is the host, so help is ``--help``).
Exit codes as theirs: 0 done, 1 error (named: refused, not authorized, TLS...), 27 the
``-W`` timeout passed.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import inspect
import json
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, NoReturn

import typer

from fluxmq_core.mqtt_codec import MQTT_3_1_1, MQTT_5, Properties

from .client import Client, Message, QueueMessage, Will, client_from_options
from .errors import MQTTClientError
from .transport import parse_url

EXIT_OK, EXIT_ERROR, EXIT_TIMEOUT = 0, 1, 27
CTX = {"help_option_names": ["--help"]}

# Options of several commands (typer's documented style: Option objects as defaults).
Qos = typer.Option(0, "-q", "--qos", min=0, max=2, help="QoS.")
ClientId = typer.Option(None, "-i", "--id", help="Client id (default: random).")
UserProp = typer.Option([], "-D", "--user-property", help="KEY=VALUE (repeatable).")
Json = typer.Option(False, "--json", help="One JSON object per message.")

#: The connection options, each declared once: name -> (type, typer option). A
#: command takes the ones it names with :func:`connection_options`.
CONNECTION_OPTIONS: dict[str, tuple[Any, Any]] = {
    "host": (str, typer.Option("127.0.0.1", "-h", "--host", help="Broker host.")),
    "port": (
        int | None,
        typer.Option(None, "-p", "--port", help="Broker port (1883, 8883 with TLS)."),
    ),
    "url": (
        str | None,
        typer.Option(
            None,
            "-L",
            "--url",
            help="mqtt[s]://user:pass@host:port/topic or ws[s]://host:port/path",
        ),
    ),
    "version": (
        str,
        typer.Option("5", "-V", "--protocol-version", help="MQTT version: 5 or 3.1.1."),
    ),
    "client_id": (str | None, ClientId),
    "no_clean": (
        bool,
        typer.Option(False, "-c", "--disable-clean-session", help="Resume a session."),
    ),
    "expiry": (
        int | None,
        typer.Option(None, "-x", "--session-expiry", help="Session expiry interval (s)."),
    ),
    "username": (str | None, typer.Option(None, "-u", "--username")),
    "password": (str | None, typer.Option(None, "-P", "--pw", "--password")),
    "cafile": (
        str | None,
        typer.Option(None, "--cafile", help="CA certificates (PEM) to verify the broker."),
    ),
    "cert": (str | None, typer.Option(None, "--cert", help="Client certificate (PEM).")),
    "key": (str | None, typer.Option(None, "--key", help="Client private key (PEM).")),
    "insecure": (
        bool,
        typer.Option(False, "--insecure", help="Do not verify the broker's certificate."),
    ),
    "keepalive": (int, typer.Option(60, "-k", "--keepalive")),
    "will_topic": (str | None, typer.Option(None, "--will-topic")),
    "will_payload": (str, typer.Option("", "--will-payload")),
    "will_qos": (int, typer.Option(0, "--will-qos", min=0, max=2)),
    "will_retain": (bool, typer.Option(False, "--will-retain")),
    "timeout": (
        float | None,
        typer.Option(None, "-W", "--timeout", help="Give up after N seconds (exit 27)."),
    ),
}
#: ``fluxmq pub`` and ``fluxmq sub`` take every connection option.
ALL_CONNECTION_OPTIONS = tuple(CONNECTION_OPTIONS)
QUEUE_CONNECTION_OPTIONS = ("host", "port", "url", "username", "password", "cafile", "insecure")


@dataclass
class ConnectionOptions:
    """The connection options a command was given (the defaults are what a command
    that does not offer an option uses)."""

    host: str = "127.0.0.1"
    port: int | None = None
    url: str | None = None
    version: str = "5"
    client_id: str | None = None
    no_clean: bool = False
    expiry: int | None = None
    username: str | None = None
    password: str | None = None
    cafile: str | None = None
    cert: str | None = None
    key: str | None = None
    insecure: bool = False
    keepalive: int = 60
    will_topic: str | None = None
    will_payload: str = ""
    will_qos: int = 0
    will_retain: bool = False
    timeout: float | None = None

    def client(self) -> Client:
        """The :class:`Client` these options describe (exits 1 naming a bad option)."""
        v = _version(self.version)
        will = None
        if self.will_topic:
            will = Will(
                self.will_topic, self.will_payload.encode(), self.will_qos, self.will_retain
            )
        no_clean = self.no_clean
        try:
            return client_from_options(
                self.url,
                host=self.host,
                port=self.port,
                cafile=self.cafile,
                certfile=self.cert,
                keyfile=self.key,
                insecure=self.insecure,
                version=v,
                client_id=self.client_id,
                clean_start=not no_clean,
                session_expiry=self.expiry
                if self.expiry is not None
                else (0xFFFFFFFF if no_clean else 0),
                username=self.username,
                password=self.password,
                keepalive=self.keepalive,
                will=will,
                reconnect=False,
            )
        except (MQTTClientError, ValueError) as exc:
            _die(str(exc))


def connection_options(*names: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add the connection options ``names`` (keys of :data:`CONNECTION_OPTIONS`) to a
    command after its own, and hand them to it gathered as ``conn``
    (a :class:`ConnectionOptions`): typer sees one signature with every option."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        own = inspect.signature(func, eval_str=True)
        params = [p for p in own.parameters.values() if p.name != "conn"]
        for name in names:
            annotation, option = CONNECTION_OPTIONS[name]
            params.append(
                inspect.Parameter(
                    name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation
                )
            )

        @functools.wraps(func)
        def command(**kwargs: Any) -> Any:
            conn = ConnectionOptions(**{name: kwargs.pop(name) for name in names})
            return func(conn=conn, **kwargs)

        del command.__wrapped__  # typer reads this signature, not the function's
        command.__signature__ = own.replace(parameters=params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        return command

    return decorate


def _die(message: str, code: int = EXIT_ERROR) -> NoReturn:
    typer.echo(f"fluxmq: error: {message}", err=True)
    raise typer.Exit(code)


def _version(text: str) -> int:
    if text in ("5", "5.0", "mqttv5"):
        return MQTT_5
    if text in ("3.1.1", "311", "4", "mqttv311"):
        return MQTT_3_1_1
    _die(f"-V must be 5 or 3.1.1, not {text!r}")


def _user_props(items: list[str]) -> tuple[tuple[str, str], ...]:
    out = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            _die(f"--user-property takes KEY=VALUE, not {item!r}")
        out.append((key, value))
    return tuple(out)


def _run(coro: Any, timeout: float | None) -> None:
    async def main() -> None:
        if timeout is None:
            await coro
        else:
            async with asyncio.timeout(timeout):
                await coro

    try:
        asyncio.run(main())
    except TimeoutError:
        _die(f"timed out after {timeout:g}s", EXIT_TIMEOUT)
    except MQTTClientError as exc:
        _die(str(exc))
    except KeyboardInterrupt:
        raise typer.Exit(EXIT_ERROR) from None


def _message_json(m: Message, extra: dict[str, Any] | None = None) -> str:
    try:
        payload: Any = m.payload.decode("utf-8")
        encoding = "text"
    except UnicodeDecodeError:
        payload, encoding = base64.b64encode(m.payload).decode(), "base64"
    obj: dict[str, Any] = {"topic": m.topic, "payload": payload, "encoding": encoding}
    obj.update(qos=m.qos, retain=m.retain)
    props: dict[str, Any] = {}
    for name, value in (m.properties.present() if m.properties else {}).items():
        if name == "user_properties":
            props[name] = [list(p) for p in value]
        elif isinstance(value, bytes):
            props[name] = value.decode("utf-8", "replace")
        elif isinstance(value, tuple):
            props[name] = list(value)
        else:
            props[name] = value
    obj["properties"] = props
    obj.update(extra or {})
    return json.dumps(obj)


def _format(fmt: str, m: Message) -> str:
    """mosquitto_sub-style -F: %t topic, %p payload, %q qos, %r retain, %l length,
    %x payload hex, %I ISO time, %U unix time, %% a percent sign."""
    now = time.time()
    subs = {
        "t": m.topic,
        "p": m.text(),
        "q": str(m.qos),
        "r": "1" if m.retain else "0",
        "l": str(len(m.payload)),
        "x": m.payload.hex(),
        "I": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(now)),
        "U": f"{now:.6f}",
        "%": "%",
    }
    out, i = [], 0
    while i < len(fmt):
        ch = fmt[i]
        if ch == "%" and i + 1 < len(fmt) and fmt[i + 1] in subs:
            out.append(subs[fmt[i + 1]])
            i += 2
        elif ch == "\\" and i + 1 < len(fmt) and fmt[i + 1] in "nt":
            out.append("\n" if fmt[i + 1] == "n" else "\t")
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _messages(
    message: str | None, file: str | None, lines: bool, stdin: bool, null: bool
) -> list[bytes] | None:
    """The payloads chosen by -m/-f/-l/-s/-n (None: -l, read lazily)."""
    chosen = [x for x in (message is not None, file, lines, stdin, null) if x]
    if len(chosen) != 1:
        _die("give exactly one message source: -m, -f, -l, -s or -n")
    if message is not None:
        return [message.encode()]
    if file:
        try:
            with open(file, "rb") as fh:
                return [fh.read()]
        except OSError as exc:
            _die(f"cannot read {file}: {exc.strerror}")
    if stdin:
        return [sys.stdin.buffer.read()]
    if null:
        return [b""]
    return None


@connection_options(*ALL_CONNECTION_OPTIONS)
def pub(
    topic: str | None = typer.Option(None, "-t", "--topic", help="Topic to publish to."),
    message: str | None = typer.Option(None, "-m", "--message", help="The payload."),
    file: str | None = typer.Option(None, "-f", "--file", help="Send a file as the payload."),
    lines: bool = typer.Option(False, "-l", "--stdin-line", help="A message per stdin line."),
    stdin: bool = typer.Option(False, "-s", "--stdin-file", help="All of stdin as one message."),
    null: bool = typer.Option(False, "-n", "--null-message", help="An empty payload."),
    retain: bool = typer.Option(False, "-r", "--retain"),
    count: int = typer.Option(1, "--count", min=1, help="Send the message N times."),
    rate: float | None = typer.Option(None, "--rate", help="Messages per second (with --count)."),
    content_type: str | None = typer.Option(None, "--content-type"),
    response_topic: str | None = typer.Option(None, "--response-topic"),
    correlation_data: str | None = typer.Option(None, "--correlation-data"),
    message_expiry: int | None = typer.Option(None, "--message-expiry"),
    user_property: list[str] = UserProp,
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar or summary."),
    qos: int = Qos,
    *,
    conn: ConnectionOptions,
) -> None:
    """Publish messages (as mosquitto_pub)."""
    if topic is None and conn.url:
        try:
            topic = parse_url(conn.url).topic
        except MQTTClientError as exc:
            _die(str(exc))
    if not topic:
        _die("give a topic: -t TOPIC (or a URL with a path)")
    payloads = _messages(message, file, lines, stdin, null)
    props = Properties(
        content_type=content_type,
        response_topic=response_topic,
        correlation_data=correlation_data.encode() if correlation_data is not None else None,
        message_expiry_interval=message_expiry,
        user_properties=_user_props(user_property),
    )
    client = conn.client()

    async def source() -> AsyncIterator[bytes]:
        if payloads is not None:
            for _ in range(count):
                for p in payloads:
                    yield p
            return
        loop = asyncio.get_running_loop()
        while True:
            line = await loop.run_in_executor(None, sys.stdin.buffer.readline)
            if not line:
                return
            yield line.rstrip(b"\r\n")

    async def go() -> None:
        assert topic is not None
        async with client:
            sent = 0
            started = time.monotonic()
            bar = None
            if count > 1 and not quiet:
                from rich.console import Console
                from rich.progress import Progress

                bar = Progress(console=Console(stderr=True), transient=False)
                task = bar.add_task(f"publishing to {topic}", total=count)
                bar.start()
            try:
                async for payload in source():
                    if rate:
                        delay = started + sent / rate - time.monotonic()
                        if delay > 0:
                            await asyncio.sleep(delay)
                    await client.publish(topic, payload, qos=qos, retain=retain, properties=props)
                    sent += 1
                    if bar is not None:
                        bar.update(task, completed=sent)
            finally:
                if bar is not None:
                    bar.stop()
            if count > 1 and not quiet:
                took = max(time.monotonic() - started, 1e-9)
                typer.echo(
                    f"sent {sent} messages in {took:.2f}s ({sent / took:.0f} msg/s)", err=True
                )

    _run(go(), conn.timeout)


@connection_options(*ALL_CONNECTION_OPTIONS)
def sub(
    topic: list[str] = typer.Option([], "-t", "--topic", help="Filter (repeatable)."),
    count: int | None = typer.Option(None, "-C", "--count", help="Exit after N messages."),
    verbose: bool = typer.Option(False, "-v", "--verbose", help="Print 'topic payload'."),
    fmt: str | None = typer.Option(None, "-F", "--format", help="Output format (%t %p %q ...)."),
    as_json: bool = Json,
    retained_only: bool = typer.Option(
        False, "--retained-only", help="Exit at the first non-retained message."
    ),
    user_property: list[str] = UserProp,
    qos: int = Qos,
    *,
    conn: ConnectionOptions,
) -> None:
    """Subscribe and print messages (as mosquitto_sub)."""
    filters = list(topic)
    if not filters and conn.url:
        try:
            t = parse_url(conn.url).topic
        except MQTTClientError as exc:
            _die(str(exc))
        if t:
            filters = [t]
    if not filters:
        _die("give at least one filter: -t FILTER")
    client = conn.client()
    up = _user_props(user_property)

    async def go() -> None:
        async with client:
            subscription = await client.subscribe(
                *filters, qos=qos, properties=Properties(user_properties=up) if up else None
            )
            seen = 0
            async for m in subscription:
                if retained_only and not m.retain:
                    return
                if as_json:
                    line = _message_json(m)
                elif fmt is not None:
                    line = _format(fmt, m)
                elif verbose:
                    line = f"{m.topic} {m.text()}"
                else:
                    line = m.text()
                typer.echo(line)
                seen += 1
                if count is not None and seen >= count:
                    return

    _run(go(), conn.timeout)


@connection_options(*QUEUE_CONNECTION_OPTIONS, "version", "timeout")
def queue_publish(
    name: str = typer.Argument(..., help="Queue name."),
    message: str | None = typer.Option(None, "-m", "--message"),
    file: str | None = typer.Option(None, "-f", "--file"),
    routing_key: str = typer.Option("", "--key", help="Routing key ($queue/NAME/KEY)."),
    user_property: list[str] = UserProp,
    *,
    conn: ConnectionOptions,
) -> None:
    """Append a message to a durable queue (waits for the durable PUBACK)."""
    stdin = message is None and file is None
    payloads = _messages(message, file, False, stdin, False) or [b""]
    client = conn.client()
    up = _user_props(user_property)

    async def go() -> None:
        async with client:
            await client.publish_to_queue(
                name,
                payloads[0],
                key=routing_key,
                properties=Properties(user_properties=up) if up else None,
            )
            typer.echo(f"appended to queue {name}", err=True)

    _run(go(), conn.timeout)


# Always MQTT 5: groups, cursors and the delivery metadata are user properties.
@connection_options(*QUEUE_CONNECTION_OPTIONS, "client_id", "timeout")
def queue_consume(
    name: str = typer.Argument(..., help="Queue name."),
    group: str | None = typer.Option(None, "--group", "-g", help="Consumer group."),
    cursor: str | None = typer.Option(None, "--cursor", help="first, last, OFFSET or TIME."),
    settle: str = typer.Option(
        "ack", "--settle", help="ack, none or nack (also --ack/--no-ack/--nack)."
    ),
    ack: bool = typer.Option(False, "--ack", help="Acknowledge each message (default)."),
    no_ack: bool = typer.Option(False, "--no-ack", help="Leave messages unacknowledged."),
    nack: bool = typer.Option(False, "--nack", help="Nack each message (redelivered)."),
    count: int | None = typer.Option(None, "-C", "--count", help="Exit after N messages."),
    as_json: bool = Json,
    *,
    conn: ConnectionOptions,
) -> None:
    """Consume a queue in a consumer group, printing message id, offset and delivery count."""
    mode = "nack" if nack else "none" if no_ack else "ack" if ack else settle
    if mode not in ("ack", "none", "nack"):
        _die(f"--settle must be ack, none or nack, not {settle!r}")
    if cursor is not None and cursor not in ("first", "last"):
        if cursor.isdigit():
            cursor = f"offset:{cursor}"
        elif not cursor.startswith(("offset:", "timestamp:")):
            try:
                cursor = f"timestamp:{float(cursor)}"
            except ValueError:
                _die(f"--cursor must be first, last, an offset or a time, not {cursor!r}")
    client = conn.client()

    async def go() -> None:
        async with client:
            seen = 0
            async for qm in client.consume(name, group=group, cursor=cursor):
                typer.echo(_queue_line(qm, as_json))
                if mode == "ack":
                    await qm.ack()
                elif mode == "nack":
                    await qm.nack()
                seen += 1
                if count is not None and seen >= count:
                    return

    _run(go(), conn.timeout)


def _queue_line(qm: QueueMessage, as_json: bool) -> str:
    extra = {
        "message_id": qm.message_id,
        "offset": qm.offset,
        "delivery_count": qm.delivery_count,
        "group": qm.group,
    }
    if as_json:
        return _message_json(qm.message, extra)
    return f"{qm.message_id} offset={qm.offset} delivery={qm.delivery_count} {qm.message.text()}"


def register(app: typer.Typer, queue_app: typer.Typer) -> None:
    """The ``fluxmq.cli`` entry point: add the client commands to ``fluxmq``."""
    app.command("pub", context_settings=CTX)(pub)
    app.command("sub", context_settings=CTX)(sub)
    queue_app.command("publish", context_settings=CTX)(queue_publish)
    queue_app.command("consume", context_settings=CTX)(queue_consume)
