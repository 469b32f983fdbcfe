"""Time, injectable: everything that waits or reads the time goes through a :class:`Clock`."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

__all__ = ["Clock", "SystemClock"]


class Clock(Protocol):
    """Source of time for backoff, polling and expiry.

    ``monotonic()`` measures durations; ``time()`` is wall-clock epoch seconds (UTC), used
    to compare with record creation times. ``sleep()`` waits; a test clock may advance
    virtual time instead of waiting.
    """

    def monotonic(self) -> float: ...

    def time(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock."""

    __slots__ = ()

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
