"""Errors that cross the line between the core's services and plugins.

A leaf module: it imports nothing from FluxMQ, so hookspecs, contract types, services
and plugins can all raise and catch these without importing each other. Errors that
belong to one layer stay there (``TopicError`` in ``router/topics.py``, each
protocol's ``ProtocolError`` in its codec).
"""

from __future__ import annotations

import os

__all__ = ["AuthError", "AuthFileError"]


class AuthError(Exception):
    """An enhanced-authentication exchange failed: bad credentials, a malformed or
    out-of-order message, or an error inside the method. The client is refused.

    ``reason`` is short and safe to send to the client as a protocol reason string
    (for SCRAM an RFC 5802 error value such as ``"invalid-proof"``); ``str()`` may
    say more, for logs. Methods registered by plugins raise it to refuse.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        super().__init__(f"{reason}: {detail}" if detail else reason)


class AuthFileError(Exception):
    """A password or ACL file could not be read or is malformed.

    ``str()`` names the file and, where known, the line (password file) or the rule
    number and key (ACL file), so the operator can fix it without guessing. Raised
    from ``fluxmq_auth_setup`` it stops the broker at start-up, or keeps the previous
    files in force on reload.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        message: str,
        *,
        line: int | None = None,
        rule: int | None = None,
        key: str | None = None,
    ) -> None:
        self.path = str(path)
        self.line = line
        self.rule = rule
        self.key = key
        self.message = message
        where = self.path if line is None else f"{self.path}:{line}"
        if rule is not None:
            where += f": rule {rule}"
        if key is not None:
            where += f": key {key!r}"
        super().__init__(f"{where}: {message}")
