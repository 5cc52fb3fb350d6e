"""The storage-driver conformance suite: the behaviour every BrokerStore and
QueueLog driver must show, as two reusable pytest base classes.

A driver distribution subclasses them in its own tests and supplies a factory::

    from fluxmq_core.storage import StorageOptions
    from fluxmq_core.testing.conformance import BrokerStoreConformance

    class TestMyBrokerStore(BrokerStoreConformance):
        def make_store(self, tmp_path):
            return MyBrokerStore(StorageOptions(data_dir=str(tmp_path)))

        def reopen(self, store, tmp_path):   # durable drivers only
            return MyBrokerStore(store.options)

``make_store`` returns an unopened driver; the suite opens and closes it.
``reopen`` is called after ``store`` was closed and returns a fresh, unopened
instance on the same data directory; the default returns ``None``, which skips
the persistence tests with "driver is not durable". ``QueueLogConformance`` is the
same with ``make_log``.

The tests are ``async def`` and need pytest-asyncio (not a runtime dependency of
fluxmq-core: add it to your test dependencies). The classes carry the ``asyncio``
mark, so they run under ``asyncio_mode = "auto"`` (as in this project) and under
strict mode alike. Assertion messages are most helpful when pytest rewrites this
module: call ``pytest.register_assert_rewrite("fluxmq_core.testing.conformance")``
in a ``conftest.py`` before importing it.

What the suite deliberately does not test: speed, fsync placement and crash
recovery of a torn tail. Those depend on a driver's file format; a durable driver
tests them itself (killing a writer process, truncating files) beside this suite.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from fluxmq_core.message import Message
from fluxmq_core.storage.base import BrokerStore, PendingEntry, QueueLog, UnknownQueueError

__all__ = ["BrokerStoreConformance", "QueueLogConformance", "sample_message"]


def _props(message: Message) -> dict[str, Any]:
    """A sample message's protocol properties (it always has some)."""
    assert message.properties is not None
    return message.properties


def _user_props(message: Message) -> list[tuple[str, str]]:
    """A sample message's user properties (it always has some)."""
    assert message.user_properties is not None
    return message.user_properties


def sample_message(i: int = 0, **changes: Any) -> Message:
    """A message with every field set to a non-default, storable value."""
    m = Message(
        f"sensors/{i}/temp",
        f"payload-{i}".encode(),
        qos=1,
        retain=False,
        properties={"priority": 3, "nested": {"tags": ["a", "b"], "raw": b"\x00\xff"}},
        user_properties=[("k", "v"), ("k", "v2")],
        content_type="text/plain",
        correlation_data=b"corr",
        response_topic="replies/1",
        payload_format=1,
        expires_at=2_000_000_000.5,
        origin_protocol="mqtt",
        origin_client=f"client-{i}",
        timestamp=1_700_000_000.25 + i,
    )
    for k, v in changes.items():
        setattr(m, k, v)
    return m


def _record() -> dict[str, Any]:
    """A record using every storable kind of value."""
    return {
        "str": "s",
        "int": 7,
        "float": 1.5,
        "true": True,
        "none": None,
        "bytes": b"\x00\x01",
        "list": [1, "two", b"3", None],
        "nested": {"deep": {"x": [1.25]}},
    }


class _Conformance:
    pytestmark = pytest.mark.asyncio

    #: Methods of the interface that must be plain ``def`` (writes and O(1)
    #: counters) and those that must be ``async def`` (reads).
    _PLAIN: tuple[str, ...] = ()
    _ASYNC: tuple[str, ...] = ()
    _FACTORY = "make_store"

    def reopen(self, store: Any, tmp_path: Path) -> Any:
        """A fresh, unopened instance on ``store``'s data (``store`` is closed
        already), or ``None`` for a non-durable driver."""
        return None

    def _make(self, tmp_path: Path) -> Any:
        return getattr(self, self._FACTORY)(tmp_path)

    async def _across_reopen(
        self,
        tmp_path: Path,
        write: Callable[[Any], Any],
        check: Callable[[Any, Any], Awaitable[None]],
        *,
        sync: bool = True,
    ) -> None:
        """Run ``write(store)``, optionally ``sync()``, close, reopen, then
        ``await check(reopened, value_returned_by_write)``."""
        first = self._make(tmp_path)
        await first.open()
        try:
            written = write(first)
            if sync:
                await first.sync()
        finally:
            await first.close()
        second = self.reopen(first, tmp_path)
        if second is None:
            pytest.skip("driver is not durable")
        await second.open()
        try:
            await check(second, written)
        finally:
            await second.close()

    def _check_method_kinds(self, driver: Any) -> None:
        for name in self._PLAIN:
            fn = getattr(type(driver), name)
            assert not inspect.iscoroutinefunction(fn), f"{name} must be a plain def"
        for name in (*self._ASYNC, "open", "close", "sync"):
            fn = getattr(type(driver), name)
            assert inspect.iscoroutinefunction(fn), f"{name} must be async def"


