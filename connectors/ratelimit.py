"""Client-side limits, so that the APIs' limits are honoured, not discovered.

`RollingWindow` admits at most `calls` calls in any `window_s` seconds — Marketo counts
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
    """At most `calls` calls in any window of `window_s` (+ `margin_s`) seconds, as the
    server counts them.

    The server counts a call when it arrives, somewhere between when we send it and when
    its answer is back, and how long that takes varies per call (a loaded host: seconds).
    Counting our sends would let a call sent late but delivered early share the server's
    window with the next window's calls; so a call holds its slot while in flight and
    from its answer on, i.e. a window is counted from the answers (`release`), which the
    server's arrival never follows. The margin absorbs the two clocks' rates.
    """

    def __init__(
        self, calls: int, window_s: float, clock: Clock | None = None, margin_s: float = 0.25
    ) -> None:
        if calls < 1 or window_s <= 0:
            raise ValueError("a rolling window needs calls >= 1 and window_s > 0")
        self.calls = calls
        self.window_s = window_s + margin_s
        self._clock = clock or SystemClock()
        self._in_flight = 0
        self._ends: deque[float] = deque()  # when answered, in order
        self._lock = asyncio.Lock()
        self._released = asyncio.Event()

    async def acquire(self) -> float:
        """Wait for a slot; return the seconds waited. Every call admitted is `release`d
        when its answer is back (or it failed)."""
        waited = 0.0
        async with self._lock:  # FIFO: callers are admitted in arrival order
            while True:
                now = self._clock.monotonic()
                while self._ends and now - self._ends[0] >= self.window_s:
                    self._ends.popleft()
                if self._in_flight + len(self._ends) < self.calls:
                    self._in_flight += 1
                    return waited
                started = now
                if self._ends:  # a slot frees when the oldest answer leaves the window
                    await self._clock.sleep(self.window_s - (now - self._ends[0]))
                else:  # every slot in flight: the first answer starts the window
                    self._released.clear()
                    await self._released.wait()
                waited += self._clock.monotonic() - started

    def release(self) -> None:
        self._in_flight -= 1
        self._ends.append(self._clock.monotonic())
        self._released.set()  # a slot still held (now by the answer): a waiter re-reads


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
        if self.window is not None:
            self.window.release()
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
