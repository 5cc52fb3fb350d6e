"""``fluxmq queue ...``: manage and inspect the queues of a *running* broker.

Every command talks to the broker's admin HTTP API (``/api/v1/queues``, see
``docs/http.md``): ``--url`` (default ``http://127.0.0.1:8080``) and ``--token``
(default ``$FLUXMQ_ADMIN_TOKEN``; needed when ``[http] admin_token`` is set, else the
API answers loopback clients only). Nothing here opens the broker's data directory,
so the durable driver's lock file is never in the way and the broker keeps running.

``fluxmq queue sql NAME "SELECT ..."`` exports the queue's log as JSON lines
(``GET /api/v1/queues/NAME/records``, read-only) into an in-memory DuckDB table
``messages`` (also reachable under the queue's name) with the columns ``msg_offset``
(not ``offset``: a SQL keyword that would need quoting), ``timestamp`` (TIMESTAMPTZ),
``topic``, ``payload`` (BLOB), ``payload_text`` (the payload as UTF-8 text, NULL when
it is not valid UTF-8), ``qos`` and ``properties`` (JSON), and runs the query. DuckDB is an optional extra: ``fluxmq-core[sql]``.

Exit codes: 0 success; 1 the broker refused the request (its reason is printed);
2 usage error; 3 the broker could not be reached; 4 not authorized (401/403);
5 no such queue (404); 6 the SQL failed or DuckDB is missing.
"""

from __future__ import annotations

import json
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, NoReturn

import typer

EXIT_REFUSED = 1
EXIT_UNREACHABLE = 3
EXIT_AUTH = 4
EXIT_NOT_FOUND = 5
EXIT_SQL = 6
DEFAULT_URL = "http://127.0.0.1:8080"
TIMEOUT = 30.0

queue_app = typer.Typer(
    help="Manage the queues of a running broker (admin HTTP API).", no_args_is_help=True
)

UrlOpt = typer.Option(DEFAULT_URL, "--url", help="The broker's HTTP listener.")
TokenOpt = typer.Option(
    None,
    "--token",
    envvar="FLUXMQ_ADMIN_TOKEN",
    help="Admin bearer token ([http] admin_token); default $FLUXMQ_ADMIN_TOKEN.",
)
JsonOpt = typer.Option(False, "--json", help="Print the API's JSON answer.")


def _fail(message: str, code: int) -> NoReturn:
    typer.echo(f"fluxmq: error: {message}", err=True)
    raise typer.Exit(code)


class AdminClient:
    """A tiny client of the admin API (stdlib only)."""

    def __init__(self, url: str, token: str | None) -> None:
        self.base = url.rstrip("/") + "/api/v1"
        self.token = token or None

    @staticmethod
    def path(name: str, *rest: str) -> str:
        return "/".join(("/queues", urllib.parse.quote(name, safe=""), *rest))

    def open(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            return urllib.request.urlopen(req, timeout=TIMEOUT)  # noqa: S310 - the user's URL
        except urllib.error.HTTPError as exc:
            try:
                reason = json.loads(exc.read() or b"{}").get("error") or exc.reason
            except ValueError:
                reason = exc.reason
            code = {401: EXIT_AUTH, 403: EXIT_AUTH, 404: EXIT_NOT_FOUND}.get(exc.code, EXIT_REFUSED)
            _fail(f"{method} {path}: HTTP {exc.code}: {reason}", code)
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            _fail(
                f"cannot reach the broker's admin API at {self.base}: {reason} "
                "(is the broker running with its HTTP listener? see --url)",
                EXIT_UNREACHABLE,
            )

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        with self.open(method, path, body) as resp:
            return resp.status, json.loads(resp.read() or b"null")


def _table(columns: list[str], rows: list[list[Any]]) -> str:
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bytes | bytearray):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return "0x" + bytes(value).hex()
    if isinstance(value, dict | list):
        return json.dumps(value, default=str)
    return str(value)


def _json_cell(value: Any) -> str | None:
    """As :func:`_cell`, but SQL NULL stays JSON null (``payload_text`` of a binary
    payload must not read as the text "-")."""
    return None if value is None else _cell(value)


