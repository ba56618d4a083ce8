"""sObject Collections under `/composite/sobjects`: create, update, upsert, delete ≤ 200.

Answers HTTP 200 with one result per input record, in input order, even when records fail:
`{"id","success":true,"errors":[]}` (upsert adds `"created"`), or
`{"success":false,"errors":[{"statusCode","message","fields"}]}` (update and delete keep
the `id` they were given; correlate by position). With `allOrNone=true` one failure undoes
the whole call and every other record reports ALL_OR_NONE_OPERATION_ROLLED_BACK. Each
record needs `attributes.type` (INVALID_TYPE otherwise). Two records of one upsert with the
same external id both fail with DUPLICATE_VALUE, as Salesforce does.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from sandboxes.salesforce.calls import Call, Reply
from sandboxes.salesforce.errors import ApiError, RecordError, problem
from sandboxes.salesforce.writes import Writer

__all__ = ["create_collection", "delete_collection", "update_collection", "upsert_collection"]

Result = dict[str, Any]
_ROLLED_BACK = (
    "Record rolled back because not all records were valid and the request was "
    "using AllOrNone header"
)


def create_collection(call: Call) -> Reply:
    records, all_or_none = _records(call)
    writer = call.writer()

    def create(record: dict[str, Any]) -> Result:
        created = writer.create(_type(call, record), record)
        return {"id": created["Id"], "success": True, "errors": []}

    return Reply(200, _run(writer, records, create, all_or_none, [None] * len(records)))


def update_collection(call: Call) -> Reply:
    records, all_or_none = _records(call)
    writer = call.writer()
    ids = [_get(record, "Id") for record in records]

    def update(record: dict[str, Any]) -> Result:
        sobject = _type(call, record)
        record_id = _get(record, "Id")
        if not record_id:
            raise RecordError.of("MISSING_ARGUMENT", "Id not specified in an update call", ["Id"])
        values = {k: v for k, v in record.items() if k.lower() != "id"}
        updated = writer.update(record_id, values, sobject)
        return {"id": updated["Id"], "success": True, "errors": []}

    return Reply(200, _run(writer, records, update, all_or_none, ids))


def upsert_collection(call: Call) -> Reply:
    schema = call.schema()
    spec = schema.field(call.params["field"])
    if spec is None or not spec.external_id:
        raise ApiError(
            400,
            "INVALID_FIELD",
            f"Field name provided, {call.params['field']} is "
            f"not an External ID or indexed field for {schema.name}",
        )
    records, all_or_none = _records(call)
    writer = call.writer()
    repeated = _repeated([_get(r, spec.name) for r in records])

    def upsert(record: dict[str, Any]) -> Result:
        if _type(call, record) != schema.name:
            raise RecordError.of(
                "INVALID_TYPE", f"The list can contain objects only of type {schema.name}"
            )
        value = _get(record, spec.name)
        if value is not None and str(value).casefold() in repeated:
            raise RecordError.of(
                "DUPLICATE_VALUE", f"Duplicate external id specified: {value}", [spec.name]
            )
        written, created = writer.upsert(schema.name, spec.name, value, record)
        return {"id": written["Id"], "success": True, "errors": [], "created": created}

    return Reply(200, _run(writer, records, upsert, all_or_none, [None] * len(records)))


def delete_collection(call: Call) -> Reply:
    ids = [i for i in call.query.get("ids", "").split(",") if i]
    if not ids:
        raise ApiError(400, "MISSING_ARGUMENT", "ids parameter is required")
    _limit(call, len(ids))
    writer = call.writer()

    def delete(record_id: str) -> Result:
        deleted = writer.delete(record_id)
        return {"id": deleted["Id"], "success": True, "errors": []}

    return Reply(200, _run(writer, ids, delete, call.flag("allOrNone"), list(ids)))


def _run(
    writer: Writer,
    items: list[Any],
    write: Callable[[Any], Result],
    all_or_none: bool,
    ids: list[Any],
) -> list[Result]:
    results: list[Result] = []
    for item, record_id in zip(items, ids, strict=True):
        try:
            results.append(write(item))
        except RecordError as exc:
            results.append(_failure(record_id, exc.errors))
    if all_or_none and any(not r["success"] for r in results):
        writer.tx.rollback()
        rolled = [problem("ALL_OR_NONE_OPERATION_ROLLED_BACK", _ROLLED_BACK)]
        results = [
            _failure(record_id, rolled) if r["success"] else r
            for r, record_id in zip(results, ids, strict=True)
        ]
    return results


def _failure(record_id: Any, errors: list[dict[str, Any]]) -> Result:
    result: Result = {"success": False, "errors": errors}
    if isinstance(record_id, str) and record_id:
        result = {"id": record_id, **result}
    return result


def _records(call: Call) -> tuple[list[dict[str, Any]], bool]:
    body = call.json_object()
    records = body.get("records")
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise ApiError(400, "JSON_PARSER_ERROR", "records must be a list of JSON objects")
    _limit(call, len(records))
    _refuse_marked(records, call.state.config.refused_call_marker)
    all_or_none = body.get("allOrNone", False)
    if not isinstance(all_or_none, bool):
        raise ApiError(400, "JSON_PARSER_ERROR", "allOrNone must be a boolean")
    return records, all_or_none


def _refuse_marked(records: list[dict[str, Any]], marker: str | None) -> None:
    """The `refused_call_marker` fault: one marked value refuses the whole request."""
    for record in records:
        for name, value in record.items():
            if marker and isinstance(value, str) and marker in value:
                raise ApiError(
                    400,
                    "JSON_PARSER_ERROR",
                    f"Cannot deserialize instance of "
                    f"string from VALUE_STRING value {value!r} at [{name}]",
                )


def _limit(call: Call, count: int) -> None:
    maximum = call.state.config.collection_max
    if count > maximum:
        raise ApiError(
            400,
            "EXCEEDED_ID_LIMIT",
            f"record limit reached. cannot submit more than {maximum} records into this call",
        )


def _type(call: Call, record: dict[str, Any]) -> str:
    attributes = record.get("attributes")
    name = attributes.get("type") if isinstance(attributes, dict) else None
    if not isinstance(name, str) or not name:
        raise RecordError.of("INVALID_TYPE", "Must send a concrete entity type.")
    for schema in call.state.schemas.values():
        if schema.name.lower() == name.lower():
            return schema.name
    raise RecordError.of("INVALID_TYPE", f"sObject type '{name}' is not supported.")


def _get(record: dict[str, Any], name: str) -> Any:
    """`record[name]` with Salesforce's case-insensitive field names."""
    if name in record:
        return record[name]
    lowered = name.lower()
    return next((v for k, v in record.items() if k.lower() == lowered), None)


def _repeated(values: list[Any]) -> set[str]:
    counts = Counter(str(v).casefold() for v in values if v not in (None, ""))
    return {value for value, count in counts.items() if count > 1}
