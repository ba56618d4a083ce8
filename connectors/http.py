"""`ApiClient`: the one way connectors call an HTTP API.

Every call goes: limiter (pace + in-flight cap) -> bearer token -> httpx -> the vendor's
`classify(response)` -> act on the `Resolution`: return, refresh the token and replay
once, retry with backoff and full jitter (`actions_sync.retry`), or raise an error named
by what the caller must do (`QuotaExhausted`, `Rejected`, `ApiFatal`). Transports and the
clock are injected so tests can swap them.

Whether this client retries a transient answer is its owner's choice, made once when it
is built (`max_attempts`): a sink's client makes one attempt (`ONE_ATTEMPT`), since the
runner owns the retries of a delivery; a source's or a reader's client retries a call
(`CALL_ATTEMPTS`), so that one failed page does not restart a whole poll. A refused token
is refreshed and the call replayed once either way: the API did nothing with it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, TypeVar

import httpx

from actions_sync.clock import Clock, SystemClock
from actions_sync.errors import Backpressure, Retriable
from actions_sync.metrics import API_CALLS, API_SECONDS
from actions_sync.retry import Backoff, retrying
from connectors.auth import TokenCache
from connectors.errors import ApiFatal, QuotaExhausted, Rejected
from connectors.ratelimit import Limiter
from connectors.resolution import Action, Resolution

__all__ = ["CALL_ATTEMPTS", "ONE_ATTEMPT", "ApiClient"]

Classify = Callable[[httpx.Response], Resolution]
T = TypeVar("T")
CALL_ATTEMPTS = 8  # a reader's client: attempts of one call (~30 s of backoff)
ONE_ATTEMPT = 1  # a sink's client: the runner retries the delivery instead


class ApiClient:
    """An authenticated, paced client for one API, retrying a call `max_attempts` times."""

    def __init__(
        self,
        api: str,
        base_url: str,
        classify: Classify,
        limiter: Limiter,
        auth: TokenCache | None = None,
        backoff: Backoff | None = None,
        clock: Clock | None = None,
        max_attempts: int = CALL_ATTEMPTS,
        timeout_s: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.api = api
        self.classify = classify
        self.limiter = limiter
        self.auth = auth
        self.backoff = backoff or Backoff(base_s=0.5, cap_s=30.0)
        self.clock = clock or SystemClock()
        self.max_attempts = max_attempts
        self.http = httpx.AsyncClient(base_url=base_url, timeout=timeout_s, transport=transport)

    async def request(self, method: str, url: str, endpoint: str, **kwargs: Any) -> httpx.Response:
        """Send until the API accepts it, at most `max_attempts` times; `endpoint` is the
        bounded metric label."""

        async def attempt() -> httpx.Response:
            return await self._attempt(method, url, endpoint, kwargs)

        return await retrying(
            attempt,
            backoff=self.backoff,
            clock=self.clock,
            max_attempts=self.max_attempts,
            give_up_on=(QuotaExhausted,),
        )

    async def request_once(
        self, method: str, url: str, endpoint: str, **kwargs: Any
    ) -> httpx.Response:
        """One attempt, never retried here (a refused token is still refreshed and the call
        replayed once: the API refused it before doing anything). For writes that are not
        idempotent, e.g. Marketo custom activities: a failure may or may not have been
        applied, and only the caller can find out before sending again."""
        return await self._attempt(method, url, endpoint, kwargs)

    async def _attempt(
        self, method: str, url: str, endpoint: str, kwargs: dict[str, Any]
    ) -> httpx.Response:
        replayed = False
        while True:
            token = await self._auth(self.auth.get) if self.auth else None
            response, resolution = await self._send(method, url, endpoint, token, kwargs)
            if resolution.action is Action.REFRESH_AUTH and self.auth and not replayed:
                await self._auth(partial(self.auth.invalidate, token or ""))
                replayed = True  # a second refusal in a row is an error, not a loop
                continue
            return self._act(response, resolution)

    async def _auth(self, call: Callable[[], Awaitable[T]]) -> T:
        """A token call; the identity endpoint timing out or answering 5xx is transient."""
        try:
            return await call()
        except httpx.TransportError as exc:
            raise Retriable(f"{self.api} token: {exc!r}") from exc
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code >= 500:
                raise Retriable(f"{self.api} token: HTTP {exc.response.status_code}") from exc
            raise ApiFatal(f"{self.api} token: HTTP {exc.response.status_code}") from exc

    async def _send(
        self, method: str, url: str, endpoint: str, token: str | None, kwargs: dict[str, Any]
    ) -> tuple[httpx.Response, Resolution]:
        # Copy, never pop: a retry or an auth replay sends the same kwargs again, and a
        # lost `Range` header turned a resumed bulk download into the whole file.
        headers = dict(kwargs.get("headers") or {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        async with self.limiter:
            started = time.perf_counter()
            try:
                response = await self.http.request(method, url, **{**kwargs, "headers": headers})
            except httpx.TransportError as exc:  # timeouts, resets, refused connections
                API_CALLS.labels(self.api, endpoint, type(exc).__name__).inc()
                raise Retriable(f"{self.api} {endpoint}: {exc!r}") from exc
            finally:
                API_SECONDS.labels(self.api, endpoint).observe(time.perf_counter() - started)
        resolution = self.classify(response)
        API_CALLS.labels(
            self.api, endpoint, "ok" if resolution.action is Action.SUCCESS else resolution.label
        ).inc()
        return response, resolution

    def _act(self, response: httpx.Response, r: Resolution) -> httpx.Response:
        what = (
            f"{self.api} {response.request.method} {response.request.url.path}: "
            f"{r.code or response.status_code} {r.message}"
        )
        match r.action:
            case Action.SUCCESS:
                return response
            case Action.RETRY | Action.REFRESH_AUTH:
                raise Retriable(what)
            case Action.RATE_LIMITED:
                raise Backpressure(what, r.retry_after or 0.0)
            case Action.QUOTA_EXHAUSTED:
                raise QuotaExhausted(what, r.retry_after or 3600.0)
            case Action.REJECTED:
                raise Rejected(what, r.code, r.scope)
            case Action.FATAL:
                raise ApiFatal(what)
        raise AssertionError(r)  # pragma: no cover - the match is exhaustive

    async def aclose(self) -> None:
        await self.http.aclose()
