"""``fluxmq cluster status``: the nodes of a *running* broker's cluster.

Like ``fluxmq queue``, it asks the broker's admin HTTP API (``GET /api/v1/cluster``)
with ``--url`` and ``--token``, so it works the same whichever cluster driver runs
and never opens the broker's data directory. Exit codes as ``fluxmq queue``'s: 3
the broker could not be reached, 4 not authorized.
"""

from __future__ import annotations

import json
import time
from typing import Any

import typer

from fluxmq_core.queue_cli import AdminClient, JsonOpt, TokenOpt, UrlOpt, _table

cluster_app = typer.Typer(
    help="Inspect the cluster of a running broker (admin HTTP API).", no_args_is_help=True
)


@cluster_app.command("status")
def status(url: str = UrlOpt, token: str | None = TokenOpt, as_json: bool = JsonOpt) -> None:
    """List the cluster's nodes (id, address, alive, sessions, uptime) and its
    queues with the node that owns each."""
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
    rows = queue_rows(body)
    if rows:
        typer.echo("")
        typer.echo(_table(["QUEUE", "OWNER", "COPIES"], rows))
        typer.echo(
            "every queue has a single copy, on its owner (queue replication is not "
            "built): while the owner is down the queue is unavailable"
        )


def queue_rows(body: dict[str, Any]) -> list[list[Any]]:
    """One row per queue the answer names: the node that owns it (``queue_owners``,
    from the cluster's metadata; a queue this node holds without an owner record
    is its own) and how many copies it has. ``*`` marks the answering node."""
    here = body.get("node_id")
    owners: dict[str, str] = dict(body.get("queue_owners") or {})
    for name in body.get("queues_single_copy") or []:
        owners.setdefault(name, str(here))
    return [
        [name, owner + (" *" if owner == here else ""), 1] for name, owner in sorted(owners.items())
    ]
