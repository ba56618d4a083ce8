"""An injectable clock, so that tests never sleep for real."""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime
from typing import Protocol

__all__ = ["Clock", "StopClock", "SystemClock", "utcnow"]


class Clock(Protocol):
    def monotonic(self) -> float: ...
    def now(self) -> datetime: ...
    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock."""

    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class StopClock(SystemClock):
    """The system clock whose sleeps end early when `stop` is set (prompt SIGTERM)."""

    def __init__(self, stop: asyncio.Event) -> None:
        self.stop = stop

    async def sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), timeout=max(seconds, 0.0))


def utcnow() -> datetime:
    return datetime.now(UTC)
