"""The committed generated code is what ``proto/generate.py`` makes of the
committed ``.proto`` files: edit a ``.proto``, forget to regenerate, and this fails."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

PLUGIN = Path(__file__).resolve().parent.parent
COMMITTED = PLUGIN / "src" / "fluxmq_etcd" / "_proto"


def load_generator():
    pytest.importorskip("grpc_tools", reason="grpcio-tools is not installed (the test extra)")
    spec = importlib.util.spec_from_file_location(
        "_fluxmq_proto_generate", PLUGIN / "proto" / "generate.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_code_is_up_to_date(tmp_path: Path) -> None:
    generate = load_generator()
    written = generate.generate(tmp_path)
    assert written, "the generator wrote nothing"
    stale = []
    for fresh in written:
        committed = COMMITTED / fresh.name
        if not committed.exists() or committed.read_text() != fresh.read_text():
            stale.append(fresh.name)
    assert not stale, (
        f"{', '.join(stale)} differ from the .proto files: run "
        "`python plugins/fluxmq-etcd/proto/generate.py` and commit the result"
    )
    # No leftover module from a removed .proto.
    generated = {p.name for p in COMMITTED.glob("*_pb2*")}
    assert generated == {p.name for p in written}


def test_generated_module_imports_inside_the_package() -> None:
    from fluxmq_etcd._proto import cluster_pb2

    service = cluster_pb2.DESCRIPTOR.services_by_name["Cluster"]
    assert cluster_pb2.DESCRIPTOR.package == "fluxmq.cluster.v1"
    assert {m.name for m in service.methods} >= {"Forward", "TakeoverSession", "Ping"}
