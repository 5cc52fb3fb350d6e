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

HERE = Path(__file__).resolve().parent
PROTOS = ("fluxmq/auth/v1/auth.proto",)
PACKAGE_DIR = HERE.parent / "_proto"


def generate(out_dir: Path) -> list[Path]:
    """Write ``<name>_pb2.py`` for every proto into
    ``out_dir`` (flat: the import package is ``fluxmq_core.callout._proto``); return them."""
    from grpc_tools import protoc  # the build tool; not a runtime dependency

    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / ".gen"
    tmp.mkdir(exist_ok=True)
    include = Path(protoc.__file__).resolve().parent / "_proto"
    args = ["protoc", f"-I{HERE}", f"-I{include}", f"--python_out={tmp}"]
    if protoc.main([*args, *PROTOS]) != 0:
        raise RuntimeError(f"protoc failed on {', '.join(PROTOS)}")
    written = []
    for proto in PROTOS:
        stem = Path(proto).with_suffix("")
        # No .pyi: the contract's enum value ``Action.None`` is a Python keyword, which
        # makes the generated stub a syntax error for type checkers.
        for suffix in ("_pb2.py",):
            src = tmp / f"{stem}{suffix}"
            dst = out_dir / f"{stem.name}{suffix}"
            # One proto file, no imports between generated modules: nothing to make
            # package-relative. A second file importing the first would need its
            # "from fluxmq.auth.v1 import x_pb2" rewritten here.
            dst.write_text(src.read_text())
            written.append(dst)
    _rmtree(tmp)
    return written


def _rmtree(path: Path) -> None:
    for child in path.iterdir():
        if child.is_dir():
            _rmtree(child)
        else:
            child.unlink()
    path.rmdir()


if __name__ == "__main__":
    for path in generate(PACKAGE_DIR):
        print(path.relative_to(HERE.parent))
    sys.exit(0)
