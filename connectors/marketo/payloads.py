"""Marketo leads and activities -> `PersonChange` records: pure functions, one field table.

`FIELDS` is the one place that pairs Marketo REST API names with the contract's names
(SPEC S3: the 13 synced fields, plus the two owner ids that decide S2). Bulk-export CSV
rows and `leads.json` results are both flat `{apiName: value}` mappings, so one mapping
serves the initial and the incremental sync.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = [
    "API_FIELDS",
    "FIELDS",
    "OWNER_API_FIELDS",
    "deleted_change",
    "is_owned",
    "name_uuid",
    "parse_time",
    "person_change",
    "row_reader",
    "touches_owner",
]

# contract name -> Marketo API name. `linkedInProfileURL` and `sfdcContactOwnerId` are
# *unconfirmed* names (API_NOTES.md): change them here only.
FIELDS: dict[str, str] = {
    "first_name": "firstName",
    "last_name": "lastName",
    "sfdc_contact_id": "sfdcContactId",
    "sfdc_lead_id": "sfdcLeadId",
    "sfdc_account_id": "sfdcAccountId",
    "sfdc_opportunity_id": "sfdcOpptyId",
    "company": "company",
    "title": "title",
    "email": "email",
    "phone": "phone",
    "linkedin_url": "linkedInProfileURL",
    "source": "leadSource",
    "sfdc_lead_owner_id": "sfdcLeadOwnerId",
    "sfdc_contact_owner_id": "sfdcContactOwnerId",
}
OWNER_API_FIELDS = (FIELDS["sfdc_lead_owner_id"], FIELDS["sfdc_contact_owner_id"])
# What the bulk export and leads.json are asked for: identity, the synced fields, the version.
API_FIELDS: tuple[str, ...] = ("id", *FIELDS.values(), "updatedAt")


def parse_time(text: str) -> datetime:
    """Marketo's `2026-03-01T12:00:00Z` (or any ISO-8601; naive means UTC) as aware UTC."""
    moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _text(value: Any) -> str | None:
    """Empty CSV cells and JSON nulls are both 'no value'."""
    if value is None or value == "":
        return None
    return str(value)


def is_owned(lead: Mapping[str, Any]) -> bool:
    """SPEC S2 on a raw lead: a Salesforce lead or contact owner is set."""
    return any(_text(lead.get(name)) for name in OWNER_API_FIELDS)


def person_change(lead: Mapping[str, Any]) -> dict[str, Any]:
    """The full `PersonChange` of a lead's current state; its version is `updatedAt`."""
    marketo_id = int(lead["id"])
    changed_at = parse_time(str(lead["updatedAt"]))
    change: dict[str, Any] = {name: _text(lead.get(api)) for name, api in FIELDS.items()}
    change.update(
        event_id=_event_id(marketo_id, changed_at, False),
        marketo_id=marketo_id,
        changed_at=changed_at,
        deleted=False,
    )
    return change


def deleted_change(activity: Mapping[str, Any]) -> dict[str, Any]:
    """A Delete Lead activity as a `PersonChange`; its version is the activity date."""
    marketo_id = int(activity["leadId"])
    changed_at = parse_time(str(activity["activityDate"]))
    change: dict[str, Any] = dict.fromkeys(FIELDS)
    change.update(
        event_id=_event_id(marketo_id, changed_at, True),
        marketo_id=marketo_id,
        changed_at=changed_at,
        deleted=True,
    )
    return change


def touches_owner(activities: Iterable[Mapping[str, Any]]) -> bool:
    """Whether lead-change activities changed an owner field (in either direction).

    A person who loses their owner must still reach the store as a removal, although
    their current state is not sales-owned (SPEC S2).
    """
    return any(
        f.get("name") in OWNER_API_FIELDS
        for activity in activities
        for f in activity.get("fields") or ()
    )


def _event_id(marketo_id: int, changed_at: datetime, deleted: bool) -> str:
    """Deterministic: a change re-published after a crash keeps its id (and its bytes).

    A name-based UUID (RFC 9562 version 8) from blake2b: uuid5 (SHA-1 + `uuid.UUID`) cost
    a tenth of the initial sync's CPU.
    """
    ms = (changed_at - _EPOCH) // _MS
    if ms >= 0 and not changed_at.microsecond % 1000:  # the text `.3f` gives, 3x faster
        stamp = f"{ms // 1000}.{ms % 1000:03d}"
    else:
        stamp = f"{changed_at.timestamp():.3f}"
    return name_uuid(f"{marketo_id}:{stamp}:{1 if deleted else 0}".encode())


def name_uuid(name: bytes) -> str:
    """The text of the name-based UUID of `name`: blake2b's first 16 bytes, with the
    version (8) and the variant (10xx) bits set."""
    digest = _BLAKE2B.copy()  # a copy of a fresh hash: ~20 % cheaper than a new one
    digest.update(name)
    h = digest.hexdigest()
    return f"{h[:8]}-{h[8:12]}-8{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


_BLAKE2B = hashlib.blake2b(digest_size=16)
_VARIANT = {f"{n:x}": "89ab"[n & 3] for n in range(16)}  # a hex digit, its top bits 10
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def row_reader(header: Sequence[str]) -> Callable[[Sequence[str]], dict[str, Any] | None]:
    """For bulk-export CSV rows of columns `header`: a row's `PersonChange`, or None when
    it has no owner. Positional: a million rows need no dict per row (`person_change`
    on a `dict(zip(header, row))` gives the same result, at twice the cost)."""
    at = {name: i for i, name in enumerate(header)}
    columns = [(name, at[api]) for name, api in FIELDS.items()]
    owners = [at[api] for api in OWNER_API_FIELDS]
    id_at, updated_at = at["id"], at["updatedAt"]

    def read(row: Sequence[str]) -> dict[str, Any] | None:
        if not any(row[i] for i in owners):
            return None
        marketo_id, changed_at = int(row[id_at]), parse_time(row[updated_at])
        change: dict[str, Any] = {name: row[i] or None for name, i in columns}
        change.update(
            event_id=_event_id(marketo_id, changed_at, False),
            marketo_id=marketo_id,
            changed_at=changed_at,
            deleted=False,
        )
        return change

    return read