class BrokerStoreConformance(_Conformance):
    """Behaviour every :class:`~fluxmq_core.storage.base.BrokerStore` must show.

    Subclass it as ``Test...`` and implement :meth:`make_store` (and
    :meth:`reopen` for a durable driver).
    """

    _PLAIN = (
        "save_session", "delete_session", "save_subscription", "delete_subscription",
        "save_retained", "delete_retained", "save_will", "delete_will", "enqueue",
        "remove_queued", "queue_length", "drop_oldest", "save_inflight", "delete_inflight",
        "stats",
    )  # fmt: skip
    _ASYNC = (
        "load_session", "list_sessions", "load_subscriptions", "load_retained",
        "load_wills", "queued", "load_inflight",
    )  # fmt: skip

    def make_store(self, tmp_path: Path) -> BrokerStore:
        """Return a new, unopened driver whose data lives under ``tmp_path``."""
        raise NotImplementedError("subclass BrokerStoreConformance and define make_store()")

    @pytest_asyncio.fixture
    async def store(self, tmp_path: Path) -> Any:
        s = self.make_store(tmp_path)
        await s.open()
        try:
            yield s
        finally:
            await s.close()

    # --- the contract's shape -------------------------------------------------------

    async def test_is_a_broker_store_with_a_name(self, store: BrokerStore) -> None:
        assert isinstance(store, BrokerStore)
        assert isinstance(store.name, str) and store.name

    async def test_writes_are_plain_def_and_reads_are_async(self, store: BrokerStore) -> None:
        self._check_method_kinds(store)

    async def test_sync_resolves_empty_after_writes_and_concurrently(
        self, store: BrokerStore
    ) -> None:
        await store.sync()
        waiters = []
        for i in range(20):
            store.save_session(f"c{i}", {"i": i})
            store.enqueue(f"c{i}", sample_message(i))
            waiters.append(store.sync())
        assert await asyncio.gather(*waiters) == [None] * 20
        assert len(await store.list_sessions()) == 20

    async def test_stats_are_ints(self, store: BrokerStore) -> None:
        store.save_session("c", {})
        store.enqueue("c", sample_message())
        stats = store.stats()
        assert isinstance(stats, dict)
        assert all(isinstance(k, str) and type(v) is int for k, v in stats.items())

    async def test_reads_see_writes_before_sync(self, store: BrokerStore) -> None:
        store.save_session("c", {"a": 1})
        store.save_retained(sample_message())
        assert await store.load_session("c") == {"a": 1}
        assert await store.load_retained() == [sample_message()]

    # --- sessions -------------------------------------------------------------------

    async def test_session_round_trip(self, store: BrokerStore) -> None:
        store.save_session("c1", _record())
        assert await store.load_session("c1") == _record()

    async def test_load_missing_session_is_none(self, store: BrokerStore) -> None:
        assert await store.load_session("nobody") is None

    async def test_save_session_replaces(self, store: BrokerStore) -> None:
        store.save_session("c1", {"v": 1, "old": True})
        store.save_session("c1", {"v": 2})
        assert await store.load_session("c1") == {"v": 2}

    async def test_list_sessions(self, store: BrokerStore) -> None:
        assert await store.list_sessions() == []
        for cid in ("a", "b", "c"):
            store.save_session(cid, {})
        store.delete_session("b")
        assert sorted(await store.list_sessions()) == ["a", "c"]

    async def test_delete_session_cascades_to_client_state(self, store: BrokerStore) -> None:
        for cid in ("gone", "kept"):
            store.save_session(cid, {"cid": cid})
            store.save_subscription(cid, "a/#", {"qos": 1})
            store.enqueue(cid, sample_message())
            store.save_inflight(cid, 1, {"qos": 1})
            store.save_will(cid, sample_message(topic=f"will/{cid}"), 10.0)
        store.save_retained(sample_message(topic="r/gone", origin_client="gone"))
        store.delete_session("gone")
        assert await store.load_session("gone") is None
        assert await store.load_subscriptions("gone") == {}
        assert await store.queued("gone") == []
        assert store.queue_length("gone") == 0
        assert await store.load_inflight("gone") == {}
        # The will and retained messages outlive the session: the session layer
        # decides when a will fires.
        assert sorted(cid for cid, _, _ in await store.load_wills()) == ["gone", "kept"]
        assert [m.topic for m in await store.load_retained()] == ["r/gone"]
        # Other clients are untouched.
        assert await store.load_session("kept") == {"cid": "kept"}
        assert await store.load_subscriptions("kept") == {"a/#": {"qos": 1}}
        assert store.queue_length("kept") == 1
        assert await store.load_inflight("kept") == {1: {"qos": 1}}

    async def test_delete_unknown_session_is_a_no_op(self, store: BrokerStore) -> None:
        store.delete_session("nobody")
        assert await store.list_sessions() == []

    async def test_session_record_is_copied_on_save_and_load(self, store: BrokerStore) -> None:
        record = _record()
        store.save_session("c", record)
        record["str"] = "changed"
        record["nested"]["deep"]["x"].append(99)
        loaded = await store.load_session("c")
        assert loaded == _record()
        loaded["list"].append("mutated")
        loaded["nested"]["deep"] = None
        assert await store.load_session("c") == _record()

    # --- subscriptions --------------------------------------------------------------

    async def test_subscription_round_trip_and_replace(self, store: BrokerStore) -> None:
        store.save_subscription("c", "a/+", {"qos": 1, "no_local": False})
        store.save_subscription("c", "$share/g/b/#", {"qos": 2, "subscription_id": 7})
        store.save_subscription("c", "a/+", {"qos": 0})
        assert await store.load_subscriptions("c") == {
            "a/+": {"qos": 0},
            "$share/g/b/#": {"qos": 2, "subscription_id": 7},
        }

    async def test_subscriptions_are_per_client(self, store: BrokerStore) -> None:
        store.save_subscription("c1", "x", {"qos": 1})
        store.save_subscription("c2", "y", {"qos": 2})
        assert await store.load_subscriptions("c1") == {"x": {"qos": 1}}
        assert await store.load_subscriptions("c2") == {"y": {"qos": 2}}
        assert await store.load_subscriptions("c3") == {}

    async def test_delete_subscription(self, store: BrokerStore) -> None:
        store.save_subscription("c", "a", {})
        store.save_subscription("c", "b", {})
        store.delete_subscription("c", "a")
        store.delete_subscription("c", "unknown")
        store.delete_subscription("nobody", "a")
        assert await store.load_subscriptions("c") == {"b": {}}
        store.delete_subscription("c", "b")
        assert await store.load_subscriptions("c") == {}

    async def test_subscription_options_are_copied(self, store: BrokerStore) -> None:
        ids = [1]
        options: dict[str, Any] = {"qos": 1, "ids": ids}
        store.save_subscription("c", "a", options)
        ids.append(2)
        loaded = await store.load_subscriptions("c")
        loaded["a"]["qos"] = 2
        assert await store.load_subscriptions("c") == {"a": {"qos": 1, "ids": [1]}}

    # --- retained -------------------------------------------------------------------

    async def test_retained_round_trip_keeps_every_field(self, store: BrokerStore) -> None:
        store.save_retained(sample_message(1, retain=True))
        store.save_retained(sample_message(2, retain=True))
        loaded = sorted(await store.load_retained(), key=lambda m: m.topic)
        assert loaded == [sample_message(1, retain=True), sample_message(2, retain=True)]
        assert all(isinstance(m, Message) for m in loaded)

    async def test_retained_is_one_per_topic(self, store: BrokerStore) -> None:
        store.save_retained(sample_message(topic="t", payload=b"old"))
        store.save_retained(sample_message(topic="t", payload=b"new"))
        assert [m.payload for m in await store.load_retained()] == [b"new"]

    async def test_delete_retained(self, store: BrokerStore) -> None:
        store.save_retained(sample_message(topic="a"))
        store.save_retained(sample_message(topic="b"))
        store.delete_retained("a")
        store.delete_retained("unknown")
        assert [m.topic for m in await store.load_retained()] == ["b"]

    async def test_retained_message_is_copied(self, store: BrokerStore) -> None:
        message = sample_message()
        store.save_retained(message)
        message.payload = b"changed"
        _props(message)["priority"] = 9
        _props(message)["nested"]["tags"].append("c")
        _user_props(message).append(("x", "y"))
        [loaded] = await store.load_retained()
        assert loaded == sample_message()
        _props(loaded)["priority"] = 0
        _user_props(loaded).clear()
        assert await store.load_retained() == [sample_message()]

    # --- wills ----------------------------------------------------------------------

    async def test_will_round_trip_replace_and_delete(self, store: BrokerStore) -> None:
        store.save_will("a", sample_message(1), 100.5)
        store.save_will("b", sample_message(2), 200.0)
        store.save_will("a", sample_message(3), 300.25)
        wills = sorted(await store.load_wills(), key=lambda w: w[0])
        assert wills == [("a", sample_message(3), 300.25), ("b", sample_message(2), 200.0)]
        store.delete_will("a")
        store.delete_will("unknown")
        assert [w[0] for w in await store.load_wills()] == ["b"]

    async def test_will_message_is_copied(self, store: BrokerStore) -> None:
        message = sample_message()
        store.save_will("c", message, 1.0)
        message.topic = "changed"
        _props(message)["priority"] = 0
        [(_, loaded, _)] = await store.load_wills()
        assert loaded == sample_message()

    # --- offline queues -------------------------------------------------------------

    async def test_enqueue_returns_increasing_seqs_per_client(self, store: BrokerStore) -> None:
        a = [store.enqueue("a", sample_message(i)) for i in range(5)]
        b = [store.enqueue("b", sample_message(i)) for i in range(3)]
        assert all(isinstance(s, int) for s in a + b)
        assert a == sorted(set(a)) and b == sorted(set(b))

    async def test_queued_is_oldest_first_with_limit(self, store: BrokerStore) -> None:
        seqs = [store.enqueue("c", sample_message(i)) for i in range(5)]
        everything = await store.queued("c")
        assert everything == [(s, sample_message(i)) for i, s in enumerate(seqs)]
        assert await store.queued("c", 2) == everything[:2]
        assert await store.queued("c", 0) == []
        assert await store.queued("c", 50) == everything
        assert await store.queued("nobody") == []

    async def test_queued_does_not_remove(self, store: BrokerStore) -> None:
        store.enqueue("c", sample_message())
        await store.queued("c")
        assert store.queue_length("c") == 1
        assert len(await store.queued("c")) == 1

    async def test_remove_queued(self, store: BrokerStore) -> None:
        seqs = [store.enqueue("c", sample_message(i)) for i in range(5)]
        store.remove_queued("c", (s for s in (seqs[0], seqs[2])))  # any iterable
        store.remove_queued("c", [seqs[-1] + 1000])  # unknown: ignored
        store.remove_queued("nobody", [seqs[1]])
        assert [s for s, _ in await store.queued("c")] == [seqs[1], seqs[3], seqs[4]]
        assert store.queue_length("c") == 3

    async def test_queue_length(self, store: BrokerStore) -> None:
        assert store.queue_length("c") == 0
        for i in range(3):
            store.enqueue("c", sample_message(i))
        assert store.queue_length("c") == 3
        assert store.queue_length("other") == 0

    async def test_drop_oldest(self, store: BrokerStore) -> None:
        assert store.drop_oldest("c") is None
        seqs = [store.enqueue("c", sample_message(i)) for i in range(3)]
        assert store.drop_oldest("c") == sample_message(0)
        assert store.queue_length("c") == 2
        assert [s for s, _ in await store.queued("c")] == seqs[1:]
        assert store.drop_oldest("c") == sample_message(1)
        assert store.drop_oldest("c") == sample_message(2)
        assert store.drop_oldest("c") is None
        assert store.queue_length("c") == 0

    async def test_seqs_are_not_reused_after_removal_and_drops(self, store: BrokerStore) -> None:
        first = store.enqueue("c", sample_message(0))
        second = store.enqueue("c", sample_message(1))
        store.remove_queued("c", [second])
        store.drop_oldest("c")
        assert store.queue_length("c") == 0
        third = store.enqueue("c", sample_message(2))
        assert third > second > first

    async def test_long_queue_drains_in_order(self, store: BrokerStore) -> None:
        seqs = [store.enqueue("c", sample_message(i)) for i in range(1000)]
        for i in range(500):
            assert store.drop_oldest("c") == sample_message(i)
        store.remove_queued("c", seqs[500:900])
        assert [s for s, _ in await store.queued("c", 3)] == seqs[900:903]
        assert store.queue_length("c") == 100

    async def test_queued_message_is_copied(self, store: BrokerStore) -> None:
        message = sample_message()
        store.enqueue("c", message)
        _props(message)["priority"] = 0
        [(seq, loaded)] = await store.queued("c")
        assert loaded == sample_message()
        _user_props(loaded).append(("x", "y"))
        assert await store.queued("c") == [(seq, sample_message())]

    # --- in-flight ------------------------------------------------------------------

    async def test_inflight_round_trip_replace_and_delete(self, store: BrokerStore) -> None:
        rec = {"direction": "out", "qos": 2, "phase": "publish", "message": {"topic": "t"}}
        store.save_inflight("c", 1, rec)
        store.save_inflight("c", 65535, {"direction": "in", "qos": 2, "phase": "pubrec"})
        store.save_inflight("c", 1, {**rec, "phase": "pubrel"})
        assert await store.load_inflight("c") == {
            1: {**rec, "phase": "pubrel"},
            65535: {"direction": "in", "qos": 2, "phase": "pubrec"},
        }
        store.delete_inflight("c", 1)
        store.delete_inflight("c", 2)
        store.delete_inflight("nobody", 1)
        assert await store.load_inflight("c") == {
            65535: {"direction": "in", "qos": 2, "phase": "pubrec"}
        }

    async def test_inflight_is_per_client(self, store: BrokerStore) -> None:
        store.save_inflight("a", 1, {"who": "a"})
        store.save_inflight("b", 1, {"who": "b"})
        assert await store.load_inflight("a") == {1: {"who": "a"}}
        assert await store.load_inflight("b") == {1: {"who": "b"}}
        assert await store.load_inflight("c") == {}

    async def test_inflight_record_holds_a_message_dict(self, store: BrokerStore) -> None:
        store.save_inflight("c", 9, {"qos": 1, "message": sample_message().to_dict()})
        loaded = await store.load_inflight("c")
        assert Message.from_dict(loaded[9]["message"]) == sample_message()

    async def test_inflight_record_is_copied(self, store: BrokerStore) -> None:
        rec = _record()
        store.save_inflight("c", 1, rec)
        rec["list"].clear()
        loaded = await store.load_inflight("c")
        loaded[1]["nested"]["deep"]["x"] = []
        assert await store.load_inflight("c") == {1: _record()}

    # --- persistence (durable drivers only) -----------------------------------------

    async def test_persists_sessions_and_subscriptions(self, tmp_path: Path) -> None:
        def write(s: BrokerStore) -> None:
            s.save_session("a", _record())
            s.save_session("b", {"v": 1})
            s.save_subscription("a", "x/#", {"qos": 2})

        async def check(s: BrokerStore, _: Any) -> None:
            assert sorted(await s.list_sessions()) == ["a", "b"]
            assert await s.load_session("a") == _record()
            assert await s.load_subscriptions("a") == {"x/#": {"qos": 2}}

        await self._across_reopen(tmp_path, write, check)

    async def test_persists_retained_and_wills(self, tmp_path: Path) -> None:
        def write(s: BrokerStore) -> None:
            s.save_retained(sample_message(1))
            s.save_will("a", sample_message(2), 42.5)

        async def check(s: BrokerStore, _: Any) -> None:
            assert await s.load_retained() == [sample_message(1)]
            assert await s.load_wills() == [("a", sample_message(2), 42.5)]

        await self._across_reopen(tmp_path, write, check)

    async def test_persists_queues_and_keeps_seqs_increasing(self, tmp_path: Path) -> None:
        def write(s: BrokerStore) -> list[int]:
            seqs = [s.enqueue("c", sample_message(i)) for i in range(4)]
            s.remove_queued("c", [seqs[1]])
            s.drop_oldest("c")
            return seqs

        async def check(s: BrokerStore, seqs: list[int]) -> None:
            assert s.queue_length("c") == 2
            assert await s.queued("c") == [
                (seqs[2], sample_message(2)),
                (seqs[3], sample_message(3)),
            ]
            assert s.enqueue("c", sample_message(9)) > seqs[3]

        await self._across_reopen(tmp_path, write, check)

    async def test_persists_inflight(self, tmp_path: Path) -> None:
        def write(s: BrokerStore) -> None:
            s.save_inflight("c", 1, _record())
            s.save_inflight("c", 2, {"phase": "pubrel"})
            s.delete_inflight("c", 2)

        async def check(s: BrokerStore, _: Any) -> None:
            assert await s.load_inflight("c") == {1: _record()}

        await self._across_reopen(tmp_path, write, check)

    async def test_persists_deletions(self, tmp_path: Path) -> None:
        def write(s: BrokerStore) -> None:
            for cid in ("gone", "kept"):
                s.save_session(cid, {})
                s.save_subscription(cid, "t", {})
                s.enqueue(cid, sample_message())
                s.save_inflight(cid, 1, {})
            s.save_retained(sample_message(topic="r"))
            s.save_will("gone", sample_message(), 1.0)
            s.delete_session("gone")
            s.delete_subscription("kept", "t")
            s.delete_retained("r")
            s.delete_will("gone")

        async def check(s: BrokerStore, _: Any) -> None:
            assert await s.list_sessions() == ["kept"]
            assert await s.load_subscriptions("gone") == {}
            assert await s.load_subscriptions("kept") == {}
            assert s.queue_length("gone") == 0 and s.queue_length("kept") == 1
            assert await s.load_inflight("gone") == {}
            assert await s.load_retained() == []
            assert await s.load_wills() == []

        await self._across_reopen(tmp_path, write, check)

    async def test_close_flushes_without_sync(self, tmp_path: Path) -> None:
        def write(s: BrokerStore) -> None:
            s.save_session("c", {"v": 1})
            s.enqueue("c", sample_message())

        async def check(s: BrokerStore, _: Any) -> None:
            assert await s.load_session("c") == {"v": 1}
            assert s.queue_length("c") == 1

        await self._across_reopen(tmp_path, write, check, sync=False)


