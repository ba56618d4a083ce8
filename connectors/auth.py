"""Bearer tokens with proactive, single-flight refresh.

A token is refreshed `refresh_ahead_s` before it expires, by one caller while the others
wait for the result (single flight). `invalidate(token)` after a 601/602 or a 401
refreshes only if that token is still the current one, so N concurrent failures cause
one refresh, not N. Marketo hands out the *same* token until it expires, so asking early
again is pointless: a refresh that returns the same token keeps it until its expiry.
Tokens served with `expires_in: 0` (seen in the wild) are refetched at most once a
second, and replaced for good by `invalidate` when the API refuses them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from actions_sync.clock import Clock, SystemClock

__all__ = ["Token", "TokenCache"]

MIN_REFRESH_INTERVAL_S = 1.0


@dataclass(frozen=True)
class Token:
    value: str
    refresh_at: float  # on the clock's monotonic scale


class TokenCache:
    def __init__(
        self,
        fetch: Callable[[], Awaitable[tuple[str, float]]],
        clock: Clock | None = None,
        refresh_ahead_s: float = 60.0,
    ) -> None:
        """`fetch()` returns (token, seconds it lives)."""
        self._fetch = fetch
        self._clock = clock or SystemClock()
        self._ahead = refresh_ahead_s
        self._token: Token | None = None
        self._lock = asyncio.Lock()
        self.refreshes = 0

    async def get(self) -> str:
        """A token to use now, refreshed first when it is about to expire."""
        token = self._token
        if token is not None and self._clock.monotonic() < token.refresh_at:
            return token.value
        async with self._lock:
            if self._token is token:  # nobody refreshed while we waited for the lock
                await self._refresh()
            assert self._token is not None
            return self._token.value

    async def invalidate(self, stale: str) -> None:
        """The API refused `stale`: refresh unless someone already did."""
        async with self._lock:
            if self._token is None or self._token.value == stale:
                await self._refresh(force=True)

    async def _refresh(self, force: bool = False) -> None:
        value, lifetime_s = await self._fetch()
        now = self._clock.monotonic()
        expires = now + max(lifetime_s, 0.0)
        same = self._token is not None and self._token.value == value and not force
        refresh_at = expires if same else expires - self._ahead
        self._token = Token(value, max(refresh_at, now + MIN_REFRESH_INTERVAL_S))
        self.refreshes += 1
