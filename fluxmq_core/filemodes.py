"""Secret files (password file, TLS private keys) and who may read them.

The broker does not refuse to start over a file mode, as Mosquitto 2.0 does not: an
operator may have reasons (a group-readable key shared with a sidecar). It logs a
warning that names the file and the fix, once per load, so a key copied with the
default umask does not stay world-readable unnoticed.
"""

from __future__ import annotations

import logging
import os
import stat

log = logging.getLogger("fluxmq.security")

__all__ = ["exposed_mode", "warn_if_exposed"]


def exposed_mode(path: str | os.PathLike[str]) -> int | None:
    """The file's permission bits when a group or other users may read or write
    it, else None (also None when the file cannot be stat'ed: the loader that
    opens it reports that error better)."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return None
    return mode if mode & 0o077 else None


def warn_if_exposed(path: str | os.PathLike[str], what: str) -> bool:
    """Log a warning when ``path`` (a ``what``: "password file", "TLS private
    key") is open to the group or other users; return whether it warned."""
    mode = exposed_mode(path)
    if mode is None:
        return False
    log.warning(
        "%s %s has mode %04o: other users of this machine can read it; "
        "fix with `chmod 600 %s` (and make it owned by the broker's user)",
        what,
        os.fspath(path),
        mode,
        os.fspath(path),
    )
    return True
