"""This machine's own non-loopback address, for tests of what the broker allows a
peer that is not on loopback (secure defaults), without any other host involved."""

from __future__ import annotations

import re
import socket
import subprocess

__all__ = ["host_ipv4"]


def _candidates() -> list[str]:
    found: list[str] = []
    try:
        out = subprocess.run(
            ["ip", "-4", "-o", "addr", "show", "scope", "global"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout
        found += re.findall(r"\binet (\d+\.\d+\.\d+\.\d+)/", out)
    except (OSError, subprocess.SubprocessError):
        pass
    try:  # the address the default route would use (no packet is sent)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("198.51.100.1", 9))
            found.append(s.getsockname()[0])
    except OSError:
        pass
    return found


def host_ipv4() -> str | None:
    """A non-loopback IPv4 address of this machine that a socket can bind (TCP and
    UDP), or None when there is none: tests skip then, saying why."""
    for ip in _candidates():
        if ip.startswith("127."):
            continue
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind((ip, 0))
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.bind((ip, 0))
        except OSError:
            continue
        return ip
    return None
