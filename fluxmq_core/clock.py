"""The broker clock, injectable so tests can move time without sleeping.

The core and plugins read wall-clock seconds through ``context.clock()`` (message
timestamps, expiry deadlines, session expiry). Timers still run on the event loop;
the clock only answers "what time is it".
"""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], float]

system_clock: Clock = time.time


class ManualClock:
    """A clock that moves only when told to (for tests)."""

    __slots__ = ("now",)

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
