"""Plugin discovery: pluggy for hooks (many at once), stevedore for named drivers
(exactly one chosen by config).

What lives here: building the plugin manager, loading the ``fluxmq`` entry points
(with import errors recorded, never swallowed), the tuple of the core's default
plugins, driver lookup with a helpful error, and :func:`await_me_maybe`.
"""

from __future__ import annotations

import inspect
from typing import Any


async def await_me_maybe(value: Any) -> Any:
    """Return ``value``, awaiting it first if it is awaitable.

    pluggy does not await: a hookimpl may return a plain value or a coroutine, and
    every caller of an async-capable hook goes through this one helper.
    """
    if inspect.isawaitable(value):
        return await value
    return value
