"""The admin page of SPEC S12, served by the admin HTTP server under `/ui/`.

    GET  /ui/                     the login form, or (with a session) settings, audit, status
    POST /ui/login                token (+ a name for the audit) -> a session cookie
    POST /ui/logout               *
    POST /ui/settings             * the changed settings, through `commands.change`
    GET  /ui/preview?template=T   the Task Subject T renders for a sample activity
    GET  /ui/dlq/{topic}          the dead letters of a topic, with their reason headers
    POST /ui/dlq/{topic}/replay   * one, a selection or all of them; or a dry run
    GET  /ui/static/{name}        the page's CSS and JS (package data, nothing from a CDN)

Access: the admin token is asked once, in a POST body (never in a URL, never logged); the
session is a random id in a cookie (HttpOnly, SameSite=Strict) held server-side, expiring
after `SESSION_S` idle. Every state-changing request (*) carries the session's CSRF token
(the hidden field `csrf` or the header `X-CSRF-Token`) or is refused with 403.
Changes are audited as `page:<name>`, through the same validated path as
`actions-sync settings set` and the JSON API; the preview is rendered by the router's own
rule function, injected by the composition root (the kernel does not import the rules).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from aiohttp import web
from multidict import MultiDictProxy

from actions_sync.admin import views
from actions_sync.admin.commands import change
from actions_sync.admin.live import load
from actions_sync.admin.model import AdminSettings
from actions_sync.admin.status import Sampler
from actions_sync.dead_letter_admin import Selection, read_dead_letters, replay_dead_letters
from actions_sync.errors import ConfigError, Retriable
from actions_sync.settings import Settings
from actions_sync.store import Store
from actions_sync.store import admin_settings as stored
from actions_sync.topics import RECORD_OF

__all__ = ["COOKIE", "PREVIEW", "SAMPLER", "Preview", "add_routes"]

log = logging.getLogger(__name__)
Preview = Callable[[str], str]  # template -> the Task Subject of a sample activity
COOKIE = "actions_sync_session"
SESSION_S = 8 * 3600.0
STATIC = ("admin.css", "admin.js")


@dataclass
class Session:
    who: str
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    expires: float = 0.0


SESSIONS: web.AppKey[dict[str, Session]] = web.AppKey("sessions", dict)
PREVIEW: web.AppKey[Preview | None] = web.AppKey("preview")
SAMPLER: web.AppKey[Sampler] = web.AppKey("sampler", Sampler)


def add_routes(
    app: web.Application, store_key: web.AppKey[Store], settings_key: web.AppKey[Settings]
) -> None:
    """Serve the page from `app` (whose store and settings are under those keys)."""
    page = _Page(store_key, settings_key)
    app[SESSIONS] = {}
    app.router.add_get("/", to_page)
    app.router.add_get("/ui/", page.index)
    app.router.add_post("/ui/login", page.login)
    app.router.add_post("/ui/logout", page.logout)
    app.router.add_post("/ui/settings", page.save_settings)
    app.router.add_get("/ui/preview", page.preview)
    app.router.add_get("/ui/dlq/{topic}", page.dead_letters)
    app.router.add_post("/ui/dlq/{topic}/replay", page.replay)
    app.router.add_get("/ui/static/{name}", static)


async def to_page(_request: web.Request) -> web.Response:
    raise web.HTTPFound("/ui/")


def _see_page() -> web.Response:
    return web.Response(status=303, headers={"Location": "/ui/"})


async def static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in STATIC:
        raise web.HTTPNotFound()
    body = resources.files("actions_sync.admin").joinpath("static", name).read_bytes()
    kind = "text/css" if name.endswith(".css") else "text/javascript"
    return web.Response(body=body, content_type=kind, headers={"Cache-Control": "no-cache"})


def _html(body: str, status: int = 200) -> web.Response:
    return web.Response(
        text=body,
        status=status,
        content_type="text/html",
        headers={
            "Cache-Control": "no-store",
            "X-Frame-Options": "DENY",
            "Content-Security-Policy": "default-src 'self'; img-src 'self' data:;"
            " style-src 'self'; script-src 'self'",
        },
    )


def session_of(request: web.Request) -> Session | None:
    sessions = request.app[SESSIONS]
    sid = request.cookies.get(COOKIE, "")
    found = sessions.get(sid)
    if found is None or found.expires < time.monotonic():
        sessions.pop(sid, None)
        return None
    found.expires = time.monotonic() + SESSION_S
    return found


def _require(request: web.Request) -> Session:
    found = session_of(request)
    if found is None:
        raise web.HTTPSeeOther("/ui/")
    return found


async def _checked(request: web.Request) -> tuple[Session, MultiDictProxy[Any]]:
    """The session and form of a state-changing request, or 403 without its CSRF token."""
    found = session_of(request)
    form = await request.post()
    given = str(form.get("csrf") or request.headers.get("X-CSRF-Token", ""))
    if found is None or not hmac.compare_digest(given.encode(), found.csrf.encode()):
        log.warning(
            "admin page: %s %s refused (no session or CSRF token)", request.method, request.path
        )
        raise web.HTTPForbidden(text="missing or wrong CSRF token (reload the page)")
    return found, form


def _form_value(key: str, form: MultiDictProxy[Any]) -> Any:
    """A setting's value from the settings form (checkboxes send only when checked)."""
    annotation = AdminSettings.model_fields[key].annotation
    if annotation is bool:  # a hidden "false" then the checkbox's "true": the last wins
        return form.getall(key, ["false"])[-1] == "true"
    if getattr(annotation, "__origin__", None) is tuple:
        return [str(v) for v in form.getall(key, [])]
    return str(form.get(key, ""))


