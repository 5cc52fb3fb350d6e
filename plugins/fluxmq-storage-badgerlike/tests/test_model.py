"""Random sequences of put, delete, GC and reopen (clean or crash) compared with a
dict: whatever the engine does internally, what it answers is what a dict would."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path

from fluxmq_badgerlike.engine import Engine, EngineOptions
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

keys = st.sampled_from([f"k{i}" for i in range(12)] + ["a/b", "%2F", "ü"])
ops = st.lists(
    st.one_of(
        st.tuples(st.just("put"), keys, st.binary(max_size=300)),
        st.tuples(st.just("delete"), keys, st.just(b"")),
        st.tuples(st.just("sync"), st.just(""), st.just(b"")),
        st.tuples(st.just("gc"), st.just(""), st.just(b"")),
        st.tuples(st.just("reopen"), st.just(""), st.just(b"")),
        st.tuples(st.just("crash"), st.just(""), st.just(b"")),
        st.tuples(st.just("checkpoint"), st.just(""), st.just(b"")),
    ),
    max_size=60,
)


def make(path: str) -> Engine:
    return Engine(path, "never", EngineOptions(segment_size=4096, gc_ratio=0.3))


async def run(path: str, sequence: list[tuple[str, str, bytes]]) -> None:
    model: dict[str, bytes] = {}
    engine = make(path)
    await engine.open()
    for op, key, value in sequence:
        if op == "put":
            engine.put(key, value)
            model[key] = value
        elif op == "delete":
            engine.delete(key)
            model.pop(key, None)
        elif op == "sync":
            await engine.sync()
        elif op == "gc":
            await engine.gc(max_segments=3)
        elif op == "checkpoint":
            await engine.checkpoint()
        elif op == "reopen":
            await engine.close()
            engine = make(path)
            await engine.open()
        elif op == "crash":  # after a sync, so every write reached the OS
            await engine.sync()
            engine._opened = False
            engine._task.cancel()  # type: ignore[union-attr]
            await engine.writer.close()
            engine._close_files()
            engine = make(path)
            await engine.open()
        assert {k: engine.get(k) for k in engine.keys()} == model
    await engine.close()
    engine = make(path)
    await engine.open()
    assert {k: engine.get(k) for k in engine.keys()} == model
    await engine.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops)
def test_engine_behaves_like_a_dict(sequence: list[tuple[str, str, bytes]]) -> None:
    path = tempfile.mkdtemp(prefix="badgerlike-model-")
    try:
        asyncio.run(run(path, sequence))
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_model_runs_in_a_fresh_directory(tmp_path: Path) -> None:
    asyncio.run(run(str(tmp_path), [("put", "k", b"v"), ("crash", "", b""), ("delete", "k", b"")]))
