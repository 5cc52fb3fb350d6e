"""The queue log's live tail: recent messages are read from memory, exactly as the
files would give them, as private copies, within a bound in bytes."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Any

import pytest
from fluxmq_badgerlike import BadgerlikeQueueLog
from fluxmq_badgerlike.codec import (
    MESSAGE_FIELDS,
    _encode_message_exact,
    decode_message,
    encode_message,
    encode_message_exact,
    message_from_snapshot,
    snapshot_message,
)
from fluxmq_badgerlike.queue_log import TAIL_ENTRY_OVERHEAD

from fluxmq_core.message import Message
from fluxmq_core.storage import StorageOptions
from fluxmq_core.testing.conformance import sample_message


def make(tmp_path: Path, **extra: Any) -> BadgerlikeQueueLog:
    return BadgerlikeQueueLog(StorageOptions(data_dir=str(tmp_path), extra=extra))


def consumed(log: BadgerlikeQueueLog, *queues: str) -> None:
    """Create the queues with a consumer group at offset 0 (the tail caches only
    queues with groups)."""
    for q in queues:
        log.create_queue(q, {})
        log.commit_offset(q, "g", 0)


def plain(i: int = 0, **changes: Any) -> Message:
    """A message the tail keeps as a snapshot: every value a plain scalar."""
    m = Message(
        f"$queue/orders/{i}",
        f"payload-{i}".encode(),
        1,
        properties={"amqp": b"\x10\x00\x02", "exchange": "", "priority": 3, "ratio": 0.5},
        user_properties=[("k", "v"), ("k", "v2")],
        content_type="text/plain",
        correlation_data=b"corr",
        response_topic="replies/1",
        payload_format=1,
        expires_at=2_000_000_000.5,
        origin_protocol="amqp091",
        origin_client=f"client-{i}",
        timestamp=1_700_000_000.25 + i,
    )
    for k, v in changes.items():
        setattr(m, k, v)
    return m


def fields(m: Message) -> list[tuple[Any, type]]:
    """Every field with its exact type (``==`` alone would take 1 for True)."""
    out = [(getattr(m, f), type(getattr(m, f))) for f in MESSAGE_FIELDS]
    if m.properties:
        out += [(v, type(v)) for v in m.properties.values()]
    if m.user_properties:
        out += [(p, type(p)) for pair in m.user_properties for p in pair]
    return out


class Level(enum.IntEnum):
    ONE = 1


class Text(str):
    pass


@pytest.mark.parametrize(
    "message",
    [
        plain(),
        Message("t", b"x"),
        Message("t", b"x", properties={}, user_properties=[]),
        plain(user_properties=None, properties=None, expires_at=None, timestamp=5),
        plain(properties={"big": 1 << 70, "neg": -(1 << 70), "none": None, "flag": True}),
    ],
)
def test_a_snapshot_is_what_the_codec_gives_back(message: Message) -> None:
    snap = snapshot_message(message)
    assert snap is not None
    back = message_from_snapshot(*snap)
    decoded = decode_message(encode_message(message))
    assert back == decoded and fields(back) == fields(decoded)
    assert back.encoded is None


@pytest.mark.parametrize(
    "changes",
    [
        {"properties": {"nested": {"a": 1}}},
        {"properties": {"tags": ["a"]}},
        {"properties": {"t": (1, 2)}},
        {"payload": bytearray(b"x")},
        {"qos": Level.ONE},
        {"topic": Text("t")},
        {"user_properties": [(Text("k"), "v")]},
        {"correlation_data": memoryview(b"c")},
    ],
)
def test_values_whose_round_trip_changes_them_get_no_snapshot(changes: dict[str, Any]) -> None:
    assert snapshot_message(plain(**changes)) is None


def test_every_message_slot_is_a_codec_field() -> None:
    # a new Message slot must be added to the codec and the snapshot as well
    assert set(Message.__slots__) == {*MESSAGE_FIELDS, "encoded"}


async def test_recent_messages_are_read_from_the_tail_as_private_copies(tmp_path: Path) -> None:
    log = make(tmp_path)
    await log.open()
    consumed(log, "q")
    originals = [plain(i) for i in range(5)]
    log.append_many("q", originals)
    originals[0].properties["amqp"] = b"changed"  # type: ignore[index]
    originals[0].user_properties.append(("x", "y"))  # type: ignore[union-attr]
    originals[1].topic = "elsewhere"
    rows = await log.read("q", 0, 10)
    assert [o for o, _ in rows] == [0, 1, 2, 3, 4]
    assert [m for _, m in rows] == [plain(i) for i in range(5)]
    assert log.tail_hits == 5 and log.tail_misses == 0
    rows[2][1].properties["amqp"] = b"mutated"  # type: ignore[index]
    rows[2][1].user_properties.append(("x", "y"))  # type: ignore[union-attr]
    rows[2][1].payload = b"other"
    assert await log.read("q", 2, 1) == [(2, plain(2))]
    await log.close()
    log = make(tmp_path)  # the files hold the same
    await log.open()
    assert await log.read("q", 0, 10) == [(i, plain(i)) for i in range(5)]
    assert log.tail_hits == 0 and log.tail_misses == 5
    await log.close()


async def test_messages_without_a_snapshot_are_kept_encoded(tmp_path: Path) -> None:
    log = make(tmp_path)
    await log.open()
    consumed(log, "q")
    nested = sample_message(0)  # a nested property: no exact snapshot
    log.append_many("q", [nested, plain(1)])
    nested.properties["nested"]["tags"].append("c")  # type: ignore[index]
    rows = await log.read("q", 0, 2)
    assert rows == [(0, sample_message(0)), (1, plain(1))]
    assert log.tail_hits == 2
    rows[0][1].properties["nested"]["tags"].append("d")  # type: ignore[index]
    assert await log.read("q", 0, 1) == [(0, sample_message(0))]
    await log.close()


async def test_the_bound_drops_the_oldest_and_reads_cross_into_the_files(tmp_path: Path) -> None:
    one = len(encode_message(plain(0))) + TAIL_ENTRY_OVERHEAD
    log = make(tmp_path, tail_cache_bytes=one * 3 + 10, segment_size=4096, index_interval=4)
    await log.open()
    consumed(log, "q")
    log.append_many("q", [plain(i) for i in range(40)])
    stats = log.stats()
    assert stats["tail_messages"] == 3
    assert one * 3 - 40 <= stats["tail_bytes"] <= one * 3 + 10
    assert await log.read("q", 30, 100) == [(i, plain(i)) for i in range(30, 40)]
    assert log.tail_misses == 7 and log.tail_hits == 3
    assert await log.read("q", 36, 2) == [(36, plain(36)), (37, plain(37))]
    await log.close()


async def test_the_least_recently_appended_queue_loses_its_tail_first(tmp_path: Path) -> None:
    one = len(encode_message(plain(0))) + TAIL_ENTRY_OVERHEAD
    log = make(tmp_path, tail_cache_bytes=one * 6)
    await log.open()
    consumed(log, "a", "b")
    log.append_many("a", [plain(i) for i in range(4)])
    log.append_many("b", [plain(i) for i in range(4)])
    assert len(log._queues["a"].tail.items) - log._queues["a"].tail.head == 2
    assert len(log._queues["b"].tail.items) - log._queues["b"].tail.head == 4
    assert await log.read("a", 0, 10) == [(i, plain(i)) for i in range(4)]
    assert await log.read("b", 0, 10) == [(i, plain(i)) for i in range(4)]
    assert log.tail_misses == 2 and log.tail_hits == 6
    await log.close()


async def test_commits_truncation_and_deletion_drop_tail_entries(tmp_path: Path) -> None:
    log = make(tmp_path)
    await log.open()
    log.create_queue("q", {})
    log.commit_offset("q", "g1", 0)
    log.append_many("q", [plain(i) for i in range(10)])
    log.commit_offset("q", "g1", 4)
    assert log.stats()["tail_messages"] == 6  # one group: 0-3 are settled
    log.commit_offset("q", "g2", 2)
    log.commit_offset("q", "g1", 8)
    assert log.stats()["tail_messages"] == 6  # g2 still needs 2 and 3 (read from files)
    log.commit_offset("q", "g2", 6)
    assert log.stats()["tail_messages"] == 4
    log.commit_offset("q", "g2", 1)  # going back: the files serve it
    assert await log.read("q", 1, 10) == [(i, plain(i)) for i in range(1, 10)]
    log.truncate_before("q", 8)
    assert log.stats()["tail_messages"] == 2
    assert await log.read("q", 0, 10) == [(8, plain(8)), (9, plain(9))]
    log.delete_queue("q")
    assert log.stats()["tail_bytes"] == 0
    consumed(log, "q")
    assert await log.read("q", 0, 10) == []
    log.append("q", plain(5))
    assert await log.read("q", 0, 10) == [(0, plain(5))]
    await log.close()


async def test_off_when_the_bound_is_zero(tmp_path: Path) -> None:
    log = make(tmp_path, tail_cache_bytes=0)
    await log.open()
    consumed(log, "q")
    log.append_many("q", [plain(i) for i in range(3)])
    assert log.stats()["tail_messages"] == 0
    assert await log.read("q", 0, 10) == [(i, plain(i)) for i in range(3)]
    assert log.tail_misses == 3 and log.tail_hits == 0
    await log.close()


def test_a_negative_bound_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="tail_cache_bytes"):
        make(tmp_path, tail_cache_bytes=-1)


@pytest.mark.parametrize(
    "message",
    [
        plain(user_properties=None, content_type=None, correlation_data=None,
              response_topic=None, payload_format=None, expires_at=None),
        Message("$queue/bench/x", b"x" * 64, 1, origin_protocol="mqtt", origin_client="p"),
        Message("t", b"", 0, True, properties={"priority": 3, "big": 1 << 70}),
        Message("t", b"x", properties={"f": 1.5, "n": None, "b": True}),
        Message("t", b"x", properties={1: "non-str key"}),  # type: ignore[dict-item]
        Message("t", b"x", 1 << 70),
        Message("t", b"x", timestamp=5),
        sample_message(3),
    ],
)  # fmt: skip
def test_the_common_shape_encodes_as_the_generic_path(message: Message) -> None:
    try:
        expected: Any = _encode_message_exact(message)
    except TypeError as exc:
        expected = str(exc)
    try:
        got: Any = encode_message_exact(message)
    except TypeError as exc:
        got = str(exc)
    assert got == expected
    if not isinstance(got, str):
        assert decode_message(got[0]) == message


@pytest.mark.parametrize(
    "message",
    [
        Message("$queue/bench/x", b"x" * 64, 1, origin_protocol="mqtt", origin_client="p"),
        Message("", b"body", 1, properties={"amqp": b"\x10", "exchange": "", "n": -5}),
        Message("t", b"", 0, True, properties={}),
        Message("t", b"x", properties={"f": 1.5}),
        Message("t", b"x", properties={"big": 1 << 70}),
        Message("t", b"x", timestamp=5),
        plain(),
        sample_message(3),
    ],
)
def test_the_common_shape_decodes_as_the_generic_path(message: Message) -> None:
    body = encode_message(message)
    decoded = decode_message(body)
    assert decoded == message
    assert fields(decoded) == fields(decode_message(bytearray(body)))  # the generic path
    for cut in (len(body) - 1, len(body) // 2):  # truncated: an error, not a wrong message
        with pytest.raises(ValueError):
            decode_message(body[:cut])


async def test_a_queue_without_consumer_groups_is_not_cached(tmp_path: Path) -> None:
    log = make(tmp_path)
    await log.open()
    log.create_queue("q", {})
    log.append_many("q", [plain(i) for i in range(3)])
    assert log.stats()["tail_messages"] == 0
    log.commit_offset("q", "g", 0)  # a group: appends from now on are kept
    log.append_many("q", [plain(i) for i in range(3, 6)])
    assert log.stats()["tail_messages"] == 3
    assert await log.read("q", 0, 10) == [(i, plain(i)) for i in range(6)]
    assert log.tail_misses == 3 and log.tail_hits == 3
    await log.close()
