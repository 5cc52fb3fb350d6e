"""Regenerate ``fluxmq_queue_api/_proto`` from the ``.proto`` files beside this script.

Run from anywhere, with grpcio-tools installed (the ``test`` extra and the
workspace's dev group have it)::

    python plugins/fluxmq-queue-api/proto/generate.py

The output is committed so that an installed plugin needs only ``protobuf`` at run
time; ``tests/test_proto_generated.py`` regenerates into a temporary directory and
fails when the committed files differ. Only message code and type stubs are
generated: the service is served and called through grpc's generic handlers
(``fluxmq_queue_api.peers``), built from the service descriptor, so no ``_pb2_grpc``
module is needed.
"""

from __future__ import annotations

import sys
from pathlib import Path

from fluxmq_core.protogen import generate_protos

HERE = Path(__file__).resolve().parent
PROTOS = ("fluxmq/queue/v1/queue.proto",)
PACKAGE_DIR = HERE.parent / "src" / "fluxmq_queue_api" / "_proto"


def generate(out_dir: Path) -> list[Path]:
    """Write the generated modules into ``out_dir`` (flat: the import package is
    ``fluxmq_queue_api._proto``); return them."""
    return generate_protos(HERE, PROTOS, out_dir)


if __name__ == "__main__":
    for path in generate(PACKAGE_DIR):
        print(path.relative_to(HERE.parent))
    sys.exit(0)
