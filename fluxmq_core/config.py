"""Configuration: one TOML file, ``FLUXMQ_<SECTION>__<KEY>`` environment overrides
and CLI flags, turned into typed, validated dataclasses.

Every section is a dataclass declared by its owner (the core's own sections here,
plugins' through ``fluxmq_add_config``). The loader knows nothing about what a key
means; it checks names and types and reports a bad value with the key, the place it
came from (file or environment variable) and the expected type, so a user never has
to guess. A section may also be a *map section*, declared as
``dict[str, SomeDataclass]``: any number of named tables (``[queues.<name>]``), each
checked against the dataclass, errors naming ``<section>.<name>.<key>``. Precedence: defaults < file < environment < CLI flags.

What it does not do: hot reload policy (``server.py`` decides what a SIGHUP
re-reads) and the meaning of listener addresses (``transport/``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

ENV_PREFIX = "FLUXMQ_"


class ConfigError(Exception):
    """A configuration problem the user must fix; the CLI exits 2 on it."""

    def __init__(self, message: str, *, key: str | None = None, source: str | None = None):
        self.key = key
        self.source = source
        super().__init__(f"{source}: {message}" if source else message)


def setting(
    default: Any = MISSING, help: str = "", *, listener: bool = False, factory: Any = MISSING
) -> Any:
    """A dataclass field with a help text (shown by ``config init`` and the docs).

    ``listener=True`` marks a ``host:port`` listener address; the test kit rebinds
    those to ephemeral loopback ports and the core reports what it bound.
    """
    meta = {"help": help, "listener": listener}
    if factory is not MISSING:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


# --- the core's own sections ----------------------------------------------------------


@dataclass
class ServerConfig:
    """``[server]``: process-wide settings."""

    data_dir: str = setting("./data", "Directory for durable state (storage engines, queue logs).")
    node_id: str = setting("", "Name of this node in logs, $SYS and clusters; empty = host name.")
    shutdown_timeout: float = setting(
        10.0, "Seconds a clean shutdown may take (close sessions, flush storage) before exit."
    )
    workers: int | Literal["auto"] = setting(
        1,
        "Broker processes sharing every listener and acting as one broker through the "
        "etcd cluster driver (needs the fluxmq-etcd plugin); 'auto' = one per CPU core. "
        "`fluxmq run --workers` overrides it.",
    )
    reuse_port: bool = setting(
        False,
        "Bind TCP listeners with SO_REUSEPORT, so several processes accept on one port "
        "(set for each worker by --workers).",
    )

    def __post_init__(self) -> None:
        if self.shutdown_timeout <= 0:
            raise ValueError("shutdown_timeout must be > 0")
        if self.workers != "auto" and self.workers < 1:
            raise ValueError("workers must be >= 1 or 'auto'")


@dataclass
class StorageConfig:
    """``[storage]``: which drivers hold broker state and queue logs."""

    driver: str = setting(
        "",
        "BrokerStore driver (entry point group fluxmq.storage). Empty = the durable "
        "'badgerlike' driver when installed, else 'memory'.",
    )
    queue_log: str = setting(
        "", "QueueLog driver (group fluxmq.queue_log). Empty = same choice as 'driver'."
    )
    fsync: Literal["always", "batch", "never"] = setting(
        "batch", "When durable drivers fsync: every write, once per group commit, or never."
    )
    options: dict[str, Any] = setting(
        help="Driver-specific options handed to both drivers (see docs/storage.md).", factory=dict
    )


@dataclass
class ClusterConfig:
    """``[cluster]``: clustering driver (group fluxmq.cluster) and its settings.

    The core owns the whole section, the ``etcd_*`` keys included, so a file is
    checked the same way whichever driver is installed and ``fluxmq config init``
    shows every key; the ``none`` driver reads only ``driver`` and ``node_id``.
    """

    driver: str = setting(
        "none", "Cluster driver; 'none' runs a single node, 'etcd' joins a cluster."
    )
    node_id: str = setting(
        "", "This node's id in the cluster; empty = [server] node_id, else the host name."
    )
    lease_ttl: float = setting(
        10.0, "Seconds a node's membership (and what it owns) outlives its last keepalive."
    )
    bind: str = setting("0.0.0.0:7948", "host:port for node-to-node traffic (gRPC).", listener=True)
    advertise: str = setting(
        "", "host:port other nodes dial to reach this one; empty = the bound address."
    )
    batch_max: int = setting(256, "Most messages in one batch forwarded to a peer.")
    batch_delay: float = setting(
        0.002, "Seconds a forwarded batch may wait to fill up before it is sent."
    )
    peer_queue_max: int = setting(
        10000,
        "Messages queued per peer while it is slow; past it new ones are dropped and counted.",
    )
    peer_timeout: float = setting(
        2.0, "Seconds a node-to-node call may take before the peer counts as failing."
    )
    local_link: str = setting(
        "auto",
        "'auto': publishes forwarded to a node on the same host (same kernel boot id "
        "and network namespace, as the workers of --workers) go over a Unix socket in "
        "data_dir instead of gRPC; 'off': always gRPC.",
    )
    tls_cert: str = setting(
        "",
        "PEM certificate of this node for node-to-node gRPC (server and client side); "
        "empty: plaintext. With it, peers must present a certificate signed by tls_ca.",
    )
    tls_key: str = setting("", "PEM private key of tls_cert.")
    tls_ca: str = setting("", "CA bundle that signed every node's certificate (mutual TLS).")
    tls_server_name: str = setting(
        "", "Name to verify in peers' certificates instead of the host of their address."
    )
    etcd_endpoints: list[str] = setting(
        help="etcd client URLs (http://host:2379 or https://...); empty with etcd_embedded = "
        "false means http://127.0.0.1:2379.",
        factory=list,
    )
    etcd_prefix: str = setting("/fluxmq/", "Key prefix of this cluster's records in etcd.")
    retained_inline_max: int = setting(
        65536,
        "Retained messages up to this many payload bytes are kept in etcd; larger ones "
        "stay on the node that took them and other nodes fetch them from it over gRPC.",
    )
    etcd_username: str = setting("", "etcd user (with etcd_password); empty = no etcd auth.")
    etcd_password: str = setting("", "etcd password of etcd_username.")
    etcd_ca_file: str = setting("", "CA bundle to verify etcd's TLS certificate (https endpoints).")
    etcd_cert_file: str = setting("", "Client certificate for etcd mutual TLS.")
    etcd_key_file: str = setting("", "Private key of etcd_cert_file.")
    etcd_timeout: float = setting(
        5.0,
        "Seconds an etcd request may take before it fails; also how long a session "
        "claim waits for the node to be back in etcd before the client is refused.",
    )
    etcd_embedded: bool = setting(
        False, "Start and supervise a local etcd member (the etcd binary on PATH)."
    )
    etcd_client: str = setting("127.0.0.1:2379", "Embedded etcd: host:port of its client listener.")
    etcd_peer: str = setting("127.0.0.1:2380", "Embedded etcd: host:port of its peer listener.")
    etcd_initial_cluster: str = setting(
        "",
        "Embedded etcd: every member as name=http://host:peerport, comma-separated; "
        "empty = a one-member cluster of this node.",
    )
    etcd_data_dir: str = setting("", "Embedded etcd: its data directory; empty = <data_dir>/etcd.")

    def __post_init__(self) -> None:
        if self.lease_ttl < 2:
            raise ValueError("lease_ttl must be >= 2 seconds")
        if self.batch_max < 1 or self.peer_queue_max < 1:
            raise ValueError("batch_max and peer_queue_max must be >= 1")
        if self.batch_delay < 0 or self.peer_timeout <= 0:
            raise ValueError("batch_delay must be >= 0 and peer_timeout > 0")
        if self.local_link not in ("auto", "off"):
            raise ValueError(f"local_link must be 'auto' or 'off', not {self.local_link!r}")
        if self.retained_inline_max < 0:
            raise ValueError("retained_inline_max must be >= 0")
        if self.etcd_timeout <= 0:
            raise ValueError("etcd_timeout must be > 0")
        if bool(self.etcd_username) != bool(self.etcd_password):
            raise ValueError("etcd_username and etcd_password go together")
        if self.tls_cert and not (self.tls_key and self.tls_ca):
            raise ValueError("tls_cert needs tls_key and tls_ca (node-to-node TLS is mutual)")
        if (self.tls_key or self.tls_ca) and not self.tls_cert:
            raise ValueError("tls_key and tls_ca need tls_cert")
        if bool(self.etcd_cert_file) != bool(self.etcd_key_file):
            raise ValueError("etcd_cert_file and etcd_key_file go together")


@dataclass
class LogConfig:
    """``[log]``: logging (reloadable with SIGHUP)."""

    level: Literal["debug", "info", "warning", "error", "critical"] = setting(
        "info", "Minimum level logged."
    )
    format: Literal["text", "json"] = setting(
        "text", "Plain text lines or one JSON object per line."
    )


@dataclass
class SysConfig:
    """``[sys]``: the broker's ``$SYS/broker/...`` status topics."""

    interval: float = setting(10.0, "Seconds between $SYS updates; 0 disables them.")

    def __post_init__(self) -> None:
        if self.interval < 0:
            raise ValueError("interval must be >= 0")


