"""The committed generated code of the callout contract is what
``fluxmq_core/callout/proto/generate.py`` makes of the committed ``.proto``, and the
contract keeps the Go FluxMQ's wire facts (package, services, field numbers)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

import fluxmq_core.callout

HERE = Path(fluxmq_core.callout.__file__).resolve().parent
COMMITTED = HERE / "_proto"


def test_generated_code_is_up_to_date(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools", reason="grpcio-tools is not installed (the dev group)")
    spec = importlib.util.spec_from_file_location(
        "_callout_generate", HERE / "proto" / "generate.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    written = module.generate(tmp_path)
    assert written
    stale = [
        p.name
        for p in written
        if not (COMMITTED / p.name).exists() or (COMMITTED / p.name).read_text() != p.read_text()
    ]
    assert not stale, (
        f"{', '.join(stale)} differ: run `python fluxmq_core/callout/proto/generate.py`"
    )


def test_wire_facts() -> None:
    pytest.importorskip("google.protobuf")
    from fluxmq_core.callout._proto import auth_pb2 as pb

    fd = pb.DESCRIPTOR
    assert fd.package == "fluxmq.auth.v1"
    assert [m.name for m in fd.services_by_name["AuthService"].methods] == [
        "Authenticate",
        "Authorize",
    ]
    assert [m.name for m in fd.services_by_name["HookService"].methods] == ["Handle"]
    numbers = {f.name: f.number for f in pb.AuthnRes.DESCRIPTOR.fields}
    assert numbers == {"authenticated": 1, "id": 2, "reason_code": 3, "reason": 4}
    assert {f.name: f.number for f in pb.AuthzReq.DESCRIPTOR.fields} == {
        "external_id": 1,
        "topic": 2,
        "action": 3,
    }
    assert pb.HookRes.DESCRIPTOR.fields_by_name["external_id"].number == 12
