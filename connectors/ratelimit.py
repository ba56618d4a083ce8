"""Client-side limits, so that the APIs' limits are honoured, not discovered.

`RollingWindow` admits at most `calls` starts in any `window_s` seconds — Marketo counts
100 calls per *rolling* 20 s, so a token bucket refilled continuously would overshoot at
window edges. `Limiter` adds a cap on calls in flight (Marketo: 10 concurrent; best
practice 5). `Pace` spreads calls evenly within the same budget, for callers that answer
within a deadline. All sleep through the injected clock.
"""

from __future__ import annotations

import asyncio
from collections import deque
from types import TracebackType

from actions_sync.clock import Clock, SystemClock
from actions_sync.metrics import RATE_LIMIT_WAIT_SECONDS

__all__ = ["Limiter", "Pace", "RollingWindow"]


class RollingWindow:
    """At most `calls` admissions in any window of `window_s` (+ `margin_s`) seconds.

    The margin absorbs the difference between when we send and when the server counts a
    call (network latency varies per call).
    """

    def __init__(
        self, calls: int, window_s: float, clock: Clock | None = None, margin_s: float = 0.25
    ) -> None:
        if calls < 1 or window_s <= 0:
            raise ValueError("a rolling window needs calls >= 1 and window_s > 0")
        self.calls = calls
        self.window_s = window_s + margin_s
        self._clock = clock or SystemClock()
        self._starts: deque[float] = deque()
        self._lock = asyncio.Lock()

    async def acquire(self) -> float:
        """Wait for a slot; return the seconds waited."""
        waited = 0.0
        async with self._lock:  # FIFO: callers are admitted in arrival order
            while True:
                now = self._clock.monotonic()
                while self._starts and now - self._starts[0] >= self.window_s:
                    self._starts.popleft()
                if len(self._starts) < self.calls:
                    self._starts.append(now)
                    return waited
                pause = self.window_s - (now - self._starts[0])
                waited += pause
                await self._clock.sleep(pause)


class Limiter:
    """`async with limiter:` around every API call: rolling-window pace + in-flight cap."""

    def __init__(self, api: str, max_in_flight: int, window: RollingWindow | None = None) -> None:
        self.api = api
        self.window = window
        self._slots = asyncio.Semaphore(max_in_flight)

    async def __aenter__(self) -> Limiter:
        await self._slots.acquire()
        if self.window is not None:
            try:
                waited = await self.window.acquire()
            except BaseException:
                self._slots.release()
                raise
            if waited:
                RATE_LIMIT_WAIT_SECONDS.labels(self.api).inc(waited)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._slots.release()


class Pace:
    """Calls spread evenly over a rolling window's budget, with a small credit.

    A rolling window lets `calls` go at once and then nothing for a whole window: fine
    for a sink, fatal for a caller that must answer within seconds (the send check would
    spend 100 calls in 5 s and then wait 15). Here one call may start every
    `(window_s + margin_s) / (calls - burst + 1)` seconds, and up to `burst` slots left
    unused (while the caller was busy between two batches) may be used late; in any
    window at most `calls` start, so the window never trips. What arrives between two
    calls is gathered into the next one (`due_in`). (GCRA: a theoretical arrival time
    with a tolerance of `burst - 1` intervals.)
    """

    def __init__(
        self,
        calls: int,
        window_s: float,
        clock: Clock | None = None,
        margin_s: float = 0.25,
        burst: int = 1,
    ) -> None:
        if calls < 1 or window_s <= 0 or not 1 <= burst <= calls:
            raise ValueError("a pace needs calls >= 1, window_s > 0 and 1 <= burst <= calls")
        self.interval_s = (window_s + margin_s) / (calls - burst + 1)
        self._tolerance = (burst - 1) * self.interval_s
        self._clock = clock or SystemClock()
        self._tat = float("-inf")  # when the next call is due at the steady pace

    def due_in(self) -> float:
        """Seconds until the next call may start (0: now)."""
        return max(self._tat - self._tolerance - self._clock.monotonic(), 0.0)

    async def wait(self) -> None:
        """Reserve the next slot and sleep until it (callers are served in order)."""
        now = self._clock.monotonic()
        tat = max(self._tat, now)
        start = max(now, tat - self._tolerance)
        self._tat = tat + self.interval_s  # reserved before sleeping: no lock needed
        if start > now:
            await self._clock.sleep(start - now)
