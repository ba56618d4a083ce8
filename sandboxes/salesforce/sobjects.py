"""Single-record endpoints under `/sobjects`: create, read, update, delete, upsert by
external id, describe, and the deleted-records feed.

Upsert `PATCH /sobjects/Task/ActionsSync_Id__c/{value}` answers 201 with
`{"id","success":true,"errors":[],"created":true}` when it creates, 204 when it updates,
300 with the candidate URLs when the value matches several records, and 404 when
`updateOnly=true` finds nothing. A record-level problem becomes HTTP 400 with the same
codes the collections use (a deleted or missing record: 404). Ids in paths may have 15
or 18 characters; answers always carry 18. `/updated/` and `/deleted/` answer a window
(seconds ignored) within their horizons (INVALID_REPLICATION_DATE before it), with at
most `replication_id_limit` ids (EXCEEDED_ID_LIMIT).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sandboxes.salesforce.calls import Call, Reply, not_found
from sandboxes.salesforce.errors import ApiError, RecordError
from sandboxes.salesforce.queries import sobject_row
from sandboxes.salesforce.schema import SObjectSchema, is_id
from sandboxes.salesforce.timefmt import format_datetime, parse_datetime
from sandboxes.salesforce.writes import MultipleMatches
from sandboxes.sfdc_ids import full_id

__all__ = [
    "create_one",
    "delete_one",
    "deleted",
    "describe",
    "get_by_external",
    "get_one",
    "update_one",
    "updated",
    "upsert_one",
]


def create_one(call: Call) -> Reply:
    schema = call.schema()
    try:
        record = call.writer().create(schema.name, call.json_object())
    except RecordError as exc:
        raise exc.as_api_error() from exc
    location = call.url(schema.name, record["Id"])
    return Reply(201, {"id": record["Id"], "success": True, "errors": []}, {"Location": location})


def get_one(call: Call) -> Reply:
    schema = call.schema()
    record = _live(call, schema, call.params["id"])
    return Reply(200, sobject_row(schema.name, record, _fields(call, schema), call.version))


def update_one(call: Call) -> Reply:
    schema = call.schema()
    _live(call, schema, call.params["id"])
    try:
        call.writer().update(call.params["id"], call.json_object(), schema.name)
    except RecordError as exc:
        raise exc.as_api_error(404 if exc.code == "ENTITY_IS_DELETED" else 400) from exc
    return Reply(204)


def delete_one(call: Call) -> Reply:
    schema = call.schema()
    _live(call, schema, call.params["id"])
    try:
        call.writer().delete(call.params["id"], schema.name)
    except RecordError as exc:
        raise exc.as_api_error() from exc
    return Reply(204)


def upsert_one(call: Call) -> Reply:
    schema = call.schema()
    name = _external_field(call, schema)
    value = call.params["value"]
    body = {k: v for k, v in call.json_object().items() if k.lower() != name.lower()}
    if call.flag("updateOnly") and not call.state.external_matches(value):
        raise not_found()
    try:
        record, created = call.writer().upsert(schema.name, name, value, body)
    except MultipleMatches as exc:
        return Reply(300, [call.url(schema.name, i) for i in exc.ids])
    except RecordError as exc:
        raise exc.as_api_error() from exc
    if not created:
        return Reply(204)
    return Reply(
        201,
        {"id": record["Id"], "success": True, "errors": [], "created": True},
        {"Location": call.url(schema.name, record["Id"])},
    )


def get_by_external(call: Call) -> Reply:
    schema = call.schema()
    _external_field(call, schema)
    ids = call.state.external_matches(call.params["value"])
    if len(ids) > 1:
        return Reply(300, [call.url(schema.name, i) for i in ids])
    if not ids:
        raise not_found()
    record = call.state.records[schema.name][ids[0]]
    return Reply(200, sobject_row(schema.name, record, _fields(call, schema), call.version))


def describe(call: Call) -> Reply:
    schema = call.schema()
    answer = schema.describe()
    answer["urls"] = {
        "sobject": f"/services/data/{call.version}/sobjects/{schema.name}",
        "describe": f"/services/data/{call.version}/sobjects/{schema.name}/describe",
    }
    return Reply(200, answer)


def deleted(call: Call) -> Reply:
    """`?start=&end=` (ISO-8601, seconds ignored): records of this type deleted in that
    window, as long as the recycle bin (`deleted_horizon_days`) still holds them."""
    schema, state = call.schema(), call.state
    low, high, earliest = _window(call, state.config.deleted_horizon_days)
    with state.lock:
        rows = [
            {"id": d.id, "deletedDate": d.deleted_date}
            for d in state.deletions
            if d.sobject == schema.name and low <= d.deleted_date <= high
        ]
    _check_ids(call, len(rows))
    return Reply(
        200, {"deletedRecords": rows, "earliestDateAvailable": earliest, "latestDateCovered": high}
    )


def updated(call: Call) -> Reply:
    """`?start=&end=` (ISO-8601, seconds ignored): ids of the live records of this type
    whose SystemModstamp falls in that window (`updated_horizon_days` back at most)."""
    schema, state = call.schema(), call.state
    low, high, _ = _window(call, state.config.updated_horizon_days)
    with state.lock:
        ids = sorted(r["Id"] for r in state.live(schema.name) if low <= r["SystemModstamp"] <= high)
    _check_ids(call, len(ids))
    return Reply(200, {"ids": ids, "latestDateCovered": high})


def _window(call: Call, horizon_days: int) -> tuple[str, str, str]:
    """(start, end capped at now, earliest available), canonical; refused as Salesforce
    refuses them (INVALID_REPLICATION_DATE)."""
    now = call.state.clock()
    earliest = now - timedelta(days=horizon_days)
    start, end = _moment(call, "start"), _moment(call, "end")
    if end <= start:
        raise ApiError(400, "INVALID_REPLICATION_DATE", "end date must be after the start date")
    if start < earliest:
        raise ApiError(
            400,
            "INVALID_REPLICATION_DATE",
            f"startDate can not be earlier than earliestDateAvailable: {format_datetime(earliest)}",
        )
    return format_datetime(start), format_datetime(min(end, now)), format_datetime(earliest)


def _check_ids(call: Call, count: int) -> None:
    limit = call.state.config.replication_id_limit
    if count > limit:
        raise ApiError(
            400,
            "EXCEEDED_ID_LIMIT",
            f"{count} ids in the window: more than {limit}; ask for a shorter one",
        )


def _moment(call: Call, name: str) -> Any:
    raw = call.query.get(name)
    if not raw:
        raise ApiError(400, "MISSING_ARGUMENT", f"{name} parameter is required")
    # A `+` zone offset sent unencoded arrives as a space after query decoding.
    moment = parse_datetime(raw.strip().replace(" ", "+"))
    if moment is None:
        raise ApiError(400, "INVALID_REPLICATION_DATE", f"{name}: invalid date: {raw}")
    return moment.replace(second=0, microsecond=0)  # Salesforce ignores the seconds


def _live(call: Call, schema: SObjectSchema, record_id: str) -> dict[str, Any]:
    record = call.state.records[schema.name].get(full_id(record_id)) if is_id(record_id) else None
    if record is None:
        raise not_found(
            f"Provided external ID field does not exist or is not accessible: {record_id}"
        )
    if record["IsDeleted"]:
        raise ApiError(404, "ENTITY_IS_DELETED", "entity is deleted", [])
    return record


def _fields(call: Call, schema: SObjectSchema) -> list[str] | None:
    raw = call.query.get("fields")
    if not raw:
        return None
    names = []
    for name in raw.split(","):
        spec = schema.field(name.strip())
        if spec is None:
            raise ApiError(
                400,
                "INVALID_FIELD",
                f"No such column '{name.strip()}' on sobject of type {schema.name}",
            )
        names.append(spec.name)
    return names


def _external_field(call: Call, schema: SObjectSchema) -> str:
    spec = schema.field(call.params["field"])
    if spec is None:
        raise not_found(
            "Provided external ID field does not exist or is not accessible: "
            f"{call.params['field']}"
        )
    if not spec.external_id:
        raise ApiError(
            400,
            "INVALID_FIELD",
            f"Field name provided, {spec.name} is not an "
            f"External ID or indexed field for {schema.name}",
        )
    return spec.name