class QueueLogConformance(_Conformance):
    """Behaviour every :class:`~fluxmq_core.storage.base.QueueLog` must show.

    Subclass it as ``Test...`` and implement :meth:`make_log` (and :meth:`reopen`
    for a durable driver).
    """

    _FACTORY = "make_log"
    _PLAIN = (
        "create_queue", "delete_queue", "append", "append_many", "first_offset",
        "next_offset", "truncate_before", "size_bytes", "length", "commit_offset",
        "pel_add", "pel_remove", "stats",
    )  # fmt: skip
    _ASYNC = (
        "list_queues", "read", "offset_for_time", "committed_offset", "list_groups",
        "pel_entries",
    )  # fmt: skip

    def make_log(self, tmp_path: Path) -> QueueLog:
        """Return a new, unopened driver whose data lives under ``tmp_path``."""
        raise NotImplementedError("subclass QueueLogConformance and define make_log()")

    @pytest_asyncio.fixture
    async def queue_log(self, tmp_path: Path) -> Any:
        log = self.make_log(tmp_path)
        await log.open()
        try:
            yield log
        finally:
            await log.close()

    # --- the contract's shape -------------------------------------------------------

    async def test_is_a_queue_log_with_a_name(self, queue_log: QueueLog) -> None:
        assert isinstance(queue_log, QueueLog)
        assert isinstance(queue_log.name, str) and queue_log.name

    async def test_writes_are_plain_def_and_reads_are_async(self, queue_log: QueueLog) -> None:
        self._check_method_kinds(queue_log)

    async def test_sync_resolves_empty_after_writes_and_concurrently(
        self, queue_log: QueueLog
    ) -> None:
        await queue_log.sync()
        queue_log.create_queue("q", {})
        waiters = []
        for i in range(20):
            queue_log.append("q", sample_message(i))
            waiters.append(queue_log.sync())
        assert await asyncio.gather(*waiters) == [None] * 20
        assert queue_log.length("q") == 20

    async def test_stats_are_ints(self, queue_log: QueueLog) -> None:
        queue_log.create_queue("q", {})
        queue_log.append("q", sample_message())
        stats = queue_log.stats()
        assert all(isinstance(k, str) and type(v) is int for k, v in stats.items())

    # --- queues ---------------------------------------------------------------------

    async def test_create_and_list_queues(self, queue_log: QueueLog) -> None:
        assert await queue_log.list_queues() == {}
        queue_log.create_queue("orders", _record())
        queue_log.create_queue("events", {"mode": "stream"})
        assert await queue_log.list_queues() == {"orders": _record(), "events": {"mode": "stream"}}

    async def test_create_is_idempotent_and_replaces_config(self, queue_log: QueueLog) -> None:
        queue_log.create_queue("q", {"v": 1})
        queue_log.append("q", sample_message())
        queue_log.commit_offset("q", "g", 1)
        queue_log.create_queue("q", {"v": 2})
        assert await queue_log.list_queues() == {"q": {"v": 2}}
        assert queue_log.next_offset("q") == 1
        assert await queue_log.committed_offset("q", "g") == 1

    async def test_queue_config_is_copied(self, queue_log: QueueLog) -> None:
        config = {"retention": {"max_bytes": 10}}
        queue_log.create_queue("q", config)
        config["retention"]["max_bytes"] = 0
        listed = await queue_log.list_queues()
        listed["q"]["retention"] = None
        assert await queue_log.list_queues() == {"q": {"retention": {"max_bytes": 10}}}

    async def test_delete_queue_drops_everything(self, queue_log: QueueLog) -> None:
        queue_log.create_queue("q", {})
        queue_log.create_queue("other", {})
        queue_log.append_many("q", [sample_message(i) for i in range(3)])
        queue_log.commit_offset("q", "g", 2)
        queue_log.pel_add("q", "g", 2, "c", 1.0, 1)
        queue_log.delete_queue("q")
        queue_log.delete_queue("never-existed")
        assert await queue_log.list_queues() == {"other": {}}
        with pytest.raises(UnknownQueueError):
            queue_log.append("q", sample_message())
        # A new queue of the same name is a new log.
        queue_log.create_queue("q", {})
        assert (queue_log.first_offset("q"), queue_log.next_offset("q")) == (0, 0)
        assert await queue_log.committed_offset("q", "g") is None
        assert await queue_log.pel_entries("q", "g") == []
        assert await queue_log.list_groups("q") == []

    # --- appending and reading ------------------------------------------------------

    async def test_append_returns_offsets_from_zero_per_queue(self, queue_log: QueueLog) -> None:
        queue_log.create_queue("a", {})
        queue_log.create_queue("b", {})
        assert [queue_log.append("a", sample_message(i)) for i in range(3)] == [0, 1, 2]
        assert queue_log.append("b", sample_message()) == 0
        assert queue_log.next_offset("a") == 3 and queue_log.next_offset("b") == 1

    async def test_append_many(self, queue_log: QueueLog) -> None:
        queue_log.create_queue("q", {})
        queue_log.append("q", sample_message(0))
        assert queue_log.append_many("q", [sample_message(i) for i in (1, 2, 3)]) == [1, 2, 3]
        assert queue_log.append_many("q", iter([])) == []
        assert queue_log.append_many("q", (sample_message(i) for i in (4, 5))) == [4, 5]
        assert [m for _, m in await queue_log.read("q", 0, 10)] == [
            sample_message(i) for i in range(6)
        ]

    async def test_read_round_trip_and_limits(self, queue_log: QueueLog) -> None:
        queue_log.create_queue("q", {})
        queue_log.append_many("q", [sample_message(i) for i in range(5)])
        assert await queue_log.read("q", 0, 100) == [(i, sample_message(i)) for i in range(5)]
        assert await queue_log.read("q", 2, 2) == [(2, sample_message(2)), (3, sample_message(3))]
        assert await queue_log.read("q", 4, 10) == [(4, sample_message(4))]
        assert await queue_log.read("q", 5, 10) == []
        assert await queue_log.read("q", 50, 10) == []
        assert await queue_log.read("q", 0, 0) == []

    async def test_iter_records_exports_in_order_without_changing_state(
        self, queue_log: QueueLog
    ) -> None:
        assert inspect.isasyncgenfunction(type(queue_log).iter_records)
        queue_log.create_queue("q", {})
        queue_log.append_many("q", [sample_message(i) for i in range(7)])
        queue_log.commit_offset("q", "g", 3)
        queue_log.pel_add("q", "g", 3, "c1", 10.0, 1)
        queue_log.truncate_before("q", 1)
        rows = [row async for row in queue_log.iter_records("q", batch=2)]
        assert rows == [(i, sample_message(i)) for i in range(1, 7)]
        assert [o async for o, _m in queue_log.iter_records("q", 4)] == [4, 5, 6]
        assert [o async for o, _m in queue_log.iter_records("q", 0, 2)] == [1, 2]
        assert [o async for o, _m in queue_log.iter_records("q", 9)] == []
        assert queue_log.first_offset("q") == 1 and queue_log.next_offset("q") == 7
        assert await queue_log.committed_offset("q", "g") == 3
        assert [e.offset for e in await queue_log.pel_entries("q", "g")] == [3]

    async def test_empty_queue_offsets(self, queue_log: QueueLog) -> None:
        queue_log.create_queue("q", {})
        assert queue_log.first_offset("q") == 0
        assert queue_log.next_offset("q") == 0
        assert queue_log.length("q") == 0
        assert queue_log.size_bytes("q") == 0
        assert await queue_log.read("q", 0, 10) == []

    async def test_messages_are_copied(self, queue_log: QueueLog) -> None:
        queue_log.create_queue("q", {})
        message = sample_message()
        queue_log.append("q", message)
        message.payload = b"changed"
        _props(message)["nested"]["tags"].clear()
        [(_, loaded)] = await queue_log.read("q", 0, 1)
        assert loaded == sample_message()
        _props(loaded)["priority"] = 0
        _user_props(loaded).clear()
        assert await queue_log.read("q", 0, 1) == [(0, sample_message())]

    async def test_size_bytes_and_length_track_payloads(self, queue_log: QueueLog) -> None:
        queue_log.create_queue("q", {})
        for size in (0, 10, 100):
            queue_log.append("q", sample_message(payload=b"x" * size))
        assert queue_log.size_bytes("q") == 110
        assert queue_log.length("q") == 3
        queue_log.truncate_before("q", 2)
        assert queue_log.size_bytes("q") == 100
        assert queue_log.length("q") == 1

    # --- retention ------------------------------------------------------------------

    async def test_truncate_before(self, queue_log: QueueLog) -> None:
        queue_log.create_queue("q", {})
        queue_log.append_many("q", [sample_message(i) for i in range(5)])
        assert queue_log.truncate_before("q", 2) == 2
        assert queue_log.first_offset("q") == 2
        assert queue_log.next_offset("q") == 5
        assert queue_log.length("q") == 3
        assert queue_log.truncate_before("q", 1) == 0  # already gone
        assert queue_log.truncate_before("q", 2) == 0
        assert await queue_log.read("q", 2, 10) == [(i, sample_message(i)) for i in (2, 3, 4)]

    async def test_read_from_a_truncated_offset_resumes_at_first(self, queue_log: QueueLog) -> None:
        queue_log.create_queue("q", {})
        queue_log.append_many("q", [sample_message(i) for i in range(5)])
        queue_log.truncate_before("q", 3)
        assert await queue_log.read("q", 0, 1) == [(3, sample_message(3))]
        assert await queue_log.read("q", 0, 10) == [(3, sample_message(3)), (4, sample_message(4))]

    async def test_offsets_are_never_reused_after_truncation(self, queue_log: QueueLog) -> None:
        queue_log.create_queue("q", {})
        queue_log.append_many("q", [sample_message(i) for i in range(3)])
        assert queue_log.truncate_before("q", 1000) == 3  # past the end: everything
        assert queue_log.length("q") == 0 and queue_log.size_bytes("q") == 0
        assert queue_log.first_offset("q") == queue_log.next_offset("q") == 3
        assert await queue_log.read("q", 0, 10) == []
        assert queue_log.append("q", sample_message(3)) == 3
        assert await queue_log.read("q", 0, 10) == [(3, sample_message(3))]

    async def test_many_appends_and_truncations_stay_consistent(self, queue_log: QueueLog) -> None:
        queue_log.create_queue("q", {})
        for step in range(10):
            queue_log.append_many("q", [sample_message(step * 100 + i) for i in range(100)])
            queue_log.truncate_before("q", step * 100 + 70)
        assert queue_log.first_offset("q") == 970
        assert queue_log.next_offset("q") == 1000
        assert queue_log.length("q") == 30
        got = await queue_log.read("q", 0, 5)
        assert got == [(o, sample_message(o)) for o in range(970, 975)]

    async def test_offset_for_time(self, queue_log: QueueLog) -> None:
        queue_log.create_queue("q", {})
        for i, ts in enumerate((100.0, 200.0, 200.0, 300.0)):
            queue_log.append("q", sample_message(i, timestamp=ts))
        assert await queue_log.offset_for_time("q", 0.0) == 0
        assert await queue_log.offset_for_time("q", 100.0) == 0
        assert await queue_log.offset_for_time("q", 150.0) == 1
        assert await queue_log.offset_for_time("q", 200.0) == 1
        assert await queue_log.offset_for_time("q", 300.0) == 3
        assert await queue_log.offset_for_time("q", 300.5) == 4  # none: next_offset
        queue_log.truncate_before("q", 2)
        assert await queue_log.offset_for_time("q", 0.0) == 2

    async def test_offset_for_time_on_empty_queue(self, queue_log: QueueLog) -> None:
        queue_log.create_queue("q", {})
        assert await queue_log.offset_for_time("q", 0.0) == 0

    # --- consumer groups ------------------------------------------------------------

    async def test_commit_offset(self, queue_log: QueueLog) -> None:
        queue_log.create_queue("q", {})
        assert await queue_log.committed_offset("q", "g") is None
        queue_log.commit_offset("q", "g", 5)
        assert await queue_log.committed_offset("q", "g") == 5
        queue_log.commit_offset("q", "g", 2)  # replay: going back is allowed
        assert await queue_log.committed_offset("q", "g") == 2
        assert await queue_log.committed_offset("q", "h") is None

    async def test_list_groups(self, queue_log: QueueLog) -> None:
        queue_log.create_queue("q", {})
        queue_log.create_queue("other", {})
        assert await queue_log.list_groups("q") == []
        queue_log.commit_offset("q", "committed", 0)
        queue_log.pel_add("q", "pending", 0, "c", 1.0, 1)
        queue_log.commit_offset("other", "elsewhere", 0)
        assert sorted(await queue_log.list_groups("q")) == ["committed", "pending"]
        assert await queue_log.list_groups("other") == ["elsewhere"]

    # --- pending-entry list ---------------------------------------------------------

    async def test_pel_add_upserts_and_orders_by_offset(self, queue_log: QueueLog) -> None:
        queue_log.create_queue("q", {})
        queue_log.pel_add("q", "g", 7, "c1", 10.0, 1)
        queue_log.pel_add("q", "g", 3, "c2", 20.5, 1)
        queue_log.pel_add("q", "g", 7, "c3", 30.0, 2)  # redelivery to another consumer
        assert await queue_log.pel_entries("q", "g") == [
            PendingEntry(3, "c2", 20.5, 1),
            PendingEntry(7, "c3", 30.0, 2),
        ]
        assert await queue_log.pel_entries("q", "new-group") == []

    async def test_pel_remove(self, queue_log: QueueLog) -> None:
        queue_log.create_queue("q", {})
        for offset in (1, 2, 3):
            queue_log.pel_add("q", "g", offset, "c", 1.0, 1)
        queue_log.pel_remove("q", "g", 2)
        queue_log.pel_remove("q", "g", 99)
        queue_log.pel_remove("q", "unknown-group", 1)
        assert [e.offset for e in await queue_log.pel_entries("q", "g")] == [1, 3]

    async def test_pel_is_per_group_and_per_queue(self, queue_log: QueueLog) -> None:
        queue_log.create_queue("a", {})
        queue_log.create_queue("b", {})
        queue_log.pel_add("a", "g1", 0, "x", 1.0, 1)
        queue_log.pel_add("a", "g2", 0, "y", 2.0, 1)
        queue_log.pel_add("b", "g1", 0, "z", 3.0, 1)
        assert await queue_log.pel_entries("a", "g1") == [PendingEntry(0, "x", 1.0, 1)]
        assert await queue_log.pel_entries("a", "g2") == [PendingEntry(0, "y", 2.0, 1)]
        assert await queue_log.pel_entries("b", "g1") == [PendingEntry(0, "z", 3.0, 1)]

    async def test_pending_entry_is_frozen_and_slotted(self, queue_log: QueueLog) -> None:
        entry = PendingEntry(1, "c", 2.0, 3)
        with pytest.raises(dataclasses.FrozenInstanceError):
            entry.consumer = "other"  # type: ignore[misc]  # the assignment under test
        assert not hasattr(entry, "__dict__")

    async def test_truncation_leaves_groups_and_pel_alone(self, queue_log: QueueLog) -> None:
        queue_log.create_queue("q", {})
        queue_log.append_many("q", [sample_message(i) for i in range(4)])
        queue_log.commit_offset("q", "g", 1)
        queue_log.pel_add("q", "g", 1, "c", 5.0, 1)
        queue_log.truncate_before("q", 3)
        assert await queue_log.committed_offset("q", "g") == 1
        assert await queue_log.pel_entries("q", "g") == [PendingEntry(1, "c", 5.0, 1)]

    # --- unknown queues -------------------------------------------------------------

    @pytest.mark.parametrize(
        ("method", "args"),
        [
            ("append", (sample_message(),)),
            ("append_many", ([sample_message()],)),
            ("read", (0, 10)),
            ("first_offset", ()),
            ("next_offset", ()),
            ("offset_for_time", (0.0,)),
            ("truncate_before", (1,)),
            ("size_bytes", ()),
            ("length", ()),
            ("commit_offset", ("g", 1)),
            ("committed_offset", ("g",)),
            ("list_groups", ()),
            ("pel_add", ("g", 0, "c", 1.0, 1)),
            ("pel_entries", ("g",)),
        ],
    )
    async def test_unknown_queue_raises(
        self, queue_log: QueueLog, method: str, args: tuple[Any, ...]
    ) -> None:
        with pytest.raises(UnknownQueueError) as info:
            result = getattr(queue_log, method)("missing", *args)
            if inspect.isawaitable(result):
                await result
        assert isinstance(info.value, KeyError)
        assert info.value.name == "missing"
        assert "missing" in str(info.value)

    # --- persistence (durable drivers only) -----------------------------------------

    async def test_persists_queues_records_and_offsets(self, tmp_path: Path) -> None:
        def write(log: QueueLog) -> None:
            log.create_queue("q", _record())
            log.create_queue("empty", {"v": 1})
            log.create_queue("doomed", {})
            log.append_many("q", [sample_message(i) for i in range(5)])
            log.truncate_before("q", 2)
            log.append_many("empty", [sample_message(i) for i in range(2)])
            log.truncate_before("empty", 2)
            log.delete_queue("doomed")

        async def check(log: QueueLog, _: Any) -> None:
            assert await log.list_queues() == {"q": _record(), "empty": {"v": 1}}
            assert (log.first_offset("q"), log.next_offset("q"), log.length("q")) == (2, 5, 3)
            assert log.size_bytes("q") == sum(len(sample_message(i).payload) for i in (2, 3, 4))
            assert await log.read("q", 0, 10) == [(i, sample_message(i)) for i in (2, 3, 4)]
            # Offsets are not reused across a reopen, even when nothing is retained.
            assert (log.first_offset("empty"), log.next_offset("empty")) == (2, 2)
            assert log.append("empty", sample_message()) == 2
            assert log.append("q", sample_message()) == 5

        await self._across_reopen(tmp_path, write, check)

    async def test_persists_groups_and_pel(self, tmp_path: Path) -> None:
        def write(log: QueueLog) -> None:
            log.create_queue("q", {})
            log.append_many("q", [sample_message(i) for i in range(3)])
            log.commit_offset("q", "g", 2)
            log.pel_add("q", "g", 0, "c1", 10.0, 1)
            log.pel_add("q", "g", 1, "c1", 11.0, 1)
            log.pel_add("q", "g", 0, "c2", 12.0, 2)
            log.pel_remove("q", "g", 1)

        async def check(log: QueueLog, _: Any) -> None:
            assert await log.committed_offset("q", "g") == 2
            assert await log.list_groups("q") == ["g"]
            assert await log.pel_entries("q", "g") == [PendingEntry(0, "c2", 12.0, 2)]

        await self._across_reopen(tmp_path, write, check)

    async def test_close_flushes_without_sync(self, tmp_path: Path) -> None:
        def write(log: QueueLog) -> None:
            log.create_queue("q", {})
            log.append("q", sample_message())

        async def check(log: QueueLog, _: Any) -> None:
            assert await log.read("q", 0, 10) == [(0, sample_message())]

        await self._across_reopen(tmp_path, write, check, sync=False)
