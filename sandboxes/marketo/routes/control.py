"""Control routes of the Marketo sandbox, for tests, the demo and the benchmark.

Not part of Marketo's API: no token, no limits, plain JSON (errors as `{"error": ..}`).

    POST /_sandbox/marketo/seed                  {"count": N, "seed": 7, "owned_share": 0.6,
                                                  "duplicate_share": 0.02} -> first/last id
    POST /_sandbox/marketo/leads                 {"action","lookupField","input"} sync leads
                                                 (any batch size, logs change activities)
    POST /_sandbox/marketo/leads/delete          {"ids": [..]}
    GET  /_sandbox/marketo/leads/{id}            one lead, every field
    POST /_sandbox/marketo/quota/reset           the daily call quota and export budget
    POST /_sandbox/marketo/tokens/expire         every live token expires now (next: 602)
    POST /_sandbox/marketo/exports/{id}/late     {"seconds": 5}: file.json 404s that long
    GET  /_sandbox/marketo/counts                leads, activities, jobs, quota, in flight
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from aiohttp import web

from sandboxes.base import load_json
from sandboxes.marketo.errors import MarketoError
from sandboxes.marketo.keys import STATE_KEY

__all__ = ["PREFIX", "routes"]

PREFIX = "/_sandbox/marketo"
routes = web.RouteTableDef()
_SEED_OPTIONS = ("owned_share", "duplicate_share")


def _bad(message: str, status: int = 400) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = load_json(await request.read()) if request.can_read_body else {}
    except ValueError as exc:
        raise web.HTTPBadRequest(text=f"invalid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="body must be a JSON object")
    return body


@routes.post(f"{PREFIX}/seed")
async def seed(request: web.Request) -> web.Response:
    state, body = request.app[STATE_KEY], await _body(request)
    count = body.get("count")
    if not isinstance(count, int) or count < 0:
        return _bad("count must be a non-negative integer")
    options = {k: body[k] for k in _SEED_OPTIONS if k in body}
    work = functools.partial(state.seed, count, body.get("seed"), **options)
    try:  # a million people take seconds: keep the loop answering meanwhile
        ids = await asyncio.get_running_loop().run_in_executor(None, work)
    except ValueError as exc:  # a lead was created while seeding
        return _bad(str(exc), status=409)
    return web.json_response(
        {"seeded": count, "first_id": ids.start, "last_id": ids.stop - 1, "leads": len(state.leads)}
    )


@routes.post(f"{PREFIX}/leads")
async def sync_leads(request: web.Request) -> web.Response:
    state, body = request.app[STATE_KEY], await _body(request)
    records = body.get("input")
    if not isinstance(records, list):
        return _bad("input must be a list of leads")
    action, lookup = body.get("action", "createOrUpdate"), body.get("lookupField", "email")
    try:
        result = state.sync_leads(records, str(action), str(lookup))
    except MarketoError as exc:
        return _bad(exc.message)
    return web.json_response({"result": result})


@routes.post(f"{PREFIX}/leads/delete")
async def delete_leads(request: web.Request) -> web.Response:
    state, body = request.app[STATE_KEY], await _body(request)
    ids = body.get("ids")
    if not isinstance(ids, list):
        return _bad("ids must be a list of lead ids")
    return web.json_response({"result": state.delete_leads(ids)})


@routes.get(PREFIX + "/leads/{lead_id:\\d+}")
async def lead(request: web.Request) -> web.Response:
    found = request.app[STATE_KEY].lead(int(request.match_info["lead_id"]))
    return web.json_response(found) if found else _bad("lead not found", status=404)


@routes.post(f"{PREFIX}/quota/reset")
async def reset_quota(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    state.reset_daily_limits()
    return web.json_response({"quota_used": state.limits.quota.used})


@routes.post(f"{PREFIX}/tokens/expire")
async def expire_tokens(request: web.Request) -> web.Response:
    return web.json_response({"expired": request.app[STATE_KEY].tokens.expire_all()})


@routes.post(f"{PREFIX}/exports/{{export_id}}/late")
async def late_file(request: web.Request) -> web.Response:
    state, body = request.app[STATE_KEY], await _body(request)
    seconds = body.get("seconds", state.config.late_file_s)
    if not isinstance(seconds, int | float) or seconds < 0:
        return _bad("seconds must be a non-negative number")
    try:
        with state.lock:
            job = state.exports.delay_file(request.match_info["export_id"], seconds, state.clock())
            return web.json_response(job.as_dict())
    except MarketoError as exc:
        return _bad(exc.message, status=404)


@routes.get(f"{PREFIX}/counts")
async def counts(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE_KEY].counts())
