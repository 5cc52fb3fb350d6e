"""The committed generated code is what ``proto/generate.py`` makes of the committed
``.proto``, and the ``.proto`` keeps the Go FluxMQ's wire contract."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

PLUGIN = Path(__file__).resolve().parent.parent
COMMITTED = PLUGIN / "src" / "fluxmq_queue_api" / "_proto"


def load_generator():
    pytest.importorskip("grpc_tools", reason="grpcio-tools is not installed (the test extra)")
    spec = importlib.util.spec_from_file_location(
        "_fluxmq_queue_api_proto_generate", PLUGIN / "proto" / "generate.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_code_is_up_to_date(tmp_path: Path) -> None:
    generate = load_generator()
    written = generate.generate(tmp_path)
    assert written, "the generator wrote nothing"
    stale = [
        p.name
        for p in written
        if not (COMMITTED / p.name).exists() or (COMMITTED / p.name).read_text() != p.read_text()
    ]
    assert not stale, (
        f"{', '.join(stale)} differ from the .proto files: run "
        "`python plugins/fluxmq-queue-api/proto/generate.py` and commit the result"
    )
    assert {p.name for p in COMMITTED.glob("*_pb2*")} == {p.name for p in written}


def test_wire_contract_of_the_go_fluxmq() -> None:
    """Spot checks of names and field numbers a Go-generated client depends on."""
    from fluxmq_queue_api._proto import queue_pb2 as pb

    assert pb.DESCRIPTOR.package == "fluxmq.queue.v1"
    service = pb.DESCRIPTOR.services_by_name["QueueService"]
    methods = {m.name: m for m in service.methods}
    assert len(methods) == 30
    assert methods["AppendQueue"].client_streaming and not methods["AppendQueue"].server_streaming
    assert methods["Tail"].server_streaming and methods["ConsumeQueue"].server_streaming
    assert methods["DeleteQueue"].output_type.full_name == "google.protobuf.Empty"

    def numbers(name: str) -> dict[str, int]:
        return {f.name: f.number for f in pb.DESCRIPTOR.message_types_by_name[name].fields}

    assert numbers("Message") == {
        "offset": 1,
        "timestamp": 2,
        "key": 3,
        "value": 4,
        "headers": 5,
        "delivery_info": 6,
    }
    assert numbers("AppendRequest") == {"queue_name": 1, "key": 2, "value": 3, "headers": 4}
    assert numbers("ConsumeRequest")["wait_time"] == 6
    assert numbers("QueueStats")["consumer_groups"] == 8
    assert numbers("ReplicationConfig")["group"] == 10
    assert numbers("QueueErrorDetail")["settlement_progress"] == 8
    assert numbers("ClaimRequest")["min_idle_time"] == 4
    tail = pb.DESCRIPTOR.message_types_by_name["TailRequest"]
    assert tail.enum_types_by_name["StartFrom"].values_by_name["START_FROM_OFFSET"].number == 3
