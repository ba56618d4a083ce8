"""The admin HTTP API of SPEC S12: read and change the admin settings, read the audit.

    GET  /settings               {"revision": n, "settings": {key: value, ...}}
    PUT  /settings               {key: value, ...}  -> every change validated first, then
                                                       applied and audited one by one
    PUT  /settings/{key}         {"value": value}   -> {"key", "old_value", "new_value", ...}
    GET  /settings/audit?limit=N the newest changes first
    GET  /health                 no token needed (for probes)

Every other call needs `Authorization: Bearer <ACTIONS_SYNC_ADMIN_TOKEN>` (401 without).
The audit names the caller as `api:<X-Admin-User header>` (or `api`). A bad key or value
is a 400 with the same one-line message as the CLI's. Changes go through the same path as
`actions-sync settings set`: store + audit in one transaction, then the snapshot on the
compacted topic, so running agents apply them within seconds.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from actions_sync.admin.commands import change
from actions_sync.admin.live import load
from actions_sync.admin.model import AdminSettings
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


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _auth(token: str) -> Any:
    expected = f"Bearer {token}".encode()

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == "/health":
            return await handler(request)
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, expected):  # constant time: no token oracle
            return _error(401, "missing or wrong bearer token")
        return await handler(request)

    return middleware


def _who(request: web.Request) -> str:
    user = request.headers.get("X-Admin-User", "").strip()[:200]
    return f"api:{user}" if user else "api"


async def _snapshot(request: web.Request) -> dict[str, Any]:
    current = await asyncio.to_thread(load, request.app[STORE].engine)
    return {"revision": max(current.revision, 0),
            "settings": current.settings.model_dump(mode="json")}


async def get_settings(request: web.Request) -> web.Response:
    return web.json_response(await _snapshot(request))


async def _body(request: web.Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text='{"error": "the body must be JSON"}',
                                 content_type="application/json") from None


async def _apply(request: web.Request, changes: dict[str, Any]) -> list[dict[str, Any]]:
    store, settings = request.app[STORE], request.app[SETTINGS]
    current = await asyncio.to_thread(load, store.engine)
    candidate: AdminSettings = current.settings
    for key, value in changes.items():  # all or nothing: validate every change first
        candidate = candidate.with_value(key, value)
    entries = []
    for key, value in changes.items():
        entry = await asyncio.to_thread(change, settings, store, key, value, _who(request))
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
    try:
        limit = min(int(request.query.get("limit", "100")), MAX_AUDIT)
    except ValueError:
        return _error(400, "limit must be a number")
    entries = await asyncio.to_thread(stored.audit_log, request.app[STORE].engine, limit)
    return web.json_response([e.as_json() for e in entries])


async def health(_request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


def create_app(settings: Settings, store: Store) -> web.Application:
    """The API over `store`; `ConfigError` when no token is configured."""
    if settings.admin_token is None or not settings.admin_token.get_secret_value():
        raise ConfigError("ACTIONS_SYNC_ADMIN_TOKEN must be set: the admin API never runs"
                          " without authentication")
    app = web.Application(middlewares=[_auth(settings.admin_token.get_secret_value())])
    app[STORE] = store
    app[SETTINGS] = settings
    app.router.add_get("/settings", get_settings)
    app.router.add_put("/settings", put_settings)
    app.router.add_get("/settings/audit", get_audit)
    app.router.add_put("/settings/{key}", put_setting)
    app.router.add_get("/health", health)
    return app


def run(settings: Settings) -> None:
    """Serve the admin API in the foreground until SIGTERM/SIGINT."""
    with Store(settings.database_url) as store:
        store.migrate()
        app = create_app(settings, store)
        log.info("admin API on http://%s:%d", settings.admin_host, settings.admin_port)
        web.run_app(app, host=settings.admin_host, port=settings.admin_port, print=None)