def _option(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        _fail(f"--option takes key=value, got {text!r}", 2)
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    if key == "topics" and isinstance(value, str):
        value = [t.strip() for t in value.split(",") if t.strip()]
    return key, value


@queue_app.command("list")
def list_queues(url: str = UrlOpt, token: str | None = TokenOpt, as_json: bool = JsonOpt) -> None:
    """List the queues with their depth, consumers and groups."""
    _status, body = AdminClient(url, token).call("GET", "/queues")
    queues = body.get("queues", [])
    if as_json:
        typer.echo(json.dumps(body, indent=2))
        return
    if not queues:
        typer.echo("no queues")
        return
    typer.echo(
        _table(
            ["NAME", "TYPE", "DEPTH", "BYTES", "CONSUMERS", "GROUPS"],
            [
                [
                    q["name"],
                    q["type"],
                    q["depth"],
                    q["bytes"],
                    q["consumers"],
                    ",".join(g["name"] for g in q.get("groups", [])) or "-",
                ]
                for q in queues
            ],
        )
    )


@queue_app.command("info")
def info(
    name: str, url: str = UrlOpt, token: str | None = TokenOpt, as_json: bool = JsonOpt
) -> None:
    """Show one queue: offsets, settings and its consumer groups."""
    _status, q = AdminClient(url, token).call("GET", AdminClient.path(name))
    if as_json:
        typer.echo(json.dumps(q, indent=2))
        return
    typer.echo(
        f"queue {q['name']} ({q['type']}): {q['depth']} message(s), {q['bytes']} byte(s), "
        f"offsets {q['first_offset']}..{q['next_offset']}, {q['consumers']} consumer(s)"
    )
    if q.get("topics"):
        typer.echo(f"captures: {', '.join(q['topics'])}")
    config = q.get("config") or {}
    if config:
        typer.echo("config: " + ", ".join(f"{k}={_cell(v)}" for k, v in sorted(config.items())))
    groups = q.get("groups") or []
    if groups:
        typer.echo(
            _table(
                ["GROUP", "CONSUMERS", "PENDING", "LAG", "COMMITTED", "CURSOR", "FILTER"],
                [
                    [
                        g["name"],
                        g["consumers"],
                        g["pending"],
                        g["lag"],
                        g["committed"],
                        g["cursor"],
                        g.get("filter") or "#",
                    ]
                    for g in groups
                ],
            )
        )


@queue_app.command("create")
def create(
    name: str,
    type_: str = typer.Option("classic", "--type", help="classic, stream or ephemeral."),
    option: list[str] | None = typer.Option(
        None, "--option", "-o", help="A [queues.<name>] key: key=value (JSON values; repeatable)."
    ),
    url: str = UrlOpt,
    token: str | None = TokenOpt,
) -> None:
    """Declare a queue (no change when it exists with the same settings)."""
    body: dict[str, Any] = {"name": name, "type": type_}
    body.update(_option(o) for o in option or [])
    status, q = AdminClient(url, token).call("POST", "/queues", body)
    typer.echo(f"{'created' if status == 201 else 'exists'}: queue {q['name']} ({q['type']})")


@queue_app.command("delete")
def delete(name: str, url: str = UrlOpt, token: str | None = TokenOpt) -> None:
    """Delete a queue with its messages and groups (its dead-letter queue stays)."""
    AdminClient(url, token).call("DELETE", AdminClient.path(name))
    typer.echo(f"deleted: queue {name}")


@queue_app.command("purge")
def purge(name: str, url: str = UrlOpt, token: str | None = TokenOpt) -> None:
    """Remove every message of a queue (groups and consumers stay)."""
    _status, body = AdminClient(url, token).call("POST", AdminClient.path(name, "purge"))
    typer.echo(f"purged: {body['purged']} message(s) from queue {name}")


@queue_app.command("sql")
def sql(
    name: str,
    query: str,
    start: int | None = typer.Option(None, "--from", help="First offset to load."),
    limit: int = typer.Option(0, "--limit", help="Most records to load; 0 = all."),
    fmt: str = typer.Option("table", "--format", help="table, csv or json."),
    url: str = UrlOpt,
    token: str | None = TokenOpt,
) -> None:
    """Run DuckDB SQL over a queue's log, read from the running broker.

    The table `messages` (also named after the queue) has the columns msg_offset,
    timestamp, topic, payload (BLOB), payload_text (UTF-8 text; NULL when the payload
    is not valid UTF-8), qos and properties (JSON). Example: fluxmq queue sql orders
    "SELECT msg_offset, topic, payload_text FROM orders WHERE qos = 1"
    """
    try:
        import duckdb
    except ImportError:
        _fail(
            "`fluxmq queue sql` needs DuckDB: pip install 'fluxmq-core[sql]' "
            "(or: uv sync --extra sql)",
            EXIT_SQL,
        )
    if fmt not in ("table", "csv", "json"):
        _fail("--format must be table, csv or json", 2)
    client = AdminClient(url, token)
    params = {"limit": str(limit)}
    if start is not None:
        params["from"] = str(start)
    path = AdminClient.path(name, "records") + "?" + urllib.parse.urlencode(params)
    with tempfile.TemporaryDirectory(prefix="fluxmq-sql-") as tmp:
        dump = os.path.join(tmp, "records.jsonl")
        with client.open("GET", path) as resp, open(dump, "wb") as out:
            while chunk := resp.read(1 << 16):
                out.write(chunk)
        con = duckdb.connect()
        try:
            con.execute(LOAD_SQL, [dump])
            if name != "messages":
                con.execute(
                    f'CREATE VIEW "{name.replace(chr(34), chr(34) * 2)}" AS SELECT * FROM messages'
                )
            rel = con.sql(query)
            if rel is None:
                return
            columns = list(rel.columns)
            rows = [list(r) for r in rel.fetchall()]
        except duckdb.Error as exc:
            _fail(f"SQL failed: {exc}", EXIT_SQL)
        finally:
            con.close()
    if fmt == "json":
        typer.echo(
            json.dumps(
                [dict(zip(columns, map(_json_cell, r), strict=True)) for r in rows], indent=2
            )
        )
    elif fmt == "csv":
        import csv
        import sys

        w = csv.writer(sys.stdout)
        w.writerow(columns)
        w.writerows([_cell(v) for v in r] for r in rows)
    else:
        typer.echo(_table(columns, rows))
        typer.echo(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")


LOAD_SQL = """
CREATE TABLE messages AS
SELECT "offset" AS msg_offset, to_timestamp("timestamp") AS "timestamp", topic,
       from_base64(payload) AS payload, try(decode(from_base64(payload))) AS payload_text,
       qos, properties
FROM read_json(?, format = 'newline_delimited', columns = {
    'offset': 'BIGINT', 'timestamp': 'DOUBLE', 'topic': 'VARCHAR', 'payload': 'VARCHAR',
    'qos': 'INTEGER', 'properties': 'JSON'})
"""
