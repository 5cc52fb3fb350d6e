"""The ``fluxmq`` command line, run as a real subprocess where exit codes matter."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fluxmq_core.testing import BrokerProcess


def fluxmq(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("FLUXMQ_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "fluxmq_core.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=full_env,
        input=stdin,
        timeout=60,
    )


def test_plugins_json_lists_defaults_and_drivers() -> None:
    out = fluxmq("plugins", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    names = {p["name"]: p for p in data["plugins"]}
    for builtin in ("fluxmq_core.builtin", "fluxmq_core.auth_file", "fluxmq_core.sys_topics"):
        assert names[builtin]["builtin"] and names[builtin]["enabled"]
        assert names[builtin]["distribution"] == "fluxmq-core"
    assert "fluxmq_add_config" in names["fluxmq_core.builtin"]["hooks"]
    assert "fluxmq.storage:memory" in names["fluxmq_core.builtin"]["drivers"]
    assert "memory" in data["drivers"]["fluxmq.storage"]
    assert "memory" in data["drivers"]["fluxmq.queue_log"]
    assert "none" in data["drivers"]["fluxmq.cluster"]


def test_plugins_text_output() -> None:
    out = fluxmq("plugins")
    assert out.returncode == 0
    assert "fluxmq_core.auth_file" in out.stdout and "fluxmq.storage: " in out.stdout


def test_config_validate_ok_and_errors(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text('[log]\nlevel = "debug"\n')
    out = fluxmq("config", "validate", "--config", str(good))
    assert out.returncode == 0 and "OK" in out.stdout

    bad = tmp_path / "bad.toml"
    bad.write_text('[server]\nshutdown_timeout = "soon"\n')
    out = fluxmq("config", "validate", "--config", str(bad))
    assert out.returncode == 2
    assert "server.shutdown_timeout" in out.stderr and "bad.toml" in out.stderr
    assert "expected float" in out.stderr

    unknown = tmp_path / "unknown.toml"
    unknown.write_text('[log]\nlevle = "debug"\n')
    out = fluxmq("config", "validate", "--config", str(unknown))
    assert out.returncode == 2 and "log.levle" in out.stderr


def test_config_show_reflects_env(tmp_path: Path) -> None:
    out = fluxmq("config", "show", env={"FLUXMQ_SERVER__DATA_DIR": "/srv/fluxmq"})
    assert out.returncode == 0
    assert 'data_dir = "/srv/fluxmq"' in out.stdout


def test_config_init_writes_a_loadable_commented_file(tmp_path: Path) -> None:
    target = tmp_path / "fluxmq.toml"
    out = fluxmq("config", "init", str(target))
    assert out.returncode == 0, out.stderr
    text = target.read_text()
    assert "[server]" in text and "# data_dir = " in text
    assert fluxmq("config", "validate", "--config", str(target)).returncode == 0
    again = fluxmq("config", "init", str(target))
    assert again.returncode == 1 and "exists" in again.stderr


def test_default_config_file_in_cwd_is_used(tmp_path: Path) -> None:
    (tmp_path / "fluxmq.toml").write_text("[log]\nlevel = 3\n")
    out = fluxmq("config", "validate", cwd=tmp_path)
    assert out.returncode == 2 and "log.level" in out.stderr


def test_unknown_storage_driver_lists_installed(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[storage]\ndriver = "nosuch"\n')
    out = fluxmq("run", "--config", str(cfg), "--plugins", "", "--data-dir", str(tmp_path / "d"))
    assert out.returncode == 2
    assert "nosuch" in out.stderr and "memory" in out.stderr


def test_unknown_plugin_name_is_an_error(tmp_path: Path) -> None:
    out = fluxmq("run", "--plugins", "nosuchplugin", "--data-dir", str(tmp_path))
    assert out.returncode == 1 and "nosuchplugin" in out.stderr


def test_passwd_adds_and_deletes_users(tmp_path: Path) -> None:
    pwfile = tmp_path / "passwd"
    out = fluxmq("passwd", str(pwfile), "alice", "--password-stdin", stdin="s3cret\n")
    assert out.returncode == 0, out.stderr
    line = pwfile.read_text().strip()
    assert line.startswith("alice:$7$")
    from fluxmq_core.auth_file import load_password_file, verify_password

    assert verify_password(b"s3cret", load_password_file(pwfile)["alice"])
    assert fluxmq("passwd", str(pwfile), "alice", "--delete").returncode == 0
    assert "alice" not in pwfile.read_text()
    assert fluxmq("passwd", str(pwfile), "alice", "--delete").returncode == 1


def test_run_sigterm_exits_zero_quickly(tmp_path: Path) -> None:
    with BrokerProcess(["--plugins", ""]) as proc:
        proc.start()
        t0 = time.monotonic()
        proc.signal(signal.SIGTERM)
        assert proc.wait(10) == 0, proc.output()
        assert time.monotonic() - t0 < 10
        assert "stopped" in proc.output()


def test_run_sigint_exits_zero(tmp_path: Path) -> None:
    with BrokerProcess(["--plugins", ""]) as proc:
        proc.start()
        proc.signal(signal.SIGINT)
        assert proc.wait(10) == 0, proc.output()


def test_run_sighup_reloads_log_level(tmp_path: Path) -> None:
    with BrokerProcess(["--plugins", ""], config_text='[log]\nlevel = "info"\n') as proc:
        proc.start()
        cfg = proc.dir / "fluxmq.toml"
        cfg.write_text('[log]\nlevel = "debug"\nformat = "json"\n')
        proc.signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "reloaded" not in proc.output() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "reloaded: log, auth" in proc.output()
        proc.signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        # After the reload, lines are JSON.
        last = [ln for ln in proc.output().splitlines() if ln.startswith("{")]
        assert last and json.loads(last[-1])["logger"].startswith("fluxmq")


def test_run_bad_config_exits_two(tmp_path: Path) -> None:
    with BrokerProcess(["--plugins", ""], config_text="[server]\nnode_id = 5\n") as proc:
        with pytest.raises(RuntimeError, match="exited with 2"):
            proc.start()
        assert "server.node_id" in proc.output()


def test_version() -> None:
    out = fluxmq("version")
    assert out.returncode == 0 and out.stdout.strip()


def test_passwd_bad_username_is_a_clean_error(tmp_path: Path) -> None:
    out = fluxmq("passwd", str(tmp_path / "pw"), "a:b", "--password-stdin", stdin="x\n")
    assert out.returncode == 1
    assert "Traceback" not in out.stderr and "fluxmq: error:" in out.stderr
