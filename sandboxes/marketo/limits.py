"""Marketo's call limits on data calls (identity calls are free).

Checked in this order: `max_concurrent` calls in flight (615), `rate_calls` per rolling
`rate_window_s` (606), the daily quota (607). A call is counted when admitted and given
back if it ends in a 6xx error, since "errors 6xx do not count against quota or rate".
Thread-safe.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from sandboxes.base import DailyQuota
from sandboxes.marketo.config import MarketoConfig
from sandboxes.marketo.errors import MarketoError

__all__ = ["Admission", "InFlight", "Limits", "Quota", "RollingWindow"]


class RollingWindow:
    """At most `calls` admitted in any `window_s` seconds (a sliding log, not buckets)."""

    def __init__(
        self, calls: int, window_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.calls, self.window_s = calls, window_s
        self._clock = clock
        self._stamps: deque[float] = deque()
        self._lock = threading.Lock()

    def admit(self) -> float | None:
        """The admission time, or None when the window is full."""
        now = self._clock()
        with self._lock:
            while self._stamps and self._stamps[0] <= now - self.window_s:
                self._stamps.popleft()
            if len(self._stamps) >= self.calls:
                return None
            self._stamps.append(now)
            return now

    def refund(self, stamp: float) -> None:
        with self._lock:
            if stamp in self._stamps:
                self._stamps.remove(stamp)

    def count(self) -> int:
        since = self._clock() - self.window_s
        with self._lock:
            return sum(1 for s in self._stamps if s > since)


class InFlight:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.current = 0
        self._lock = threading.Lock()

    def enter(self) -> bool:
        with self._lock:
            if self.current >= self.limit:
                return False
            self.current += 1
            return True

    def leave(self) -> None:
        with self._lock:
            self.current -= 1


class Quota(DailyQuota):
    """The daily call budget, able to give a call back."""

    def refund(self) -> None:
        with self._lock:
            self.used = max(self.used - 1, 0)


@dataclass(frozen=True)
class Admission:
    stamp: float


class Limits:
    def __init__(self, config: MarketoConfig) -> None:
        self.window = RollingWindow(config.rate_calls, config.rate_window_s)
        self.in_flight = InFlight(config.max_concurrent)
        self.quota = Quota(config.daily_quota)

    def admit(self) -> Admission:
        """Count one data call, or raise the 615 / 606 / 607 it runs into."""
        if not self.in_flight.enter():
            raise MarketoError("615")
        stamp = self.window.admit()
        if stamp is None:
            self.in_flight.leave()
            raise MarketoError(
                "606",
                f"Max rate limit '{self.window.calls}' exceeded with in "
                f"'{self.window.window_s:g}' secs",
            )
        if not self.quota.take():
            self.window.refund(stamp)
            self.in_flight.leave()
            raise MarketoError("607")
        return Admission(stamp)

    def release(self, admission: Admission, *, counted: bool) -> None:
        self.in_flight.leave()
        if not counted:
            self.window.refund(admission.stamp)
            self.quota.refund()
