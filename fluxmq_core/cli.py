"""The ``fluxmq`` command line (typer).

Exit codes: 0 success, 2 configuration error (bad file, key, type or value; unknown
driver), 1 anything else. Every command that reads configuration takes
``--config`` (default: ``$FLUXMQ_CONFIG``, else ``./fluxmq.toml`` when present) and
``--plugins`` (enable only these installed plugins).
"""

from __future__ import annotations

import asyncio
import dataclasses
import getpass
import json
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

import typer

from fluxmq_core import __version__
from fluxmq_core.cluster_cli import cluster_app
from fluxmq_core.config import (
    Config,
    ConfigError,
    load_config,
    render_commented_defaults,
    render_toml,
)
from fluxmq_core.plugins import PluginError, PluginRegistry
from fluxmq_core.queue_cli import queue_app

app = typer.Typer(
    help="FluxMQ: a multi-protocol message broker built from plugins. The bundled ones "
    "speak MQTT and AMQP 0.9.1, the core HTTP; `fluxmq plugins` lists what is installed.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
config_app = typer.Typer(help="Show, check or create configuration.", no_args_is_help=True)
plugin_app = typer.Typer(help="Tools for plugin authors.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(plugin_app, name="plugin")
app.add_typer(queue_app, name="queue")
app.add_typer(cluster_app, name="cluster")

EXIT_CONFIG = 2
EXIT_ERROR = 1

ConfigOpt = typer.Option(None, "--config", "-c", help="TOML config file.")
PluginsOpt = typer.Option(
    None, "--plugins", help="Comma-separated plugin names to enable (default: all)."
)


def _fail(message: str, code: int) -> NoReturn:
    typer.echo(f"fluxmq: error: {message}", err=True)
    raise typer.Exit(code)


def _config_path(config: Path | None) -> Path | None:
    if config is not None:
        return config
    env = os.environ.get("FLUXMQ_CONFIG")
    if env:
        return Path(env)
    default = Path("fluxmq.toml")
    return default if default.is_file() else None


def _registry(plugins: str | None) -> PluginRegistry:
    enable = [p.strip() for p in plugins.split(",") if p.strip()] if plugins else None
    return PluginRegistry(enable=enable)


def _load(
    config: Path | None,
    plugins: str | None,
    overrides: dict[str, dict[str, Any]] | None = None,
) -> tuple[PluginRegistry, Config]:
    try:
        registry = _registry(plugins)
        registry.check()
        schema = registry.config_schema()
        cfg = load_config(schema, _config_path(config), overrides=overrides)
    except ConfigError as exc:
        _fail(str(exc), EXIT_CONFIG)
    except PluginError as exc:
        _fail(str(exc), EXIT_ERROR)
    return registry, cfg


@app.command()
def run(
    config: Path | None = ConfigOpt,
    plugins: str | None = PluginsOpt,
    data_dir: str | None = typer.Option(None, "--data-dir", help="Overrides [server] data_dir."),
    log_level: str | None = typer.Option(None, "--log-level", help="Overrides [log] level."),
    ready_file: str | None = typer.Option(
        None, "--ready-file", help="Write the bound listener addresses as JSON here once ready."
    ),
    workers: str | None = typer.Option(
        None,
        "--workers",
        help="Broker processes sharing every listener, run as one cluster (needs the "
        "fluxmq-etcd plugin); 'auto' = one per core. Overrides [server] workers.",
    ),
) -> None:
    """Start the broker. SIGINT/SIGTERM stop it cleanly; SIGHUP reloads log level, users and ACL."""
    from fluxmq_core.logs import setup_logging
    from fluxmq_core.server import Broker, install_event_loop_policy, serve
    from fluxmq_core.workers import resolve_workers, run_workers

    overrides: dict[str, dict[str, Any]] = {}
    if data_dir:
        overrides.setdefault("server", {})["data_dir"] = data_dir
    if log_level:
        overrides.setdefault("log", {})["level"] = log_level
    registry, cfg = _load(config, plugins, overrides)
    setup_logging(cfg.log.level, cfg.log.format)
    try:
        count = resolve_workers(workers if workers is not None else cfg.server.workers)
    except ConfigError as exc:
        _fail(str(exc), EXIT_CONFIG)
    if count > 1:
        passed: list[str] = []
        if config is not None or _config_path(None) is not None:
            passed += ["--config", str(_config_path(config))]
        if plugins:
            passed += ["--plugins", plugins]
        if log_level:
            passed += ["--log-level", log_level]
        try:
            code = run_workers(cfg, count, run_args=passed, ready_file=ready_file)
        except ConfigError as exc:
            _fail(str(exc), EXIT_CONFIG)
        raise typer.Exit(code)
    loop_name = install_event_loop_policy()
    import logging

    logging.getLogger("fluxmq").info("FluxMQ %s starting (%s)", __version__, loop_name)
    broker = Broker(cfg, registry)
    try:
        asyncio.run(serve(broker, ready_file))
    except ConfigError as exc:
        _fail(str(exc), EXIT_CONFIG)
    except PluginError as exc:
        _fail(str(exc), EXIT_ERROR)
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


@app.command("plugins")
def plugins_cmd(
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    plugins: str | None = PluginsOpt,
) -> None:
    """List discovered plugins and drivers, with any import error."""
    from fluxmq_core.plugins import installed_drivers

    registry = _registry(plugins)
    drivers = {
        group: {name: ep.value for name, ep in eps.items()}
        for group, eps in installed_drivers().items()
    }
    if as_json:
        out = {"plugins": [dataclasses.asdict(i) for i in registry.infos], "drivers": drivers}
        typer.echo(json.dumps(out, indent=2))
        return
    for info in registry.infos:
        state = "enabled" if info.enabled else "disabled"
        if info.error:
            state = f"ERROR: {info.error}"
        typer.echo(f"{info.name:28} {info.distribution} {info.version}  [{state}]")
        if info.hooks:
            typer.echo(f"    hooks:   {', '.join(info.hooks)}")
        if info.drivers:
            typer.echo(f"    drivers: {', '.join(info.drivers)}")
    typer.echo("drivers:")
    for group, names in drivers.items():
        typer.echo(f"    {group}: {', '.join(sorted(names)) or '(none)'}")
    if any(i.error and i.enabled for i in registry.infos):
        raise typer.Exit(EXIT_ERROR)


@config_app.command("show")
def config_show(config: Path | None = ConfigOpt, plugins: str | None = PluginsOpt) -> None:
    """Print the effective configuration (defaults + file + environment)."""
    _registry_, cfg = _load(config, plugins)
    typer.echo(render_toml(cfg), nl=False)


@config_app.command("validate")
def config_validate(config: Path | None = ConfigOpt, plugins: str | None = PluginsOpt) -> None:
    """Check a configuration; exit 2 with the offending key on error."""
    _registry_, cfg = _load(config, plugins)
    typer.echo(f"{cfg.source or 'defaults'}: OK")


@config_app.command("init")
def config_init(
    output: Path = typer.Argument(Path("fluxmq.toml"), help="File to write."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
    plugins: str | None = PluginsOpt,
) -> None:
    """Write a commented default configuration file."""
    registry = _registry(plugins)
    try:
        schema = registry.config_schema()
    except PluginError as exc:
        _fail(str(exc), EXIT_ERROR)
    if output.exists() and not force:
        _fail(f"{output} exists (use --force to overwrite)", EXIT_ERROR)
    output.write_text(render_commented_defaults(schema), encoding="utf-8")
    typer.echo(f"wrote {output}")


@config_app.command("reference")
def config_reference(
    plugins: str | None = PluginsOpt,
    write: Path | None = typer.Option(
        None, "--write", help="Replace the block between the CONFIG REFERENCE markers of this file."
    ),
) -> None:
    """Print every key of every section as Markdown tables (the docs' reference)."""
    from fluxmq_core.config import reference_rows, section_doc

    registry = _registry(plugins)
    try:
        schema = registry.config_schema()
    except PluginError as exc:
        _fail(str(exc), EXIT_ERROR)

    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    out: list[str] = []
    current = None
    for section, key, type_, default, help_ in reference_rows(schema):
        if section != current:  # rows come sorted by section: one heading and table each
            current = section
            if out:
                out.append("")
            out += [f"### `[{section}]`", ""]
            summary = section_doc(schema[section]).splitlines()
            if summary:
                out += [summary[0].strip(), ""]
            out += ["| key | type | default | description |", "| --- | --- | --- | --- |"]
        shown = default if default == "—" else f"`{default}`"
        out.append(f"| `{section}.{key}` | {cell(type_)} | {cell(shown)} | {cell(help_)} |")
    text = "\n".join(out)
    if write is None:
        typer.echo(text)
        return
    begin, end = "<!-- BEGIN CONFIG REFERENCE -->", "<!-- END CONFIG REFERENCE -->"
    doc = write.read_text(encoding="utf-8")
    if begin not in doc or end not in doc:
        _fail(f"{write} has no {begin} / {end} markers", EXIT_ERROR)
    head, rest = doc.split(begin, 1)
    _old, tail = rest.split(end, 1)
    write.write_text(f"{head}{begin}\n{text}\n{end}{tail}", encoding="utf-8")
    typer.echo(f"updated {write}")


@app.command()
def passwd(
    file: Path = typer.Argument(..., help="Password file (Mosquitto-compatible)."),
    username: str = typer.Argument(...),
    delete: bool = typer.Option(False, "--delete", "-D", help="Remove the user."),
    password_stdin: bool = typer.Option(
        False, "--password-stdin", help="Read the password from stdin."
    ),
    scram: bool = typer.Option(
        False,
        "--scram",
        help="Write SCRAM-SHA-256 credentials (for SCRAM logins; Mosquitto cannot read them).",
    ),
) -> None:
    """Add or change a user in a password file, or delete one.

    The file is (re)written with mode 0600: only the broker's user should read the
    hashes. The broker warns at start when the file is readable by others."""
    from fluxmq_core.auth_file import AuthFileError, delete_user, set_password

    try:
        if delete:
            if not delete_user(file, username):
                _fail(f"no user {username!r} in {file}", EXIT_ERROR)
            typer.echo(f"deleted {username}")
            return
        if password_stdin:
            password = sys.stdin.readline().rstrip("\n")
        else:
            password = getpass.getpass("Password: ")
            if getpass.getpass("Reenter password: ") != password:
                _fail("passwords do not match", EXIT_ERROR)
        if not password:
            _fail("empty password", EXIT_ERROR)
        set_password(file, username, password, scheme="scram-sha-256" if scram else "pbkdf2-sha512")
    except AuthFileError as exc:
        _fail(str(exc), EXIT_CONFIG)
    except ValueError as exc:  # a username the file format or SASLprep cannot take
        _fail(str(exc), EXIT_ERROR)
    typer.echo(f"updated {username} in {file}")


@plugin_app.command("new")
def plugin_new(
    name: str = typer.Argument(
        ..., help="Plugin name, e.g. 'audit' -> fluxmq-audit / fluxmq_audit."
    ),
    directory: Path = typer.Option(
        Path("."), "--dir", help="Where to create the fluxmq-NAME folder."
    ),
) -> None:
    """Scaffold a plugin distribution whose own tests pass out of the box."""
    from fluxmq_core.scaffold import ScaffoldError, scaffold_plugin

    try:
        path = scaffold_plugin(name, directory)
    except ScaffoldError as exc:
        _fail(str(exc), EXIT_ERROR)
    typer.echo(f"created {path}")


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


def _register_extensions() -> None:
    """Commands from other distributions: each ``fluxmq.cli`` entry point is a
    ``register(app, queue_app)`` function (``fluxmq-client`` adds ``pub``, ``sub``,
    ``queue publish`` and ``queue consume``). Without it those names still exist and
    say what to install, instead of "no such command"."""
    from importlib.metadata import entry_points

    for ep in entry_points(group="fluxmq.cli"):
        try:
            ep.load()(app, queue_app)
        except Exception as exc:  # a broken extension must not break the broker's CLI
            typer.echo(f"fluxmq: warning: CLI extension {ep.name!r} failed: {exc}", err=True)
    have = {c.name for c in app.registered_commands}
    for name in ("pub", "sub"):
        if name not in have:

            def missing() -> None:
                _fail("this command needs the client: pip install fluxmq-client", EXIT_ERROR)

            app.command(name, help="(needs fluxmq-client)")(missing)


_register_extensions()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
