"""``fluxmq cluster status``: the nodes of a *running* broker's cluster.

Like ``fluxmq queue``, it asks the broker's admin HTTP API (``GET /api/v1/cluster``)
with ``--url`` and ``--token``, so it works the same whichever cluster driver runs
and never opens the broker's data directory. Exit codes as ``fluxmq queue``'s: 3
the broker could not be reached, 4 not authorized.
"""

from __future__ import annotations

import json
import time

import typer

from fluxmq_core.queue_cli import AdminClient, JsonOpt, TokenOpt, UrlOpt, _table

cluster_app = typer.Typer(
    help="Inspect the cluster of a running broker (admin HTTP API).", no_args_is_help=True
)


@cluster_app.command("status")
def status(url: str = UrlOpt, token: str | None = TokenOpt, as_json: bool = JsonOpt) -> None:
    """List the cluster's nodes: id, address, alive, sessions, uptime."""
    _code, body = AdminClient(url, token).call("GET", "/cluster")
    if as_json:
        typer.echo(json.dumps(body, indent=2))
        return
    ready = "ready" if body.get("ready") else "NOT READY"
    typer.echo(f"driver {body.get('driver')}, node {body.get('node_id')}: {ready}")
    now = time.time()
    rows = []
    for n in body.get("nodes", []):
        started = n.get("started")
        up = f"{max(0.0, now - started):.0f}s" if started else None
        rows.append(
            [
                n.get("node_id", "") + (" *" if n.get("local") else ""),
                n.get("address") or None,
                "yes" if n.get("alive") else "no",
                n.get("sessions"),
                up,
            ]
        )
    typer.echo(_table(["NODE", "ADDRESS", "ALIVE", "SESSIONS", "UP"], rows))
    single = body.get("queues_single_copy") or []
    if single:
        typer.echo(f"queues with a single copy (on this node only): {', '.join(single)}")
