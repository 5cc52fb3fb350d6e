"""Both badgerlike drivers against the core conformance suite, persistence
tests included (``reopen`` returns a fresh driver on the same data directory),
once per fsync mode so that every mode honours the same contract."""

from __future__ import annotations

from pathlib import Path

from fluxmq_badgerlike import BadgerlikeBrokerStore, BadgerlikeQueueLog

from fluxmq_core.storage import StorageOptions
from fluxmq_core.testing.conformance import BrokerStoreConformance, QueueLogConformance

# Small segments so that the suite also crosses segment rotations.
EXTRA = {"segment_size": 4096, "index_interval": 4}


class TestBadgerlikeBrokerStore(BrokerStoreConformance):
    fsync_mode = "batch"

    def make_store(self, tmp_path: Path) -> BadgerlikeBrokerStore:
        return BadgerlikeBrokerStore(
            StorageOptions(data_dir=str(tmp_path), fsync=self.fsync_mode, extra=dict(EXTRA))
        )

    def reopen(self, store: BadgerlikeBrokerStore, tmp_path: Path) -> BadgerlikeBrokerStore:
        return BadgerlikeBrokerStore(store.options)


class TestBadgerlikeBrokerStoreAlways(TestBadgerlikeBrokerStore):
    fsync_mode = "always"


class TestBadgerlikeBrokerStoreNever(TestBadgerlikeBrokerStore):
    fsync_mode = "never"


class TestBadgerlikeQueueLog(QueueLogConformance):
    fsync_mode = "batch"
    #: options on top of EXTRA (the live tail's bound below)
    options: dict[str, int] = {}

    def make_log(self, tmp_path: Path) -> BadgerlikeQueueLog:
        return BadgerlikeQueueLog(
            StorageOptions(
                data_dir=str(tmp_path), fsync=self.fsync_mode, extra={**EXTRA, **self.options}
            )
        )

    def reopen(self, store: BadgerlikeQueueLog, tmp_path: Path) -> BadgerlikeQueueLog:
        return BadgerlikeQueueLog(store.options)


class TestBadgerlikeQueueLogAlways(TestBadgerlikeQueueLog):
    fsync_mode = "always"


class TestBadgerlikeQueueLogNever(TestBadgerlikeQueueLog):
    fsync_mode = "never"


class TestBadgerlikeQueueLogNoTail(TestBadgerlikeQueueLog):
    """The live tail off: every read decodes the segment files."""

    options = {"tail_cache_bytes": 0}
