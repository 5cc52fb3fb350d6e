"""Generate Python message code from ``.proto`` files, for the contracts whose code
is committed (the cluster protocol, the queue API, the auth callout).

Each owner keeps a small ``proto/generate.py`` naming its files and where the code
goes; this module does the work so that every copy generates the same way, and a
regenerate-and-diff test in each owner's suite compares against what is committed.
Only message modules (and optionally type stubs) are written: services are served
and called through grpc's generic handlers, so no ``_pb2_grpc`` module is needed.
``grpcio-tools`` is a build tool, imported here only when generating.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

__all__ = ["generate_protos"]


def generate_protos(
    proto_root: Path, protos: Sequence[str], out_dir: Path, *, stubs: bool = True
) -> list[Path]:
    """Write ``<name>_pb2.py`` (and ``<name>_pb2.pyi`` with ``stubs``) for each of
    ``protos`` (paths under ``proto_root``) flat into ``out_dir``; return them.

    Flat output means the generated modules import nothing from each other: with
    one file per contract there is nothing to rewrite to package-relative imports.
    """
    from grpc_tools import protoc  # the build tool; not a runtime dependency

    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / ".gen"
    tmp.mkdir(exist_ok=True)
    include = Path(protoc.__file__).resolve().parent / "_proto"
    args = ["protoc", f"-I{proto_root}", f"-I{include}", f"--python_out={tmp}"]
    if stubs:
        args.append(f"--pyi_out={tmp}")
    try:
        if protoc.main([*args, *protos]) != 0:
            raise RuntimeError(f"protoc failed on {', '.join(protos)}")
        written = []
        suffixes = ("_pb2.py", "_pb2.pyi") if stubs else ("_pb2.py",)
        for proto in protos:
            stem = Path(proto).with_suffix("")
            for suffix in suffixes:
                dst = out_dir / f"{stem.name}{suffix}"
                dst.write_text((tmp / f"{stem}{suffix}").read_text())
                written.append(dst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return written
