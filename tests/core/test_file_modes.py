"""Secret files: ``fluxmq passwd`` writes mode 0600 (new and rewritten files), and
a password file other users can read is loaded with a warning naming the fix, as
Mosquitto 2.0 does. (TLS private keys: ``test_tls.py``.)"""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from fluxmq_core.auth_file import load_password_file, set_password
from fluxmq_core.filemodes import exposed_mode, warn_if_exposed


def _passwd(*args: str, stdin: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLUXMQ_")}
    return subprocess.run(
        [sys.executable, "-m", "fluxmq_core.cli", "passwd", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_passwd_creates_the_file_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "passwd"
    old = os.umask(0o022)  # a usual umask would give 0644
    try:
        out = _passwd(str(path), "alice", "--password-stdin", stdin="s3cret\n")
    finally:
        os.umask(old)
    assert out.returncode == 0, out.stderr
    assert _mode(path) == 0o600


def test_passwd_rewrites_an_open_file_as_0600(tmp_path: Path) -> None:
    path = tmp_path / "passwd"
    path.write_text("# users\n")
    path.chmod(0o644)
    out = _passwd(str(path), "bob", "--password-stdin", stdin="pw\n")
    assert out.returncode == 0, out.stderr
    assert _mode(path) == 0o600
    assert path.read_text().startswith("# users\nbob:")
    path.chmod(0o664)
    assert _passwd(str(path), "bob", "--delete", stdin="").returncode == 0
    assert _mode(path) == 0o600


def test_open_password_file_is_loaded_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "passwd"
    set_password(path, "alice", "pw", iterations=1000)
    with caplog.at_level(logging.WARNING, logger="fluxmq.security"):
        assert list(load_password_file(path)) == ["alice"]
    assert not caplog.records  # 0600: nothing to say
    path.chmod(0o640)
    with caplog.at_level(logging.WARNING, logger="fluxmq.security"):
        assert list(load_password_file(path)) == ["alice"]  # still loaded
    (record,) = caplog.records
    text = record.getMessage()
    assert "password file" in text and str(path) in text and "0640" in text
    assert f"chmod 600 {path}" in text


@pytest.mark.parametrize(
    ("mode", "exposed"), [(0o600, False), (0o400, False), (0o640, True), (0o604, True)]
)
def test_which_modes_count_as_exposed(tmp_path: Path, mode: int, exposed: bool) -> None:
    path = tmp_path / "secret"
    path.write_text("x")
    path.chmod(mode)
    assert (exposed_mode(path) is not None) is exposed
    path.chmod(0o600)


def test_missing_file_is_not_a_warning(tmp_path: Path) -> None:
    assert warn_if_exposed(tmp_path / "missing", "password file") is False
