"""The middleware every data call (`/rest/...`, `/bulk/...`) goes through.

In order: URI size (HTTP 414), payload size (HTTP 413), access token (601 missing or
unknown, 602 expired), limits (615, 606, 607), injected faults (latency, timeouts, and
604/608/611/713 at `error_rate`), then the route. A `MarketoError` raised anywhere is
answered in Marketo's envelope; a 6xx answer gives its call back to the rate window and
the daily quota.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from sandboxes.base import Faults
from sandboxes.marketo.envelope import failure
from sandboxes.marketo.errors import TRANSIENT_CODES, MarketoError
from sandboxes.marketo.state import MarketoState

__all__ = ["DATA_PREFIXES", "guard_middleware", "injected_error"]

DATA_PREFIXES = ("/rest/", "/bulk/")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def injected_error(faults: Faults) -> str | None:
    """The transient code the fault plan answers this call with, if any (seeded)."""
    if not faults.roll(faults.plan.error_rate):
        return None
    for i, code in enumerate(TRANSIENT_CODES[:-1]):
        if faults.roll(1 / (len(TRANSIENT_CODES) - i)):  # uniform over the four codes
            return code
    return TRANSIENT_CODES[-1]


def _authenticate(request: web.Request, state: MarketoState) -> None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        token = request.query.get("access_token", "")  # deprecated, still accepted
    verdict = state.tokens.verify(token.strip())
    if verdict == "expired":
        raise MarketoError("602")
    if verdict == "invalid":
        raise MarketoError("601", None if token else "Access token not specified")


def guard_middleware(state: MarketoState, faults: Faults) -> Middleware:
    config = state.config

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith(DATA_PREFIXES):
            return await handler(request)
        if len(request.raw_path.encode()) > config.uri_max_bytes:
            return web.Response(status=414, text="Request-URI Too Long")
        if (request.content_length or 0) > config.payload_max_bytes:
            return web.Response(status=413, text="Request Entity Too Large")
        try:
            _authenticate(request, state)
            admission = state.limits.admit()
        except MarketoError as error:
            return failure(error)
        counted = True
        try:
            await faults.delay()
            code = injected_error(faults)
            if code:
                raise MarketoError(code)
            return await handler(request)
        except MarketoError as error:
            counted = error.counts
            return failure(error)
        finally:
            state.limits.release(admission, counted=counted)

    return guard
