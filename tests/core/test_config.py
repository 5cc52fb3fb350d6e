"""Configuration loading: file, environment, overrides, and the errors users see."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from fluxmq_core.config import (
    ConfigError,
    LogConfig,
    ServerConfig,
    load_config,
    parse_address,
    reference_rows,
    render_commented_defaults,
    render_toml,
    setting,
)


@dataclass
class Thing:
    port: int = 1
    name: str = "x"
    ratio: float = 0.5
    on: bool = False
    tags: list[str] = field(default_factory=list)
    mode: Literal["a", "b"] = "a"
    limit: int | None = None
    bind: str = setting("0.0.0.0:1", "a listener", listener=True)


SCHEMA = {"server": ServerConfig, "log": LogConfig, "thing": Thing}


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "fluxmq.toml"
    p.write_text(text)
    return p


def test_defaults_without_file() -> None:
    cfg = load_config(SCHEMA, env={})
    assert cfg.server.data_dir == "./data"
    assert cfg.thing.port == 1 and cfg.thing.tags == []
    assert cfg.source is None


def test_file_values_are_typed(tmp_path: Path) -> None:
    p = write(tmp_path, '[thing]\nport = 5\nratio = 2\ntags = ["a", "b"]\nmode = "b"\nlimit = 3\n')
    cfg = load_config(SCHEMA, p, env={})
    assert (cfg.thing.port, cfg.thing.ratio, cfg.thing.tags, cfg.thing.mode, cfg.thing.limit) == (
        5,
        2.0,
        ["a", "b"],
        "b",
        3,
    )
    assert isinstance(cfg.thing.ratio, float)


def test_env_overrides_file_and_cli_overrides_env(tmp_path: Path) -> None:
    p = write(tmp_path, "[thing]\nport = 5\n")
    env = {
        "FLUXMQ_THING__PORT": "6",
        "FLUXMQ_THING__ON": "yes",
        "FLUXMQ_THING__TAGS": "x, y",
        "OTHER": "1",
    }
    cfg = load_config(SCHEMA, p, env=env)
    assert cfg.thing.port == 6 and cfg.thing.on is True and cfg.thing.tags == ["x", "y"]
    cfg = load_config(SCHEMA, p, env=env, overrides={"thing": {"port": 7}})
    assert cfg.thing.port == 7


def test_wrong_type_in_file_names_key_file_and_type(tmp_path: Path) -> None:
    p = write(tmp_path, '[thing]\nport = "many"\n')
    with pytest.raises(ConfigError) as err:
        load_config(SCHEMA, p, env={})
    msg = str(err.value)
    assert "thing.port" in msg and str(p) in msg and "expected int" in msg
    assert err.value.key == "thing.port"


def test_bool_is_not_an_int(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="thing.port: expected int"):
        load_config(SCHEMA, write(tmp_path, "[thing]\nport = true\n"), env={})


def test_unknown_key_lists_known_keys(tmp_path: Path) -> None:
    p = write(tmp_path, "[thing]\nprot = 1\n")
    with pytest.raises(ConfigError) as err:
        load_config(SCHEMA, p, env={})
    assert "unknown key 'thing.prot'" in str(err.value) and "port" in str(err.value)
    assert str(p) in str(err.value)


def test_unknown_section(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown section \[nope\]"):
        load_config(SCHEMA, write(tmp_path, "[nope]\na = 1\n"), env={})


def test_env_errors_name_the_variable() -> None:
    with pytest.raises(ConfigError, match="environment variable FLUXMQ_THING__PORT.*expected int"):
        load_config(SCHEMA, env={"FLUXMQ_THING__PORT": "abc"})
    with pytest.raises(ConfigError, match="FLUXMQ_THING__NOPE"):
        load_config(SCHEMA, env={"FLUXMQ_THING__NOPE": "1"})
    with pytest.raises(ConfigError, match="FLUXMQ_ZZZ__A"):
        load_config(SCHEMA, env={"FLUXMQ_ZZZ__A": "1"})


def test_literal_choices_are_enforced(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match='expected "a" \\| "b"'):
        load_config(SCHEMA, write(tmp_path, '[thing]\nmode = "c"\n'), env={})


def test_post_init_validation_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="shutdown_timeout must be > 0"):
        load_config(SCHEMA, write(tmp_path, "[server]\nshutdown_timeout = 0\n"), env={})


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(SCHEMA, write(tmp_path, "[thing\n"), env={})
    with pytest.raises(ConfigError, match="not found"):
        load_config(SCHEMA, tmp_path / "missing.toml", env={})


def test_listeners_and_rendering(tmp_path: Path) -> None:
    cfg = load_config(SCHEMA, env={})
    assert cfg.listeners() == {"thing.bind": "0.0.0.0:1"}
    shown = render_toml(cfg)
    assert "[thing]" in shown and 'bind = "0.0.0.0:1"' in shown
    init = render_commented_defaults(SCHEMA)
    assert "# port = 1" in init and "a listener" in init
    # The commented file loads as an empty (all-defaults) configuration.
    assert load_config(SCHEMA, write(tmp_path, init), env={}).thing.port == 1
    keys = {(r[0], r[1]) for r in reference_rows(SCHEMA)}
    assert ("thing", "ratio") in keys and ("server", "data_dir") in keys


@pytest.mark.parametrize(
    "text,expected",
    [
        ("127.0.0.1:1883", ("127.0.0.1", 1883)),
        (":1883", ("0.0.0.0", 1883)),
        ("[::1]:5", ("::1", 5)),
    ],
)
def test_parse_address(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize("text", ["1883", "host:", "host:99999", "host:port"])
def test_parse_address_errors(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_address(text)


# --- map sections: dict[str, SomeDataclass] ([queues.<name>]) ----------------------------


@dataclass
class Table:
    """One named table."""

    size: int = 1
    mode: Literal["a", "b"] = "a"


MAP_SCHEMA = {"server": ServerConfig, "tables": dict[str, Table]}


def test_map_section_builds_one_dataclass_per_table(tmp_path: Path) -> None:
    p = write(tmp_path, '[tables.one]\nsize = 5\n\n[tables.two]\nmode = "b"\n')
    cfg = load_config(MAP_SCHEMA, p, env={})
    assert cfg.tables == {"one": Table(size=5), "two": Table(mode="b")}
    assert load_config(MAP_SCHEMA, env={}).tables == {}


def test_map_section_errors_name_the_table(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"unknown key 'tables\.one\.sise' \(known keys of \[tables\.one\]"
    ):
        load_config(MAP_SCHEMA, write(tmp_path, "[tables.one]\nsise = 5\n"), env={})
    with pytest.raises(ConfigError, match=r"tables\.one\.size: expected int"):
        load_config(MAP_SCHEMA, write(tmp_path, '[tables.one]\nsize = "5"\n'), env={})
    with pytest.raises(ConfigError, match=r"tables\.one: expected a table"):
        load_config(MAP_SCHEMA, write(tmp_path, "[tables]\none = 5\n"), env={})


def test_map_section_env_and_overrides() -> None:
    cfg = load_config(
        MAP_SCHEMA,
        env={"FLUXMQ_TABLES__ONE": '{"size": 3}'},
        overrides={"tables": {"two": {"mode": "b"}}},
    )
    assert cfg.tables == {"one": Table(size=3), "two": Table(mode="b")}
    with pytest.raises(ConfigError, match="environment variable FLUXMQ_TABLES__ONE"):
        load_config(MAP_SCHEMA, env={"FLUXMQ_TABLES__ONE": '{"size": "x"}'})


def test_map_section_rendering(tmp_path: Path) -> None:
    cfg = load_config(MAP_SCHEMA, write(tmp_path, "[tables.one]\nsize = 5\n"), env={})
    shown = render_toml(cfg)
    assert "[tables.one]" in shown and "size = 5" in shown
    assert load_config(MAP_SCHEMA, write(tmp_path, shown), env={}).tables == cfg.tables
    init = render_commented_defaults(MAP_SCHEMA)
    assert "# [tables.NAME]" in init and "# size = 1" in init and "One named table." in init
    assert load_config(MAP_SCHEMA, write(tmp_path, init), env={}).tables == {}
    rows = {(r[0], r[1]) for r in reference_rows(MAP_SCHEMA)}
    assert ("tables", "<name>.size") in rows and ("tables", "<name>.mode") in rows
    assert cfg.listeners() == {}
