"""The web console in a real browser for the cross-plugin tests: Debian's Chromium
driven by Playwright (never a browser Playwright downloads), headless, with a
throw-away profile. Not a test module; imported as ``tests.e2e._console`` by tests
that have already skipped without Playwright."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest


def chromium() -> str:
    """The Chromium binary (``FLUXMQ_CHROMIUM`` or on PATH), or a skip saying how
    to install it."""
    path = os.environ.get("FLUXMQ_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not os.path.exists(path):
        pytest.skip("Chromium not found: `apt-get install chromium` to run the browser tests")
    return path


@contextmanager
def browser_page(wait: float) -> Iterator[Any]:
    """A new page of a headless Chromium whose actions time out after ``wait``
    seconds; ``page.errors`` collects the page's uncaught errors, and none may be
    left when the block ends without an exception."""
    from playwright import sync_api

    path = chromium()
    with sync_api.sync_playwright() as pw, tempfile.TemporaryDirectory() as profile:
        ctx = pw.chromium.launch_persistent_context(
            profile,
            executable_path=path,
            headless=True,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"],
            viewport={"width": 1280, "height": 900},
        )
        ctx.set_default_timeout(wait * 1000)
        try:
            p = ctx.new_page()
            p.errors = []
            p.on("pageerror", lambda e: p.errors.append(str(e)))
            yield p
            assert p.errors == []
        finally:
            ctx.close()