# --- type checking and coercion --------------------------------------------------------

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def type_name(tp: Any) -> str:
    """A short human name for a type annotation, used in error messages and docs."""
    origin = get_origin(tp)
    if origin is Literal:
        return " | ".join(json.dumps(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(type_name(a) for a in get_args(tp))
    if origin is list:
        (inner,) = get_args(tp) or (Any,)
        return f"list of {type_name(inner)}"
    if origin is dict:
        _k, v = get_args(tp) or (str, Any)
        return f"table of {type_name(v)}"
    if tp is type(None):
        return "none"
    if dataclasses.is_dataclass(tp):
        return "table"
    return getattr(tp, "__name__", str(tp))


def _from_env_string(raw: str, tp: Any) -> Any:
    """Turn an environment variable's text into the shape ``_coerce`` expects."""
    origin = get_origin(tp)
    if tp is bool:
        low = raw.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        return raw
    if tp is int:
        try:
            return int(raw.strip(), 0)
        except ValueError:
            return raw
    if tp is float:
        try:
            return float(raw)
        except ValueError:
            return raw
    if origin in (list, dict) or dataclasses.is_dataclass(tp):
        text = raw.strip()
        if origin is list and not text.startswith("["):
            return [p.strip() for p in text.split(",") if p.strip()]
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return raw
    if origin in (Union, types.UnionType):
        for arg in get_args(tp):
            if arg is type(None):
                continue
            val = _from_env_string(raw, arg)
            if not isinstance(val, str) or arg is str:
                return val
        return raw
    return raw


def _coerce(value: Any, tp: Any, where: str, source: str) -> Any:
    """Check ``value`` against annotation ``tp``; return the typed value or raise."""

    def bad() -> ConfigError:
        shown = (
            json.dumps(value)
            if isinstance(value, (str, int, float, bool))
            else type(value).__name__
        )
        return ConfigError(
            f"{where}: expected {type_name(tp)}, got {shown}", key=where, source=source
        )

    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin is Literal:
        if value in get_args(tp):
            return value
        raise bad()
    if origin in (Union, types.UnionType):
        if value is None and type(None) in get_args(tp):
            return None
        for arg in get_args(tp):
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where, source)
            except ConfigError:
                continue
        raise bad()
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise bad()
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise bad()
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise bad()
    if tp is str:
        if isinstance(value, str):
            return value
        raise bad()
    if origin is list:
        if not isinstance(value, list):
            raise bad()
        (inner,) = get_args(tp) or (Any,)
        return [_coerce(v, inner, f"{where}[{i}]", source) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise bad()
        _kt, vt = get_args(tp) or (str, Any)
        return {str(k): _coerce(v, vt, f"{where}.{k}", source) for k, v in value.items()}
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise bad()
        return build_section(tp, value, where, source)
    raise ConfigError(f"{where}: unsupported type {tp!r} in schema", key=where, source=source)


def map_item(tp: Any) -> Any:
    """The table dataclass of a *map section* declared as ``dict[str, SomeDataclass]``
    (``[queues.<name>]``: one table per name, each checked against the dataclass),
    or ``None`` for an ordinary section."""
    if get_origin(tp) is dict:
        args = get_args(tp)
        if len(args) == 2 and dataclasses.is_dataclass(args[1]):
            return args[1]
    return None


def section_doc(tp: Any) -> str:
    """A section's docstring (a map section's is its table dataclass's)."""
    item = map_item(tp)
    return ((item if item is not None else tp).__doc__ or "").strip()


def section_fields(cls: Any) -> dict[str, tuple[dataclasses.Field[Any], Any]]:
    """Field objects and resolved type hints of a section dataclass, by name (for
    a map section, the fields of each of its tables)."""
    item = map_item(cls)
    if item is not None:
        cls = item
    hints = typing.get_type_hints(cls)
    return {f.name: (f, hints[f.name]) for f in dataclasses.fields(cls) if f.init}


def build_section(
    cls: type,
    values: Mapping[str, Any],
    where: str,
    source: str,
    key_sources: Mapping[str, str] | None = None,
) -> Any:
    """Build one section dataclass from a mapping, rejecting unknown keys.

    ``key_sources`` names where each key came from (file, environment variable,
    command line) so an error points at the exact place; ``source`` is the fallback.
    """
    fields = section_fields(cls)
    kwargs: dict[str, Any] = {}
    for key, raw in values.items():
        src = key_sources.get(key, source) if key_sources else source
        if key not in fields:
            known = ", ".join(sorted(fields)) or "(none)"
            raise ConfigError(
                f"unknown key '{where}.{key}' (known keys of [{where}]: {known})",
                key=f"{where}.{key}",
                source=src,
            )
        kwargs[key] = _coerce(raw, fields[key][1], f"{where}.{key}", src)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"[{where}]: {exc}", key=where, source=source) from exc


# --- the loaded configuration -----------------------------------------------------------


class Config:
    """The effective configuration: one dataclass instance per declared section.

    Sections are read as attributes (``config.mqtt.tcp``) or with
    :meth:`section`. ``source`` is the file it came from, if any.
    """

    def __init__(
        self,
        sections: dict[str, Any],
        schema: dict[str, type],
        source: str | None,
        *,
        env: Mapping[str, str] | None = None,
        overrides: Mapping[str, Mapping[str, Any]] | None = None,
    ):
        self._sections = sections
        self.schema = schema
        self.source = source
        # Kept so a reload re-reads the file with the same environment and flags.
        self.env = dict(env or {})
        self.overrides = {k: dict(v) for k, v in (overrides or {}).items()}

    def reload(self) -> Config:
        """A fresh Config from the same file, environment and flags."""
        return load_config(self.schema, self.source, env=self.env, overrides=self.overrides)

    def section(self, name: str) -> Any:
        try:
            return self._sections[name]
        except KeyError:
            raise KeyError(f"no config section [{name}] (is its plugin enabled?)") from None

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["_sections"][name]
        except KeyError:
            raise AttributeError(name) from None

    def has(self, name: str) -> bool:
        return name in self._sections

    def as_dict(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for name, sec in self._sections.items():
            if isinstance(sec, dict):  # a map section: {table name: dataclass}
                out[name] = {k: dataclasses.asdict(v) for k, v in sec.items()}
            else:
                out[name] = dataclasses.asdict(sec)
        return out

    def listeners(self) -> dict[str, str]:
        """Every listener address in the config as ``{"mqtt.tcp": "0.0.0.0:1883"}``
        (map sections hold no listeners)."""
        out: dict[str, str] = {}
        for name, cls in self.schema.items():
            if map_item(cls) is not None:
                continue
            for key, (f, _tp) in section_fields(cls).items():
                if f.metadata.get("listener"):
                    out[f"{name}.{key}"] = getattr(self._sections[name], key)
        return out


def read_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("config file not found", source=str(p)) from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file: {exc}", source=str(p)) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}", source=str(p)) from None


def load_config(
    schema: Mapping[str, type],
    path: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Config:
    """Merge defaults, the TOML file, environment variables and CLI overrides.

    ``overrides`` are already typed values (``{"server": {"data_dir": "/x"}}``) and
    are still validated. Raises :class:`ConfigError` on the first problem.
    """
    env = os.environ if env is None else env
    source = str(path) if path is not None else "<defaults>"
    file_data = read_toml(path) if path is not None else {}

    merged: dict[str, dict[str, Any]] = {name: {} for name in schema}
    sources: dict[str, dict[str, str]] = {name: {} for name in schema}
    for name, values in file_data.items():
        if name not in schema:
            known = ", ".join(sorted(schema))
            raise ConfigError(
                f"unknown section [{name}] (known sections: {known}; is its plugin installed and enabled?)",
                key=name,
                source=source,
            )
        if not isinstance(values, dict):
            raise ConfigError(f"[{name}] must be a table", key=name, source=source)
        merged[name].update(values)
        for key in values:
            sources[name][key] = source

    for var, raw in env.items():
        if not var.startswith(ENV_PREFIX) or "__" not in var:
            continue
        sec, _, key = var[len(ENV_PREFIX) :].partition("__")
        sec, key = sec.lower(), key.lower()
        if sec not in schema:
            raise ConfigError(
                f"unknown section '{sec}' (known sections: {', '.join(sorted(schema))})",
                key=sec,
                source=f"environment variable {var}",
            )
        if map_item(schema[sec]) is not None:
            # FLUXMQ_QUEUES__ORDERS='{"type": "stream"}': one whole table as JSON,
            # merged over the file's table of that name.
            try:
                table = json.loads(raw)
            except json.JSONDecodeError:
                table = raw
            if not isinstance(table, dict):
                raise ConfigError(
                    f"{sec}.{key}: expected a JSON object (one [{sec}.{key}] table)",
                    key=f"{sec}.{key}",
                    source=f"environment variable {var}",
                )
            old = merged[sec].get(key)
            merged[sec][key] = {**old, **table} if isinstance(old, dict) else table
            sources[sec][key] = f"environment variable {var}"
            continue
        fields = section_fields(schema[sec])
        if key not in fields:
            raise ConfigError(
                f"unknown key '{sec}.{key}' (known keys of [{sec}]: {', '.join(sorted(fields))})",
                key=f"{sec}.{key}",
                source=f"environment variable {var}",
            )
        merged[sec][key] = _from_env_string(raw, fields[key][1])
        sources[sec][key] = f"environment variable {var}"

    for sec, values in (overrides or {}).items():
        if sec not in schema:
            raise ConfigError(f"unknown section '{sec}'", key=sec, source="command line")
        for key, value in values.items():
            merged[sec][key] = value
            sources[sec][key] = "command line"

    sections: dict[str, Any] = {}
    for name, cls in schema.items():
        item = map_item(cls)
        if item is not None:
            sections[name] = _build_map_section(name, item, merged[name], sources[name], source)
            continue
        sections[name] = build_section(cls, merged[name], name, source, sources[name])
    return Config(
        sections,
        dict(schema),
        str(path) if path is not None else None,
        env={k: v for k, v in env.items() if k.startswith(ENV_PREFIX)},
        overrides=overrides,
    )


def _build_map_section(
    name: str,
    item: type,
    tables: Mapping[str, Any],
    sources: Mapping[str, str],
    default_source: str,
) -> dict[str, Any]:
    """``{table name: item dataclass}`` for a map section; errors name
    ``<section>.<table>.<key>``."""
    out: dict[str, Any] = {}
    for table, values in tables.items():
        src = sources.get(table, default_source)
        if dataclasses.is_dataclass(values) and not isinstance(values, type):
            values = dataclasses.asdict(values)  # overrides may pass built tables
        if not isinstance(values, dict):
            raise ConfigError(
                f"{name}.{table}: expected a table ([{name}.{table}]), got {type(values).__name__}",
                key=f"{name}.{table}",
                source=src,
            )
        out[str(table)] = build_section(item, values, f"{name}.{table}", src)
    return out


# --- rendering: `config show`, `config init` and the reference doc ----------------------


def _toml_value(value: Any) -> str:
    """One value as inline TOML (tables inline too, for commented examples)."""
    import tomli_w

    if isinstance(value, dict):
        inner = ", ".join(f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in value.items())
        return "{ " + inner + " }" if inner else "{}"
    if isinstance(value, list) and any(isinstance(v, dict) for v in value):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return tomli_w.dumps({"v": value}).split("=", 1)[1].strip()


def render_toml(config: Config) -> str:
    """The effective configuration as TOML (``fluxmq config show``)."""
    import tomli_w

    return tomli_w.dumps(_drop_none(config.as_dict()))


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


def render_commented_defaults(schema: Mapping[str, type]) -> str:
    """A commented default file (``fluxmq config init``): every key with its help,
    type and default, commented out so the file changes nothing until edited."""
    lines = [
        "# FluxMQ configuration. Every key is shown with its default, commented out.",
        "# Any key can also be set as FLUXMQ_<SECTION>__<KEY> in the environment.",
        "",
    ]
    for name in sorted(schema):
        cls = schema[name]
        doc = section_doc(cls).splitlines()
        if map_item(cls) is not None:
            # One table per name; shown commented so the file still loads empty.
            lines.append(f"# [{name}.NAME]")
            if doc:
                lines.append(f"# {doc[0]}")
            for key, (f, tp) in section_fields(cls).items():
                default = _default_of(f)
                lines.append(f"# {f.metadata.get('help', '')} ({type_name(tp)})".replace("  ", " "))
                shown = "" if default is None else f" {_toml_value(_drop_none(default))}"
                lines.append(f"# {key} ={shown}")
            lines.append("")
            continue
        lines.append(f"[{name}]")
        if doc:
            lines.append(f"# {doc[0]}")
        for key, (f, tp) in section_fields(cls).items():
            default = _default_of(f)
            lines.append(f"# {f.metadata.get('help', '')} ({type_name(tp)})".replace("  ", " "))
            if default is None:
                lines.append(f"# {key} =")
            else:
                lines.append(f"# {key} = {_toml_value(_drop_none(default))}")
        lines.append("")
    return "\n".join(lines)


def _default_of(f: dataclasses.Field[Any]) -> Any:
    if f.default is not MISSING:
        value = f.default
    elif f.default_factory is not MISSING:
        value = f.default_factory()
    else:
        return None
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return value


def reference_rows(schema: Mapping[str, type]) -> list[tuple[str, str, str, str, str]]:
    """(section, key, type, default, help) for every key: the data behind
    ``docs/configuration.md`` and the test that keeps it complete."""
    rows = []
    for name in sorted(schema):
        # A map section's keys are shown as `<name>.key` (`queues.<name>.type`).
        prefix = "<name>." if map_item(schema[name]) is not None else ""
        for key, (f, tp) in section_fields(schema[name]).items():
            default = _default_of(f)
            rows.append(
                (
                    name,
                    prefix + key,
                    type_name(tp),
                    json.dumps(_drop_none(default)) if default is not None else "—",
                    str(f.metadata.get("help", "")),
                )
            )
    return rows


def parse_address(address: str, *, where: str = "address") -> tuple[str, int]:
    """``"host:port"`` (or ``"[::1]:port"``) -> (host, port); ConfigError if malformed."""
    text = address.strip()
    host, sep, port_s = text.rpartition(":")
    if not sep or not port_s.isdigit():
        raise ConfigError(f"{where}: expected 'host:port', got {address!r}", key=where)
    port = int(port_s)
    if not 0 <= port <= 65535:
        raise ConfigError(f"{where}: port {port} out of range 0-65535", key=where)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host or "0.0.0.0", port
