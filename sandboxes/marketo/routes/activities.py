"""Activity reads (paging tokens) and custom activities.

    GET  /rest/v1/activities/pagingtoken.json?sinceDatetime=ISO
    GET  /rest/v1/activities/leadchanges.json?nextPageToken&fields&batchSize[&leadIds]
    GET  /rest/v1/activities/deletedleads.json?nextPageToken&batchSize
    GET  /rest/v1/activities.json?activityTypeIds&nextPageToken&batchSize[&leadIds]
    GET  /rest/v1/activities/types.json
    POST /rest/v1/activities/external/type.json                      create a type (draft)
    POST /rest/v1/activities/external/type/{apiName}/attributes/create.json
    POST /rest/v1/activities/external/type/{apiName}/approve.json
    GET  /rest/v1/activities/external/types.json
    POST /rest/v1/activities/external.json                           add custom activities

Every paged read answers a `nextPageToken` (keep it: it is where to resume) and
`moreResult`; loop until `moreResult` is false.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from aiohttp import web

from sandboxes.marketo.activities import STANDARD_TYPES, Activity, Family, encode_token, family_of
from sandboxes.marketo.envelope import int_param, list_param, ok, read_json
from sandboxes.marketo.errors import MarketoError
from sandboxes.marketo.fields import parse_iso
from sandboxes.marketo.keys import STATE_KEY
from sandboxes.marketo.render import activity_json, deleted_lead_json, lead_change_json
from sandboxes.marketo.routes.leads import field_names, input_records

__all__ = ["routes"]

routes = web.RouteTableDef()
Render = Callable[[Activity], dict[str, Any] | None]


def _ints(params: Mapping[str, str], name: str, *, required: bool = False) -> set[int]:
    items = list_param(params, name, required=required)
    if not all(i.isdigit() for i in items):
        raise MarketoError("1003", f"{name} must be integers")
    return {int(i) for i in items}


def _page(
    request: web.Request,
    families: set[Family],
    render: Render,
    keep: Callable[[Activity], bool] = lambda _: True,
) -> web.Response:
    state, params = request.app[STATE_KEY], request.query
    token = params.get("nextPageToken")
    if not token:
        raise MarketoError("1003", "nextPageToken not specified")
    size = int_param(params, "batchSize", state.config.batch_max, state.config.batch_max)
    lead_ids = _ints(params, "leadIds")
    scanned, next_id, more = state.activities(families, token, size)
    result = [
        out
        for a in scanned
        if keep(a) and (not lead_ids or a.lead_id in lead_ids)
        if (out := render(a)) is not None
    ]
    return ok(result, more=more, token=encode_token(next_id))


@routes.get("/rest/v1/activities/pagingtoken.json")
async def paging_token(request: web.Request) -> web.Response:
    try:
        since = parse_iso(request.query["sinceDatetime"])
    except (KeyError, ValueError) as exc:
        raise MarketoError("1003", "sinceDatetime must be an ISO-8601 datetime") from exc
    return ok(None, token=request.app[STATE_KEY].paging_token(since))


@routes.get("/rest/v1/activities/leadchanges.json")
async def lead_changes(request: web.Request) -> web.Response:
    if not request.query.get("fields"):
        raise MarketoError("1003", "fields not specified")
    names = set(field_names(request.query, ()))
    return _page(request, {Family.LEAD_CHANGES}, lambda a: lead_change_json(a, names))


@routes.get("/rest/v1/activities/deletedleads.json")
async def deleted_leads(request: web.Request) -> web.Response:
    return _page(request, {Family.DELETED_LEADS}, deleted_lead_json)


@routes.get("/rest/v1/activities.json")
async def activities(request: web.Request) -> web.Response:
    type_ids = _ints(request.query, "activityTypeIds", required=True)
    if len(type_ids) > 10:
        raise MarketoError("1003", "At most 10 activityTypeIds")
    state = request.app[STATE_KEY]
    families = {family_of(t) for t in type_ids}
    return _page(
        request,
        families,
        lambda a: activity_json(a, state.activity_type),
        keep=lambda a: a.type_id in type_ids,
    )


@routes.get("/rest/v1/activities/types.json")
async def activity_types(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    with state.lock:
        custom = [
            {
                "id": t.id,
                "name": t.name,
                "description": t.description,
                "primaryAttribute": t.primary.as_dict(),
                "attributes": [a.as_dict() for a in t.attributes],
            }
            for t in state.types.all()
            if t.status == "approved"
        ]
    standard = [{"id": i, "name": n, "attributes": []} for i, n in STANDARD_TYPES.items()]
    return ok(standard + custom)


@routes.post("/rest/v1/activities/external/type.json")
async def create_type(request: web.Request) -> web.Response:
    state, body = request.app[STATE_KEY], await read_json(request)
    with state.lock:
        return ok([state.types.create(body, state.clock()).as_dict()])


@routes.post("/rest/v1/activities/external/type/{api_name}/attributes/create.json")
async def create_attributes(request: web.Request) -> web.Response:
    state, body = request.app[STATE_KEY], await read_json(request)
    with state.lock:
        return ok([state.types.add_attributes(request.match_info["api_name"], body).as_dict()])


@routes.post("/rest/v1/activities/external/type/{api_name}/approve.json")
async def approve_type(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    with state.lock:
        return ok([state.types.approve(request.match_info["api_name"]).as_dict()])


@routes.get("/rest/v1/activities/external/types.json")
async def custom_types(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    with state.lock:
        return ok([t.as_dict() for t in state.types.all()])


@routes.post("/rest/v1/activities/external.json")
async def add_activities(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    records = input_records(await read_json(request), state.config.batch_max)
    _refuse_marked(records, state.config.refused_call_marker)
    return ok(state.add_activities(records))


def _refuse_marked(records: Sequence[Any], marker: str | None) -> None:
    """The `refused_call_marker` fault: one marked record refuses the whole call."""
    for i, record in enumerate(records):
        if (
            marker
            and isinstance(record, dict)
            and marker in str(record.get("primaryAttributeValue") or "")
        ):
            raise MarketoError("1003", f"Invalid data in input[{i}]: primaryAttributeValue")
