"""The org's daily API budget as `Sforce-Limit-Info: api-usage=used/limit` reports it.

Salesforce counts calls over a rolling 24 h and refuses them with 403
REQUEST_LIMIT_EXCEEDED past the allocation. Other integrations share it, so the sink
stops while `reserve` calls remain and probes again after `pause_s` (one call, whose
answer carries the new usage), instead of running the org into the wall.
"""

from __future__ import annotations

import re

from actions_sync.clock import Clock, SystemClock
from actions_sync.metrics import SALESFORCE_API_USAGE
from connectors.errors import QuotaExhausted

__all__ = ["Budget", "parse_usage"]

_USAGE = re.compile(r"api-usage=(\d+)/(\d+)")


def parse_usage(header: str | None) -> tuple[int, int] | None:
    """(used, limit) from a `Sforce-Limit-Info` header, if it has them."""
    match = _USAGE.search(header or "")
    return (int(match[1]), int(match[2])) if match else None


class Budget:
    def __init__(self, reserve: int, pause_s: float, clock: Clock | None = None) -> None:
        self.reserve = reserve
        self.pause_s = pause_s
        self._clock = clock or SystemClock()
        self.used: int | None = None
        self.limit: int | None = None
        self._seen_at = 0.0

    def observe(self, header: str | None) -> None:
        usage = parse_usage(header)
        if usage:
            self.used, self.limit = usage
            self._seen_at = self._clock.monotonic()
            SALESFORCE_API_USAGE.labels("used").set(self.used)
            SALESFORCE_API_USAGE.labels("limit").set(self.limit)

    @property
    def remaining(self) -> int | None:
        return None if self.used is None or self.limit is None else self.limit - self.used

    def check(self) -> None:
        """Raise `QuotaExhausted` while the last known usage leaves only the reserve."""
        remaining = self.remaining
        if remaining is None or remaining > self.reserve:
            return
        waited = self._clock.monotonic() - self._seen_at
        if waited < self.pause_s:
            raise QuotaExhausted(
                f"Salesforce daily API budget: {remaining} calls left of "
                f"{self.limit}, {self.reserve} kept in reserve",
                self.pause_s - waited,
            )
