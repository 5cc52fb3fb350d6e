"""Plugin discovery: pluggy for hooks (many at once), stevedore for named drivers
(exactly one chosen by config).

What lives here: building the plugin manager, loading the ``fluxmq`` entry points
(with import errors recorded, never swallowed), the tuple of the core's default
plugins, driver lookup with a helpful error, and :func:`await_me_maybe`.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import inspect
import logging
import os
from dataclasses import dataclass, field
from typing import Any

import pluggy

from fluxmq_core import hookspecs


async def await_me_maybe(value: Any) -> Any:
    """Return ``value``, awaiting it first if it is awaitable.

    pluggy does not await: a hookimpl may return a plain value or a coroutine, and
    every caller of an async-capable hook goes through this one helper.
    """
    if inspect.isawaitable(value):
        return await value
    return value


log = logging.getLogger("fluxmq.plugins")

# FLUXMQ_TRACE_HOOKS=1 logs every hook call at debug level (pluggy's own tracing
# for pm.hook calls, and the core's per-implementation calls below).
TRACE_HOOKS = bool(os.environ.get("FLUXMQ_TRACE_HOOKS"))

ENTRY_POINT_GROUP = "fluxmq"
DRIVER_GROUPS = ("fluxmq.storage", "fluxmq.queue_log", "fluxmq.cluster")

# The core's own behaviour, written as plugins and registered before any third-party
# plugin (pluggy calls the last registered first, so installed plugins can override).
DEFAULT_PLUGINS: tuple[str, ...] = (
    "fluxmq_core.builtin",
    "fluxmq_core.auth_file",
    "fluxmq_core.callout.plugin",
    "fluxmq_core.sys_topics",
    "fluxmq_core.http.plugin",
    "fluxmq_core.webhooks.plugin",
)


class PluginError(Exception):
    """A plugin failed to import, to register or to start; names the plugin."""


@dataclass
class PluginInfo:
    """What ``fluxmq plugins`` shows for one plugin."""

    name: str
    distribution: str
    version: str
    module: str
    hooks: list[str] = field(default_factory=list)
    drivers: list[str] = field(default_factory=list)
    enabled: bool = True
    builtin: bool = False
    error: str | None = None


def _dist_of(ep: md.EntryPoint) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return ("?", "?")
    return (dist.metadata["Name"], dist.version)


def installed_drivers() -> dict[str, dict[str, md.EntryPoint]]:
    """Driver entry points by group, then by name."""
    return {group: {ep.name: ep for ep in md.entry_points(group=group)} for group in DRIVER_GROUPS}


def load_driver(group: str, name: str, *args: Any, **kwargs: Any) -> Any:
    """Instantiate the driver ``name`` of ``group`` (stevedore ``DriverManager``).

    An unknown name is a :class:`fluxmq_core.config.ConfigError` listing the installed
    drivers; a driver that fails to import or construct is a :class:`PluginError`.
    """
    from stevedore import driver as sd_driver
    from stevedore.exception import NoMatches

    from fluxmq_core.config import ConfigError

    available = sorted(installed_drivers().get(group, {}))
    if name not in available:
        raise ConfigError(
            f"unknown {group} driver {name!r}; installed: {', '.join(available) or '(none)'}",
            key=group,
        )
    try:
        mgr = sd_driver.DriverManager(
            namespace=group,
            name=name,
            invoke_on_load=True,
            invoke_args=args,
            invoke_kwds=kwargs,
            on_load_failure_callback=_raise_load_failure,
        )
    except NoMatches as exc:  # pragma: no cover - guarded above
        raise ConfigError(
            f"unknown {group} driver {name!r}; installed: {', '.join(available)}"
        ) from exc
    except PluginError:
        raise
    except Exception as exc:
        raise PluginError(f"{group} driver {name!r} failed to start: {exc!r}") from exc
    return mgr.driver


def _raise_load_failure(_mgr: Any, ep: Any, exc: BaseException) -> None:
    raise PluginError(f"driver {ep.name!r} ({ep.value}) failed to load: {exc!r}") from exc


class PluginRegistry:
    """Builds the plugin manager: hookspecs, default plugins, installed plugins.

    ``enable`` restricts installed plugins to those entry-point names (``--plugins``);
    ``None`` enables all. ``extra`` registers additional plugin objects (the test kit's
    throw-away plugins). Import errors are recorded in :attr:`infos` and raised by
    :meth:`check` so ``fluxmq run`` fails loudly while ``fluxmq plugins`` can show them.
    """

    def __init__(
        self,
        enable: list[str] | None = None,
        extra: list[tuple[str, object]] | None = None,
        *,
        load_entry_points: bool = True,
    ) -> None:
        self.pm = pluggy.PluginManager("fluxmq")
        self.pm.add_hookspecs(hookspecs)
        self.infos: list[PluginInfo] = []
        self.enable = enable
        if TRACE_HOOKS:
            self.pm.trace.root.setwriter(lambda s: log.debug("hook: %s", s.rstrip()))
            self.pm.enable_tracing()
        core_version = md.version("fluxmq-core") if _has_dist("fluxmq-core") else "0"
        for modname in DEFAULT_PLUGINS:
            module = importlib.import_module(modname)
            self.pm.register(module, name=modname)
            self.infos.append(
                PluginInfo(
                    modname,
                    "fluxmq-core",
                    core_version,
                    modname,
                    self._hooks_of(module),
                    builtin=True,
                )
            )
        known = set()
        if load_entry_points:
            for ep in sorted(md.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
                if ep.name in known:
                    continue
                known.add(ep.name)
                dist, version = _dist_of(ep)
                info = PluginInfo(ep.name, dist, version, ep.value)
                info.enabled = enable is None or ep.name in enable
                info.drivers = self._drivers_of(dist)
                self.infos.append(info)
                if not info.enabled:
                    continue
                try:
                    plugin = ep.load()
                    self.pm.register(plugin, name=ep.name)
                except Exception as exc:  # recorded and raised by check()
                    info.error = f"{type(exc).__name__}: {exc}"
                    continue
                info.hooks = self._hooks_of(plugin)
        if enable is not None:
            missing = [n for n in enable if n not in known]
            if missing:
                self.infos.append(
                    PluginInfo(
                        ",".join(missing),
                        "?",
                        "?",
                        "?",
                        enabled=True,
                        error=f"not installed (installed: {', '.join(sorted(known)) or 'none'})",
                    )
                )
        for name, obj in extra or []:
            self.pm.register(obj, name=name)
            self.infos.append(PluginInfo(name, "(test)", "0", repr(obj), self._hooks_of(obj)))
        # The core's drivers are shown once, on the module that declares its config.
        self.infos[0].drivers = self._drivers_of("fluxmq-core")

    def _hooks_of(self, plugin: object) -> list[str]:
        return sorted(caller.name for caller in self.pm.get_hookcallers(plugin) or [])

    @staticmethod
    def _drivers_of(dist: str) -> list[str]:
        out = []
        for group, eps in installed_drivers().items():
            for name, ep in eps.items():
                if _dist_of(ep)[0] == dist:
                    out.append(f"{group}:{name}")
        return sorted(out)

    def check(self) -> None:
        """Raise :class:`PluginError` naming every plugin that failed to load."""
        bad = [i for i in self.infos if i.error and i.enabled]
        if bad:
            raise PluginError(
                "; ".join(
                    f"plugin {i.name!r} ({i.distribution}) failed to load: {i.error}" for i in bad
                )
            )

    def config_schema(self) -> dict[str, type]:
        """Every config section declared through ``fluxmq_add_config``."""
        schema: dict[str, type] = {}
        for impl in reversed(self.pm.hook.fluxmq_add_config.get_hookimpls()):
            try:
                result = impl.function()
            except Exception as exc:
                raise PluginError(
                    f"plugin {impl.plugin_name!r} failed in fluxmq_add_config: {exc!r}"
                ) from exc
            if result is None:
                continue
            if not isinstance(result, dict):
                raise PluginError(
                    f"plugin {impl.plugin_name!r}: fluxmq_add_config must return a dict of "
                    f"section name -> dataclass, got {type(result).__name__}"
                )
            for name, cls in result.items():
                if name in schema and schema[name] is not cls:
                    raise PluginError(
                        f"config section [{name}] declared twice (again by plugin {impl.plugin_name!r})"
                    )
                schema[name] = cls
        return schema


def _has_dist(name: str) -> bool:
    try:
        md.distribution(name)
    except md.PackageNotFoundError:
        return False
    return True


async def call_each(
    pm: pluggy.PluginManager, hook_name: str, **kwargs: Any
) -> list[tuple[str, Any]]:
    """Call every implementation of ``hook_name`` in pluggy order, awaiting each
    result, and return ``(plugin_name, result)`` pairs.

    A failing implementation raises :class:`PluginError` naming the plugin: used for
    start-up hooks, where a half-started broker is worse than no broker.
    """
    out = []
    for impl in reversed(getattr(pm.hook, hook_name).get_hookimpls()):
        if TRACE_HOOKS:
            log.debug("hook: %s -> %s", hook_name, impl.plugin_name)
        try:
            result = await await_me_maybe(impl.function(*[kwargs[a] for a in impl.argnames]))
        except PluginError:
            raise
        except Exception as exc:
            from fluxmq_core.config import ConfigError

            if isinstance(exc, ConfigError):
                raise
            raise PluginError(
                f"plugin {impl.plugin_name!r} failed in {hook_name}: {exc!r}"
            ) from exc
        out.append((impl.plugin_name, result))
    return out
