"""The write rules: sync leads, delete leads, add custom activities.

Each takes the state's parts and `now`, runs under the state lock, and answers one
result per input record, in input order. Record-level problems become skipped results
(`reasons` for leads, `errors` for activities, as Marketo spells them); only call-level
problems raise `MarketoError`.

Every lead write that changes a field logs one Change Data Value activity (13) listing
all the fields it changed; a new lead logs New Lead (12) and then a 13 with the values
it was created with (oldValue null). A deleted lead logs Delete Lead (37).

`createDuplicate` always makes a new lead, even when the lookup field matches one: how
two leads come to share an email (SPEC S5). Unsubscribes are durable per email: a lead
created with the email of an unsubscribed lead is created unsubscribed. (Unsubscribing
one lead later does not touch the others sharing its email: a lookup by email may answer
one lead unsubscribed and one not, and a client reads "any".)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sandboxes.marketo.activities import CHANGE_DATA_VALUE, DELETE_LEAD, NEW_LEAD, ActivityLog
from sandboxes.marketo.custom import ActivityTypes, Attribute
from sandboxes.marketo.errors import MarketoError, problem
from sandboxes.marketo.fields import BY_NAME, coerce, parse_iso
from sandboxes.marketo.leads import LeadTable

__all__ = ["ACTIONS", "LOOKUP_FIELDS", "add_activities", "delete_leads", "sync_leads"]

ACTIONS = ("createOrUpdate", "createOnly", "updateOnly", "createDuplicate")
LOOKUP_FIELDS = tuple(f.name for f in BY_NAME.values() if f.searchable)


class _Skip(Exception):
    def __init__(self, code: str, message: str | None = None, lead_id: int | None = None):
        super().__init__(code)
        self.reason, self.lead_id = problem(code, message), lead_id


def sync_leads(
    leads: LeadTable, log: ActivityLog, records: Sequence[Any], action: str, lookup: str, now: float
) -> list[dict[str, Any]]:
    if action not in ACTIONS:
        raise MarketoError("1003", f"Invalid action '{action}'")
    if lookup not in LOOKUP_FIELDS:
        raise MarketoError("1003", f"Invalid lookupField '{lookup}'")
    results = []
    for record in records:
        try:
            results.append(_sync_one(leads, log, record, action, lookup, now))
        except _Skip as skip:
            head = {"id": skip.lead_id} if skip.lead_id else {}
            results.append({**head, "status": "skipped", "reasons": [skip.reason]})
    return results


def _sync_one(
    leads: LeadTable, log: ActivityLog, record: Any, action: str, lookup: str, now: float
) -> dict[str, Any]:
    values, key = _values(record, lookup)
    try:
        rows = leads.find(lookup, [key])
    except (TypeError, ValueError) as exc:
        raise _Skip("1003", f"Invalid value for lookup field '{lookup}'") from exc
    if action == "createDuplicate":
        return _create(leads, log, values, now)
    if len(rows) > 1:
        raise _Skip("1007")
    if rows:
        if action == "createOnly":
            raise _Skip("1005", lead_id=rows[0] + 1)
        changes = leads.update(rows[0], values)
        if changes:
            leads.update(rows[0], {"updatedAt": now})
            log.append(CHANGE_DATA_VALUE, rows[0] + 1, now, tuple(changes), now)
        return {"id": rows[0] + 1, "status": "updated"}
    if action == "updateOnly" or lookup == "id":
        raise _Skip("1004")
    return _create(leads, log, values, now)


def _create(
    leads: LeadTable, log: ActivityLog, values: dict[str, Any], now: float
) -> dict[str, Any]:
    email = values.get("email")
    if email and any(leads.get(r, ("unsubscribed",))[0] for r in leads.find("email", [email])):
        values = {**values, "unsubscribed": True}  # durable unsubscribe
    row = leads.append(values, now)
    log.append(NEW_LEAD, row + 1, now, (), now)
    initial = tuple((BY_NAME[n], None, v) for n, v in values.items() if v is not None)
    if initial:
        log.append(CHANGE_DATA_VALUE, row + 1, now, initial, now)
    return {"id": row + 1, "status": "created"}


def _values(record: Any, lookup: str) -> tuple[dict[str, Any], Any]:
    """Stored-form values of the writable fields in `record`, and its lookup key."""
    if not isinstance(record, dict):
        raise _Skip("1003", "Each input record must be an object")
    unknown = [name for name in record if name not in BY_NAME]
    if unknown:
        raise _Skip("1006", f"Field '{unknown[0]}' not found")
    key = record.get(lookup)
    if key in (None, ""):
        raise _Skip("1003", f"Value for lookup field '{lookup}' not specified")
    try:
        # id, createdAt and updatedAt are read-only: sent, they are ignored (id is a key).
        values = {n: coerce(BY_NAME[n], v) for n, v in record.items() if BY_NAME[n].writable}
    except ValueError as exc:
        raise _Skip("1003", str(exc)) from exc
    return values, key


def delete_leads(
    leads: LeadTable, log: ActivityLog, ids: Sequence[Any], now: float
) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    for lead_id in ids:
        row = leads.row_of(lead_id) if isinstance(lead_id, int) else None
        if row is None:
            results.append({"id": lead_id, "status": "skipped", "reasons": [problem("1004")]})
            continue
        first, last = leads.get(row, ("firstName", "lastName"))
        leads.delete(row)
        log.append(DELETE_LEAD, lead_id, now, f"{last or ''}, {first or ''}", now)
        results.append({"id": lead_id, "status": "deleted"})
    return results


def add_activities(
    leads: LeadTable, types: ActivityTypes, log: ActivityLog, records: Sequence[Any], now: float
) -> list[dict[str, Any]]:
    """Write-once and never de-duplicated: the same input twice makes two activities."""
    results: list[dict[str, Any]] = []
    for record in records:
        try:
            type_id, lead_id, date, payload = _activity(leads, types, record)
        except _Skip as skip:
            results.append({"status": "skipped", "errors": [skip.reason]})
            continue
        added = log.append(type_id, lead_id, date, payload, now)
        results.append({"id": added.id, "marketoGUID": added.guid, "status": "added"})
    return results


def _activity(
    leads: LeadTable, types: ActivityTypes, record: Any
) -> tuple[int, int, float, dict[str, Any]]:
    if not isinstance(record, dict):
        raise _Skip("1003", "Each input record must be an object")
    type_id = record.get("activityTypeId")
    type_ = types.by_id(type_id) if isinstance(type_id, int) else None
    if type_ is None or type_.status != "approved":
        state = "not found" if type_ is None else "not approved"
        raise _Skip("1003", f"Activity type '{record.get('activityTypeId')}' {state}")
    lead_id = record.get("leadId")
    if not isinstance(lead_id, int) or leads.row_of(lead_id) is None:
        raise _Skip("1004")
    try:
        date = parse_iso(str(record["activityDate"]))
    except (KeyError, ValueError) as exc:
        raise _Skip("1003", "Invalid activityDate") from exc
    if record.get("primaryAttributeValue") in (None, ""):
        raise _Skip("1003", "primaryAttributeValue not specified")
    attributes = _attributes(record.get("attributes") or [], type_.attribute)
    return (
        type_.id,
        lead_id,
        date,
        {"primaryAttributeValue": str(record["primaryAttributeValue"]), "attributes": attributes},
    )


def _attributes(items: Any, known: Callable[[str], Attribute | None]) -> dict[str, Any]:
    if not isinstance(items, list):
        raise _Skip("1003", "attributes must be a list")
    out: dict[str, Any] = {}
    for item in items:
        if not isinstance(item, Mapping) or "apiName" not in item:
            raise _Skip("1003", "Each attribute needs apiName and value")
        if known(str(item["apiName"])) is None:
            raise _Skip("1006", f"Attribute '{item['apiName']}' not found")
        out[str(item["apiName"])] = item.get("value")
    return out
