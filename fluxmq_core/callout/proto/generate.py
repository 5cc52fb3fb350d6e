"""Regenerate ``fluxmq_core/callout/_proto`` from the ``.proto`` files beside this script.

Run from anywhere, with grpcio-tools installed (the ``test`` extra and the
workspace's dev group have it)::

    python fluxmq_core/callout/proto/generate.py

The output is committed and imported only when ``[auth_external] transport = "grpc"``
(which then needs ``grpcio`` and ``protobuf`` installed; the core does not depend on
them). ``tests/core/test_callout_proto.py`` regenerates into a temporary directory and
fails when the committed files differ. Only message code is
generated: the client calls the methods through grpc's generic ``unary_unary``
(``fluxmq_core.callout.transport``), so no ``_pb2_grpc`` module is needed.
"""

from __future__ import annotations

import sys
from pathlib import Path

from fluxmq_core.protogen import generate_protos

HERE = Path(__file__).resolve().parent
PROTOS = ("fluxmq/auth/v1/auth.proto",)
PACKAGE_DIR = HERE.parent / "_proto"


def generate(out_dir: Path) -> list[Path]:
    """Write the generated modules into ``out_dir`` (flat: the import package is
    ``fluxmq_core.callout._proto``); return them. No type stubs: the contract's
    enum value ``Action.None`` is a Python keyword, which makes a generated stub a
    syntax error for type checkers."""
    return generate_protos(HERE, PROTOS, out_dir, stubs=False)


if __name__ == "__main__":
    for path in generate(PACKAGE_DIR):
        print(path.relative_to(HERE.parent))
    sys.exit(0)
