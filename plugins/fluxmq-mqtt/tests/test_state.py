"""The state tables, and that the sans-IO modules import no asyncio."""

from __future__ import annotations

import ast
from pathlib import Path

from fluxmq_mqtt import state
from fluxmq_mqtt.codec import Connect, Puback, Pubcomp, Publish, Pubrec, Pubrel
from fluxmq_mqtt.state import ALLOWED, RESEND, Phase, QoSState, next_outbound


def test_phases():
    assert ALLOWED[Phase.AWAIT_CONNECT] == {Connect}
    assert Connect not in ALLOWED[Phase.CONNECTED]
    assert Publish not in ALLOWED[Phase.AUTHENTICATING]
    assert not ALLOWED[Phase.CLOSED]


def test_outbound_flows():
    assert next_outbound(1, QoSState.SENT_PUBLISH, Puback) is QoSState.DONE
    assert next_outbound(2, QoSState.SENT_PUBLISH, Pubrec) is QoSState.SENT_PUBREL
    assert next_outbound(2, QoSState.SENT_PUBREL, Pubcomp) is QoSState.DONE
    assert next_outbound(2, QoSState.SENT_PUBLISH, Pubcomp) is None
    assert RESEND[QoSState.SENT_PUBREL] is Pubrel


def test_sans_io_modules_have_no_io_imports():
    """The core imports asyncio itself (its context holds an ``asyncio.Event``), so
    the check is on our source: no I/O framework, socket or clock module imported."""
    forbidden = {"asyncio", "anyio", "trio", "socket", "selectors", "uvloop", "threading"}
    pkg = Path(state.__file__).parent
    for name in (
        "state.py",
        "session.py",
        "connection.py",
        "registry.py",
        "outbound.py",
        "acks.py",
        "limits.py",
    ):
        tree = ast.parse((pkg / name).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                roots = {node.module.split(".")[0]}
            else:
                continue
            assert not roots & forbidden, f"{name} imports {roots & forbidden}"
