"""Lead database: read by filter, sync (create/update), delete, describe.

GET  /rest/v1/leads.json?filterType&filterValues&fields&batchSize&nextPageToken
POST /rest/v1/leads.json?_method=GET   the same query as a form body (long value lists
                                       would pass the 8 KB URI limit, HTTP 414); the
                                       body must be x-www-form-urlencoded (else 612),
                                       `_method=GET` may also be a field of the form
POST /rest/v1/leads.json               {"action","lookupField","input":[..]}
POST /rest/v1/leads/delete.json        {"input":[{"id":..}]}
GET  /rest/v1/leads/describe.json
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from sandboxes.marketo.envelope import (
    decode_offset,
    encode_offset,
    int_param,
    list_param,
    ok,
    read_json,
)
from sandboxes.marketo.errors import MarketoError
from sandboxes.marketo.fields import BY_NAME, DEFAULT_FIELDS, FIELDS
from sandboxes.marketo.keys import STATE_KEY
from sandboxes.marketo.writes import LOOKUP_FIELDS

__all__ = ["input_records", "routes"]

routes = web.RouteTableDef()
FORM = "application/x-www-form-urlencoded"


def field_names(params: Mapping[str, str], default: tuple[str, ...]) -> list[str]:
    """The `fields` parameter checked against the field table (1006 for an unknown one)."""
    names = list_param(params, "fields") or list(default)
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        raise MarketoError("1006", f"Field '{unknown[0]}' not found")
    return names


def input_records(body: Any, batch_max: int) -> list[Any]:
    """The `input` list of a write: 1003 when missing or longer than a batch."""
    records = body.get("input") if isinstance(body, dict) else None
    if not isinstance(records, list):
        raise MarketoError("1003", "input must be a list")
    if len(records) > batch_max:
        raise MarketoError("1003", f"Batch size exceeded: at most {batch_max} records")
    return records


def _find(request: web.Request, params: Mapping[str, str]) -> web.Response:
    state = request.app[STATE_KEY]
    batch_max = state.config.batch_max
    filter_type = params.get("filterType", "")
    if filter_type not in LOOKUP_FIELDS:
        raise MarketoError("1003", f"Invalid filterType '{filter_type}'")
    values: list[Any] = list_param(params, "filterValues", required=True)
    if len(values) > batch_max:
        raise MarketoError("1003", f"Too many filterValues: at most {batch_max}")
    if filter_type == "id":
        if not all(v.isdigit() for v in values):
            raise MarketoError("1003", "filterValues must be lead ids")
        values = [int(v) for v in values]
    names = field_names(params, DEFAULT_FIELDS)
    names = names if "id" in names else ["id", *names]
    size = int_param(params, "batchSize", batch_max, batch_max)
    offset = decode_offset(params.get("nextPageToken"))
    found = state.find_leads(filter_type, values, names)
    more = offset + size < len(found)
    return ok(found[offset : offset + size], token=encode_offset(offset + size) if more else None)


@routes.get("/rest/v1/leads.json")
async def get_leads(request: web.Request) -> web.Response:
    return _find(request, request.query)


@routes.post("/rest/v1/leads.json")
async def post_leads(request: web.Request) -> web.Response:
    # A lookup sent as a form: `_method=GET` in the query string or in the form itself
    # (widely used clients put it in the body, with the access token, and repeat a list
    # parameter once per value: fields=email&fields=unsubscribed).
    if request.content_type == FORM:
        posted = await request.post()
        form = {k: ",".join(map(str, posted.getall(k))) for k in set(posted.keys())}
        if (request.query.get("_method") or form.get("_method")) != "GET":
            raise MarketoError("612", "a lead sync takes a JSON body")
        return _find(request, {**request.query, **form})
    if request.query.get("_method") == "GET":
        raise MarketoError("612", f"_method=GET takes an {FORM} body")
    state = request.app[STATE_KEY]
    body = await read_json(request)
    records = input_records(body, state.config.batch_max)
    action = str(body.get("action", "createOrUpdate"))
    lookup = str(body.get("lookupField", "email"))
    return ok(state.sync_leads(records, action, lookup))


@routes.post("/rest/v1/leads/delete.json")
async def delete_leads(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    records = input_records(await read_json(request), state.config.batch_max)
    ids = [r.get("id") if isinstance(r, dict) else None for r in records]
    return ok(state.delete_leads(ids))


@routes.get("/rest/v1/leads/describe.json")
async def describe(_: web.Request) -> web.Response:
    return ok(
        [
            {
                "id": f.id,
                "displayName": f.name,
                "dataType": f.data_type,
                "rest": {"name": f.name, "readOnly": not f.writable},
            }
            for f in FIELDS
        ]
    )
