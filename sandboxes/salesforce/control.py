"""HTTP control routes of the Salesforce sandbox, under `/_sandbox/salesforce/`.

They let a test or the demo drive a sandbox running in another process:

    POST   /seed                  {"people": N, "seed": 7, "convert_contacts": false}
    GET    /counts                live/deleted records per object, API usage, sessions
    GET    /records/{Type}        records (`?include_deleted=true`)
    GET    /records/{Type}/{Id}   one record
    POST   /records/{Type}        {"fields": {...}, "user_id": "005..."}  create as a person
    PATCH  /records/{Type}/{Id}   {"fields": {...}, "user_id": "005...", "late_by_s": 5}
                                  edit as a person (late_by_s: a late commit, stamped then)
    DELETE /records/{Type}/{Id}   (`?user_id=`) delete as a person
    POST   /budget                {"used": N} (default 0: reset), {"limit": N}
    POST   /budget/reset          the daily budget starts over
    POST   /sessions/expire       every session is invalid from now on
    GET    /config                the running configuration
    POST   /config                {"lock_error_rate": 0.1, "session_ttl_s": 60, ...}
    POST   /clear                 forget every record
    POST   /clock                 {"advance_s": N} the org's time moves N seconds on (it
                                  runs on from there); answers {"now": ..., "offset_s": ...}
    POST   /recycle-bin/empty     deleted records are gone for `queryAll` too; `/deleted/`
                                  still reports them within its 15 days

A person's edits carry their user id in `LastModifiedById` (default `human_user_id`).
Validation errors answer 400 with Salesforce's error array.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from aiohttp import web

from sandboxes.base import load_json
from sandboxes.salesforce.errors import RecordError
from sandboxes.salesforce.humans import human_create, human_delete, human_update, seed_people
from sandboxes.salesforce.queries import sobject_row
from sandboxes.salesforce.state import SalesforceState
from sandboxes.sfdc_ids import full_id

__all__ = ["add_salesforce_control_routes"]

PREFIX = "/_sandbox/salesforce"


def add_salesforce_control_routes(app: web.Application, state: SalesforceState) -> None:
    routes = _Routes(state)
    add = app.router
    add.add_post(f"{PREFIX}/seed", routes.seed)
    add.add_get(f"{PREFIX}/counts", routes.counts)
    add.add_get(f"{PREFIX}/records/{{sobject}}", routes.list_records)
    add.add_post(f"{PREFIX}/records/{{sobject}}", routes.create)
    add.add_get(f"{PREFIX}/records/{{sobject}}/{{id}}", routes.get)
    add.add_patch(f"{PREFIX}/records/{{sobject}}/{{id}}", routes.update)
    add.add_delete(f"{PREFIX}/records/{{sobject}}/{{id}}", routes.delete)
    add.add_post(f"{PREFIX}/budget", routes.budget)
    add.add_post(f"{PREFIX}/budget/reset", routes.reset_budget)
    add.add_post(f"{PREFIX}/sessions/expire", routes.expire_sessions)
    add.add_get(f"{PREFIX}/config", routes.get_config)
    add.add_post(f"{PREFIX}/config", routes.set_config)
    add.add_post(f"{PREFIX}/clear", routes.clear)
    add.add_post(f"{PREFIX}/clock", routes.clock)
    add.add_post(f"{PREFIX}/recycle-bin/empty", routes.empty_recycle_bin)


def _error(exc: RecordError) -> web.Response:
    return web.json_response(exc.as_api_error().body(), status=400)


def _bad(message: str, status: int = 400) -> web.Response:
    return web.json_response([{"errorCode": "INVALID_INPUT", "message": message}], status=status)


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        body = load_json(await request.read())
    except ValueError as exc:
        raise web.HTTPBadRequest(text=f"invalid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="the body must be a JSON object")
    return body


class _Routes:
    def __init__(self, state: SalesforceState) -> None:
        self.state = state

    def _sobject(self, request: web.Request) -> str:
        name = request.match_info["sobject"].lower()
        for schema in self.state.schemas.values():
            if schema.name.lower() == name:
                return schema.name
        raise web.HTTPNotFound(text=f"unknown sObject {request.match_info['sobject']}")

    def _own_id(self, request: web.Request, sobject: str) -> str:
        record_id = full_id(request.match_info["id"])
        if self.state.sobject_of(record_id) != sobject:
            raise web.HTTPNotFound(text=f"{record_id} is not a {sobject} id")
        return record_id

    def _row(self, sobject: str, record: Mapping[str, Any]) -> dict[str, Any]:
        return sobject_row(sobject, record, None, self.state.config.api_version)

    async def seed(self, request: web.Request) -> web.Response:
        body = await _body(request)
        made = seed_people(
            self.state,
            int(body.get("people", 0)),
            int(body.get("seed", 7)),
            bool(body.get("convert_contacts", False)),
        )
        return web.json_response(made)

    async def counts(self, _: web.Request) -> web.Response:
        state = self.state
        with state.lock:
            answer: dict[str, Any] = dict(state.counts())
            answer["api_usage"] = {"used": state.budget.used, "limit": state.budget.limit}
            answer["sessions"] = len(state.sessions)
        return web.json_response(answer)

    async def list_records(self, request: web.Request) -> web.Response:
        sobject = self._sobject(request)
        deleted = request.query.get("include_deleted", "").lower() == "true"
        with self.state.lock:
            rows = [
                self._row(sobject, r)
                for r in self.state.records[sobject].values()
                if deleted or not r["IsDeleted"]
            ]
        return web.json_response(rows)

    async def get(self, request: web.Request) -> web.Response:
        sobject = self._sobject(request)
        with self.state.lock:
            record = self.state.records[sobject].get(full_id(request.match_info["id"]))
            if record is None:
                raise web.HTTPNotFound(text="no such record")
            return web.json_response(self._row(sobject, record))

    async def create(self, request: web.Request) -> web.Response:
        sobject = self._sobject(request)
        body = await _body(request)
        try:
            record = human_create(self.state, sobject, body.get("fields", {}), body.get("user_id"))
        except RecordError as exc:
            return _error(exc)
        return web.json_response(self._row(sobject, record), status=201)

    async def update(self, request: web.Request) -> web.Response:
        sobject = self._sobject(request)
        body = await _body(request)
        try:
            record = human_update(
                self.state,
                self._own_id(request, sobject),
                body.get("fields", {}),
                body.get("user_id"),
                body.get("late_by_s"),
            )
        except RecordError as exc:
            return _error(exc)
        return web.json_response(self._row(sobject, record))

    async def delete(self, request: web.Request) -> web.Response:
        sobject = self._sobject(request)
        try:
            record = human_delete(
                self.state, self._own_id(request, sobject), request.query.get("user_id")
            )
        except RecordError as exc:
            return _error(exc)
        return web.json_response(self._row(sobject, record))

    async def budget(self, request: web.Request) -> web.Response:
        body = await _body(request)
        with self.state.lock:
            if "limit" in body:
                self.state.reconfigure(daily_budget=int(body["limit"]))
            self.state.budget.set_used(int(body.get("used", 0)))
            return web.json_response(
                {"used": self.state.budget.used, "limit": self.state.budget.limit}
            )

    async def reset_budget(self, _: web.Request) -> web.Response:
        with self.state.lock:
            self.state.budget.set_used(0)
        return web.json_response({"used": 0, "limit": self.state.budget.limit})

    async def expire_sessions(self, _: web.Request) -> web.Response:
        return web.json_response({"expired": self.state.expire_sessions()})

    async def get_config(self, _: web.Request) -> web.Response:
        shown = dataclasses.asdict(self.state.config)  # unauthenticated: no secret in it
        return web.json_response({**shown, "client_secret": "***"})

    async def set_config(self, request: web.Request) -> web.Response:
        body = await _body(request)
        try:
            config = self.state.reconfigure(**body)
        except (TypeError, ValueError) as exc:
            return _bad(str(exc))
        return web.json_response(dataclasses.asdict(config))

    async def clear(self, _: web.Request) -> web.Response:
        self.state.clear()
        return web.json_response({"ok": True})

    async def clock(self, request: web.Request) -> web.Response:
        body = await _body(request)
        try:
            advance = float(body.get("advance_s", 0.0))
        except (TypeError, ValueError):
            return _bad("advance_s must be a number of seconds")
        with self.state.lock:
            self.state.clock_offset += timedelta(seconds=advance)
            return web.json_response(
                {"now": self.state.now(), "offset_s": self.state.clock_offset.total_seconds()}
            )

    async def empty_recycle_bin(self, _: web.Request) -> web.Response:
        return web.json_response({"purged": self.state.empty_recycle_bin()})
