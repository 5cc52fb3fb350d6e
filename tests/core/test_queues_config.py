"""Queue configuration: ``[queue_manager]`` and ``[queues.<name>]`` tables through
the real config loader, defaults, validation, and loading at start."""

from __future__ import annotations

from pathlib import Path

import pytest

from fluxmq_core.builtin import fluxmq_add_config
from fluxmq_core.config import ConfigError, load_config
from fluxmq_core.queues import QueueConfig
from fluxmq_core.storage.memory_log import MemoryQueueLog
from fluxmq_core.testing.queues import queue_manager

SCHEMA = fluxmq_add_config()


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "fluxmq.toml"
    p.write_text(text)
    return p


def test_queue_tables_load_typed(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        """
[queue_manager]
visibility_timeout = 12
sweep_interval = 0.5

[queues.orders]
topics = ["orders/#"]
max_depth = 100
overflow = "drop-oldest"
retry_initial = 1

[queues.events]
type = "stream"
retention_age = 3600
""",
    )
    cfg = load_config(SCHEMA, p, env={})
    assert cfg.queue_manager.visibility_timeout == 12.0
    assert set(cfg.queues) == {"orders", "events"}
    orders = cfg.queues["orders"]
    assert isinstance(orders, QueueConfig)
    assert (orders.topics, orders.max_depth, orders.overflow, orders.retry_initial) == (
        ["orders/#"],
        100,
        "drop-oldest",
        1.0,
    )
    assert orders.visibility_timeout is None  # follows [queue_manager]
    assert cfg.queues["events"].type == "stream"


@pytest.mark.parametrize(
    "table,needle",
    [
        ("[queues.orders]\nmax_dept = 1\n", "unknown key 'queues.orders.max_dept'"),
        ('[queues.orders]\nmax_depth = "x"\n', "queues.orders.max_depth: expected int"),
        ('[queues.orders]\ntype = "fifo"\n', "queues.orders.type: expected"),
        ('[queues.orders]\noverflow = "spill"\n', "queues.orders.overflow"),
        (
            "[queues.orders]\nretry_multiplier = 0.5\n",
            "[queues.orders]: retry_multiplier must be >= 1",
        ),
        ('[queues.orders]\ntopics = ["a/#/b"]\n', "[queues.orders]: topics:"),
        ("[queues]\norders = 3\n", "queues.orders: expected a table"),
        ("[queue_manager]\nsweep_interval = 0\n", "[queue_manager]: sweep_interval must be > 0"),
    ],
)
def test_errors_name_the_table_and_key(tmp_path: Path, table: str, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(SCHEMA, write(tmp_path, table), env={})
    assert needle in str(err.value)
    assert "fluxmq.toml" in str(err.value)


def test_queue_table_from_environment() -> None:
    cfg = load_config(SCHEMA, env={"FLUXMQ_QUEUES__JOBS": '{"max_depth": 7}'})
    assert cfg.queues["jobs"].max_depth == 7
    with pytest.raises(ConfigError, match="FLUXMQ_QUEUES__JOBS"):
        load_config(SCHEMA, env={"FLUXMQ_QUEUES__JOBS": "7"})


def test_backoff_formula() -> None:
    cfg = QueueConfig(retry_initial=1.0, retry_multiplier=2.0, retry_max=5.0)
    assert [cfg.backoff(n) for n in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert QueueConfig().backoff(3) == 0.0
    assert cfg.backoff(10_000) == 5.0


async def test_config_declares_queues_and_manager_defaults_apply() -> None:
    qlog = MemoryQueueLog()
    queues = {"jobs": {"topics": ["jobs/#"]}, "slow": {"visibility_timeout": 99.0}}
    async with queue_manager(
        queue_log=qlog, queues=queues, manager={"visibility_timeout": 7.0, "max_deliveries": 9}
    ) as mgr:
        assert mgr.get("jobs").config.visibility_timeout == 7.0
        assert mgr.get("jobs").config.max_deliveries == 9
        assert mgr.get("slow").config.visibility_timeout == 99.0
        stored = await qlog.list_queues()
        assert (
            stored["jobs"]["topics"] == ["jobs/#"] and stored["jobs"]["visibility_timeout"] is None
        )
    # a restart with a changed config: the file wins over the stored settings
    async with queue_manager(queue_log=qlog, queues={"jobs": {"max_depth": 3}}) as mgr:
        assert mgr.get("jobs").config.max_depth == 3 and mgr.get("jobs").config.topics == []
        assert mgr.get("slow").config.visibility_timeout == 99.0  # loaded from the log


async def test_stored_config_with_unknown_keys_still_loads() -> None:
    qlog = MemoryQueueLog()
    qlog.create_queue("old", {"type": "stream", "from_the_future": 1})
    async with queue_manager(queue_log=qlog) as mgr:
        assert mgr.get("old").type == "stream"


def test_every_queue_config_key_is_read() -> None:
    """Guard: each key of both sections is used by the queue package's code."""
    import dataclasses
    import inspect
    import re

    import fluxmq_core.queues as pkg

    src = "\n".join(
        p.read_text() for p in Path(pkg.__file__).parent.glob("*.py") if p.name != "config.py"
    ) + inspect.getsource(QueueConfig.backoff)  # validation alone does not count
    for cls in (QueueConfig, SCHEMA["queue_manager"]):
        for f in dataclasses.fields(cls):
            assert re.search(rf"\.{f.name}\b", src), f"{cls.__name__}.{f.name} is never read"
