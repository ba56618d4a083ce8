"""The org's daily API budget: calls per rolling 24 h (API_NOTES.md, Limits).

Salesforce counts every data call, composite included as one, and refuses calls past the
allocation with 403 REQUEST_LIMIT_EXCEEDED until old calls leave the 24-hour window.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

__all__ = ["Clock", "RollingBudget"]

Clock = Callable[[], datetime]


class RollingBudget:
    """API calls allowed per rolling 24 h, counted in hourly buckets."""

    def __init__(self, limit: int, clock: Clock) -> None:
        self.limit = limit
        self._clock = clock
        self._buckets: dict[int, int] = {}

    def _hour(self) -> int:
        return int(self._clock().timestamp() // 3600)

    @property
    def used(self) -> int:
        oldest = self._hour() - 23
        for hour in [h for h in self._buckets if h < oldest]:
            del self._buckets[hour]
        return sum(self._buckets.values())

    def take(self) -> bool:
        """Count one call, or answer False when the budget is spent."""
        if self.used >= self.limit:
            return False
        hour = self._hour()
        self._buckets[hour] = self._buckets.get(hour, 0) + 1
        return True

    def set_used(self, used: int) -> None:
        """Pretend `used` calls were made in the current hour (0 resets the budget)."""
        self._buckets = {self._hour(): used} if used else {}