class _Page:
    def __init__(self, store_key: web.AppKey[Store], settings_key: web.AppKey[Settings]) -> None:
        self.store_key, self.settings_key = store_key, settings_key

    async def index(self, request: web.Request) -> web.Response:
        found = session_of(request)
        if found is None:
            return _html(views.login())
        return _html(await self._main(request, found))

    async def _main(
        self,
        request: web.Request,
        found: Session,
        errors: dict[str, str] | None = None,
        values: dict[str, Any] | None = None,
        note: str = "",
    ) -> str:
        store, settings = request.app[self.store_key], request.app[self.settings_key]
        current = await asyncio.to_thread(load, store.engine)
        audit = await asyncio.to_thread(stored.audit_log, store.engine, 50)
        status = await asyncio.to_thread(
            views.gather_status, settings, store, datetime.now(UTC), list(RECORD_OF)
        )
        shown = {**current.settings.model_dump(mode="json"), **(values or {})}
        return views.main(
            found.csrf,
            found.who,
            shown,
            max(current.revision, 0),
            audit,
            status,
            request.app[SAMPLER],
            errors or {},
            note,
        )

    async def login(self, request: web.Request) -> web.Response:
        form = await request.post()
        token = request.app[self.settings_key].admin_token
        given = str(form.get("token", "")).encode("utf-8", "replace")
        expected = token.get_secret_value().encode() if token else b""
        if not expected or not hmac.compare_digest(given, expected):
            log.warning("admin page: login refused (wrong token)")  # never the token itself
            return _html(views.login("wrong token"), status=401)
        user = str(form.get("user", "")).strip()[:200]
        if user and not (user.isascii() and user.isprintable()):
            return _html(views.login("the name must be printable ASCII"), status=400)
        sessions, now = request.app[SESSIONS], time.monotonic()
        for stale in [k for k, v in sessions.items() if v.expires < now]:
            del sessions[stale]  # expired ones go here too, not only when presented
        sid = secrets.token_urlsafe(32)
        sessions[sid] = Session(
            f"page:{user}" if user else "page", expires=time.monotonic() + SESSION_S
        )
        log.info("admin page: %s logged in", f"page:{user}" if user else "page")
        response = _see_page()
        response.set_cookie(COOKIE, sid, httponly=True, samesite="Strict", path="/")
        return response

    async def logout(self, request: web.Request) -> web.Response:
        await _checked(request)
        request.app[SESSIONS].pop(request.cookies.get(COOKIE, ""), None)
        response = _see_page()
        response.del_cookie(COOKIE, path="/")
        return response

    async def save_settings(self, request: web.Request) -> web.Response:
        found, form = await _checked(request)
        store, settings = request.app[self.store_key], request.app[self.settings_key]
        current = await asyncio.to_thread(load, store.engine)
        before = current.settings.model_dump(mode="json")
        wanted = {
            k: _form_value(k, form)
            for k in AdminSettings.model_fields
            if k in form or f"{k}.present" in form
        }
        changed = {k: v for k, v in wanted.items() if v != before[k]}
        errors: dict[str, str] = {}
        for key, value in changed.items():  # each field's own reason, beside it
            try:
                current.settings.with_value(key, value)
            except ConfigError as exc:
                errors[key] = str(exc)
        if errors:
            return _html(await self._main(request, found, errors, changed), status=400)
        try:
            for key, value in changed.items():
                await asyncio.to_thread(change, settings, store, key, value, found.who)
        except ConfigError as exc:  # a combination the single checks could not see
            return _html(await self._main(request, found, {"": str(exc)}, changed), status=400)
        except Retriable as exc:  # stored and audited; running agents re-read the store
            return _html(await self._main(request, found, note=str(exc)))
        note = f"saved: {', '.join(changed)}" if changed else "nothing changed"
        return _html(await self._main(request, found, note=note))

    async def preview(self, request: web.Request) -> web.Response:
        _require(request)
        template = request.query.get("template", "")
        render = request.app[PREVIEW]
        try:
            AdminSettings().with_value("salesforce_subject_template", template)
        except ConfigError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        if render is None:
            return web.json_response({"error": "no preview: the page runs without the rules"})
        return web.json_response({"subject": render(template)})

    def _topic(self, request: web.Request) -> str:
        topic = request.match_info["topic"]
        if topic not in RECORD_OF:
            raise web.HTTPNotFound(text=f"unknown topic; one of {', '.join(RECORD_OF)}")
        return topic

    def _bootstrap(self, request: web.Request) -> str:
        bootstrap = request.app[self.settings_key].kafka_bootstrap_servers
        if not bootstrap:
            raise web.HTTPServiceUnavailable(text="no broker configured (KAFKA_BOOTSTRAP_SERVERS)")
        return bootstrap

    async def dead_letters(self, request: web.Request) -> web.Response:
        found, topic = _require(request), self._topic(request)
        letters = await asyncio.to_thread(
            lambda: list(read_dead_letters(self._bootstrap(request), topic, limit=views.DLQ_PAGE))
        )
        return _html(views.dead_letters(found.csrf, topic, letters))

    async def replay(self, request: web.Request) -> web.Response:
        found, form = await _checked(request)
        topic, bootstrap = self._topic(request), self._bootstrap(request)
        one = form.get("one")  # a row's own Replay button
        which = "one" if one else str(form.get("which", "selected"))
        positions = frozenset(_position(str(p)) for p in form.getall("position", []))
        if one:
            positions = frozenset([_position(str(one))])
        if which != "all" and not positions:
            return _html(views.replayed(topic, [], True, "nothing selected"), 400)
        selection = Selection() if which == "all" else Selection(positions=positions)
        dry_run = form.get("dry_run") == "true"
        try:
            done = await asyncio.to_thread(
                replay_dead_letters, bootstrap, topic, selection, dry_run
            )
        except Retriable as exc:
            return _html(views.replayed(topic, [], dry_run, str(exc)), 503)
        log.info(
            "admin page: %s %s %d dead letters of %s",
            found.who,
            "dry-ran" if dry_run else "replayed",
            len(done),
            topic,
        )
        return _html(views.replayed(topic, done, dry_run))


def _position(text: str) -> tuple[int, int]:
    """ "partition:offset" from a checkbox."""
    partition, _, offset = text.partition(":")
    if not (partition.isdigit() and offset.isdigit()):
        raise web.HTTPBadRequest(text="a position is PARTITION:OFFSET")
    return int(partition), int(offset)
