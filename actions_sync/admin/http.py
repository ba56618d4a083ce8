"""The admin HTTP API of SPEC S12: read and change the admin settings, read the audit.

    GET  /settings               {"revision": n, "settings": {key: value, ...}}
    PUT  /settings               {key: value, ...}  -> every change validated first, then
                                                       applied and audited one by one
    PUT  /settings/{key}         {"value": value}   -> {"key", "old_value", "new_value", ...}
    GET  /settings/audit?limit=N the newest changes first (N from 1 to 1000, default 100)
    GET  /health                 no token needed (for probes)
    /ui/...                      the admin page (`page.py`): its own login and sessions

Every other call needs `Authorization: Bearer <ACTIONS_SYNC_ADMIN_TOKEN>` (401 without,
and for a header that is not ASCII). The audit names the caller as
`api:<X-Admin-User header>` (or `api`). A bad key or value, a body that is not UTF-8 JSON
(or nested deeper than Python's parser goes) and a bad limit are a 400 with a one-line
reason, the key's the same as the CLI's; booleans are JSON booleans. Changes go through
the same path as
`actions-sync settings set`: store + audit in one transaction, then the snapshot on the
compacted topic, so running agents apply them within seconds.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web

from actions_sync.admin.commands import change
from actions_sync.admin.live import load
from actions_sync.admin.model import AdminSettings
from actions_sync.admin.page import PREVIEW, SAMPLER, Preview, add_routes
from actions_sync.admin.status import Sampler
from actions_sync.errors import ConfigError
from actions_sync.settings import Settings
from actions_sync.store import Store
from actions_sync.store import admin_settings as stored

__all__ = ["create_app", "run"]

log = logging.getLogger(__name__)
STORE: web.AppKey[Store] = web.AppKey("store", Store)
SETTINGS: web.AppKey[Settings] = web.AppKey("settings", Settings)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MAX_AUDIT = 1000
# No token: "/" only redirects to the page, which asks for it; browsers ask for the icon.
PUBLIC = ("/health", "/", "/favicon.ico")


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _auth(token: str) -> Any:
    expected = f"Bearer {token}".encode()

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in PUBLIC or request.path.startswith("/ui/"):  # the page: sessions
            return await handler(request)
        try:  # aiohttp hands other bytes through as surrogates, which no token has
            given = request.headers.get("Authorization", "").encode("ascii")
        except UnicodeEncodeError:
            given = b""
        if not hmac.compare_digest(given, expected):  # constant time: no token oracle
            return _error(401, "missing or wrong bearer token")
        return await handler(request)

    return middleware


def _who(request: web.Request) -> str:
    user = request.headers.get("X-Admin-User", "").strip()[:200]
    if not user.isprintable() or not user.isascii():  # it is stored, and shown in the audit
        raise _bad_request("X-Admin-User must be printable ASCII")
    return f"api:{user}" if user else "api"


def _bad_request(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=json.dumps({"error": message}), content_type="application/json")


async def _snapshot(request: web.Request) -> dict[str, Any]:
    current = await asyncio.to_thread(load, request.app[STORE].engine)
    return {
        "revision": max(current.revision, 0),
        "settings": current.settings.model_dump(mode="json"),
    }


async def get_settings(request: web.Request) -> web.Response:
    return web.json_response(await _snapshot(request))


async def _body(request: web.Request) -> Any:
    try:
        return json.loads(await request.read())
    # RecursionError: JSON nested deeper than the parser goes ([[[[...)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise _bad_request("the body must be UTF-8 JSON, nested at most a few levels") from None


async def _apply(request: web.Request, changes: dict[str, Any]) -> list[dict[str, Any]]:
    store, settings, who = request.app[STORE], request.app[SETTINGS], _who(request)
    current = await asyncio.to_thread(load, store.engine)
    candidate: AdminSettings = current.settings
    for key, value in changes.items():  # all or nothing: validate every change first
        candidate = candidate.with_value(key, value)
    entries = []
    for key, value in changes.items():
        entry = await asyncio.to_thread(change, settings, store, key, value, who)
        entries.append(entry.as_json())
    return entries


async def put_settings(request: web.Request) -> web.Response:
    body = await _body(request)
    if not isinstance(body, dict) or not body:
        return _error(400, "expected a JSON object of setting -> value")
    try:
        entries = await _apply(request, body)
    except ConfigError as exc:
        return _error(400, str(exc))
    return web.json_response({**await _snapshot(request), "changes": entries})


async def put_setting(request: web.Request) -> web.Response:
    body = await _body(request)
    if not isinstance(body, dict) or "value" not in body:
        return _error(400, 'expected {"value": ...}')
    try:
        [entry] = await _apply(request, {request.match_info["key"]: body["value"]})
    except ConfigError as exc:
        return _error(400, str(exc))
    return web.json_response(entry)


async def get_audit(request: web.Request) -> web.Response:
    text = request.query.get("limit", "100")
    if not (text.isascii() and text.isdigit() and 1 <= int(text) <= MAX_AUDIT):
        return _error(400, f"limit must be a whole number from 1 to {MAX_AUDIT}")
    limit = int(text)
    entries = await asyncio.to_thread(stored.audit_log, request.app[STORE].engine, limit)
    return web.json_response([e.as_json() for e in entries])


async def health(_request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


def create_app(settings: Settings, store: Store, preview: Preview | None = None) -> web.Application:
    """The API and the page over `store`; `ConfigError` when no token is configured.
    `preview` renders the page's Task Subject preview (the router's rule, injected)."""
    if settings.admin_token is None or not settings.admin_token.get_secret_value():
        raise ConfigError(
            "ACTIONS_SYNC_ADMIN_TOKEN must be set: the admin API never runs without authentication"
        )
    app = web.Application(middlewares=[_auth(settings.admin_token.get_secret_value())])
    app[STORE] = store
    app[SETTINGS] = settings
    app.router.add_get("/settings", get_settings)
    app.router.add_put("/settings", put_settings)
    app.router.add_get("/settings/audit", get_audit)
    app.router.add_put("/settings/{key}", put_setting)
    app.router.add_get("/health", health)
    app[PREVIEW] = preview
    app[SAMPLER] = Sampler(settings.admin_metrics_file)
    app.cleanup_ctx.append(_sampling)
    add_routes(app, STORE, SETTINGS)
    return app


async def _sampling(app: web.Application) -> AsyncIterator[None]:
    """The page's charts: workers' /metrics sampled in the background while serving."""
    sampler = app[SAMPLER]
    if sampler.targets_file is not None:
        sampler.start()
    yield
    await asyncio.to_thread(sampler.close)


def run(settings: Settings, preview: Preview | None = None) -> None:
    """Serve the admin API and page in the foreground until SIGTERM/SIGINT."""
    with Store(settings.database_url) as store:
        store.migrate()
        app = create_app(settings, store, preview)
        log.info(
            "admin API on http://%s:%d (the page: /ui/)", settings.admin_host, settings.admin_port
        )
        web.run_app(app, host=settings.admin_host, port=settings.admin_port, print=None)
