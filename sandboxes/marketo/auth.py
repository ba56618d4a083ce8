"""Access tokens of the identity service.

One live token per client: asking again before it expires returns the same token with its
remaining lifetime (`expires_in` counts down from 3599). Expired tokens are remembered so
that a data call carrying one is told 602 (expired), not 601 (invalid). The
`token_expiry_s` fault cuts a token's real life short without telling the client.
Thread-safe.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

__all__ = ["Issued", "TokenStore", "Verdict"]

Verdict = Literal["valid", "expired", "invalid"]


@dataclass(frozen=True)
class Issued:
    token: str
    expires_in: int  # seconds, as reported to the client
    scope: str


@dataclass
class _Token:
    client_id: str
    reported_expiry: float  # what the client was told
    expiry: float  # when it really stops working (earlier under the expiry fault)


class TokenStore:
    def __init__(
        self, ttl_s: float, forced_expiry_s: float | None, clock: Callable[[], float]
    ) -> None:
        self._ttl_s = ttl_s
        self._forced_expiry_s = forced_expiry_s
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens: dict[str, _Token] = {}
        self._current: dict[str, str] = {}

    def issue(self, client_id: str) -> Issued:
        now = self._clock()
        with self._lock:
            token = self._current.get(client_id)
            if token is None or self._tokens[token].expiry <= now:
                token = f"{uuid.uuid4()}:sj"
                life = self._ttl_s
                real = min(life, self._forced_expiry_s) if self._forced_expiry_s else life
                self._tokens[token] = _Token(client_id, now + life, now + real)
                self._current[client_id] = token
            remaining = int(self._tokens[token].reported_expiry - now)
        return Issued(token, max(remaining, 0), f"{client_id}@sandbox.marketo.local")

    def verify(self, token: str | None) -> Verdict:
        if not token:
            return "invalid"
        with self._lock:
            found = self._tokens.get(token)
        if found is None:
            return "invalid"
        return "valid" if found.expiry > self._clock() else "expired"

    def expire_all(self) -> int:
        """Expire every token now (the control route); returns how many were live."""
        now = self._clock()
        with self._lock:
            live = [t for t in self._tokens.values() if t.expiry > now]
            for token in live:
                token.expiry = token.reported_expiry = now
        return len(live)

    def live(self) -> int:
        now = self._clock()
        with self._lock:
            return sum(1 for t in self._tokens.values() if t.expiry > now)
