"""The lead fields the sandbox knows: Marketo API names, population names, wire formats.

`FIELDS` is the one table that maps `sandboxes.population` (snake_case contract names) to
Marketo REST API names. Field ids are the sandbox's own; they appear in lead-change
activities as `fields[].id`. `linkedInProfileURL` and `sfdcContactOwnerId` are
*unconfirmed* names (API_NOTES.md): change them here only.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

__all__ = [
    "BY_NAME",
    "DEFAULT_FIELDS",
    "FIELDS",
    "Field",
    "coerce",
    "csv_column",
    "csv_text",
    "iso",
    "json_value",
    "parse_iso",
    "text_value",
]

DataType = Literal["integer", "string", "email", "phone", "url", "boolean", "datetime"]


@dataclass(frozen=True)
class Field:
    name: str  # Marketo REST API name
    source: str | None  # key in sandboxes.population people; None: the sandbox keeps it
    id: int
    data_type: DataType
    writable: bool = True  # clients may set it in POST leads.json
    searchable: bool = False  # usable as filterType / lookupField
    shared: bool = False  # few distinct values: interned to save memory at 1.5M leads


FIELDS: tuple[Field, ...] = (
    Field("id", "marketo_id", 1, "integer", writable=False, searchable=True),
    Field("firstName", "first_name", 2, "string"),
    Field("lastName", "last_name", 3, "string"),
    Field("email", "email", 4, "email", searchable=True),
    Field("phone", "phone", 5, "phone"),
    Field("title", "title", 6, "string", shared=True),
    Field("company", "company", 7, "string", shared=True),
    Field("leadSource", "source", 8, "string", shared=True),
    Field("linkedInProfileURL", "linkedin_url", 9, "url"),
    Field("sfdcLeadId", "sfdc_lead_id", 10, "string", searchable=True),
    Field("sfdcContactId", "sfdc_contact_id", 11, "string", searchable=True),
    Field("sfdcAccountId", "sfdc_account_id", 12, "string", shared=True),
    Field("sfdcOpptyId", "sfdc_opportunity_id", 13, "string"),
    Field("sfdcLeadOwnerId", "sfdc_lead_owner_id", 14, "string", shared=True),
    Field("sfdcContactOwnerId", "sfdc_contact_owner_id", 15, "string", shared=True),
    Field("unsubscribed", None, 16, "boolean"),
    Field("unsubscribedReason", None, 17, "string"),
    Field("updatedAt", "updated_at", 18, "datetime", writable=False),
    Field("createdAt", "created_at", 19, "datetime", writable=False),
)
BY_NAME = {f.name: f for f in FIELDS}
# What GET leads.json answers when the caller names no fields (Marketo's own default).
DEFAULT_FIELDS = ("id", "firstName", "lastName", "email", "updatedAt", "createdAt")


def iso(epoch_s: float) -> str:
    """Marketo's datetime wire format: UTC, second precision, `Z` suffix."""
    # a bulk export formats one per row: the hour is cached, minutes and seconds looked up
    hour, rest = divmod(int(epoch_s), 3600)
    return _hour(hour) + _MINUTE_SECOND[rest]


@functools.lru_cache(maxsize=16384)  # hours: nearly two years of creation dates
def _hour(hour: int) -> str:
    return time.strftime("%Y-%m-%dT%H:", time.gmtime(hour * 3600))


_MINUTE_SECOND = [f"{s // 60:02d}:{s % 60:02d}Z" for s in range(3600)]


def parse_iso(text: str) -> float:
    """Epoch seconds of an ISO-8601 date or datetime (naive means UTC)."""
    moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def json_value(field: Field, value: Any) -> Any:
    """A stored value as GET leads.json answers it."""
    if value is None:
        return None
    return iso(value) if field.data_type == "datetime" else value


def text_value(field: Field, value: Any) -> str | None:
    """A stored value as text: lead-change `newValue`/`oldValue` and CSV cells."""
    if value is None:
        return None
    if field.data_type == "boolean":
        return "true" if value else "false"
    if field.data_type == "datetime":
        return iso(value)
    return str(value)


def csv_text(field: Field, value: Any) -> str:
    text = text_value(field, value)
    return "" if text is None else text


def csv_column(field: Field, values: Iterable[Any]) -> list[Any]:
    """`csv_text` of each value, but `str()` of other types left to the CSV writer.

    A column at a time, so that the bulk export tests the type once, not once per value.
    """
    if field.data_type == "datetime":
        return ["" if v is None else iso(v) for v in values]
    if field.data_type == "boolean":
        return ["" if v is None else "true" if v else "false" for v in values]
    if field.data_type == "integer":
        return ["" if v is None else str(v) for v in values]
    return ["" if v is None else v for v in values]


def coerce(field: Field, value: Any) -> Any:
    """A client-supplied value in stored form; raises ValueError when it does not fit."""
    if value is None:
        return None
    if field.data_type == "boolean":
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "false", "1", "0"):
            return str(value).lower() in ("true", "1")
        raise ValueError(f"Invalid boolean value for field '{field.name}'")
    if isinstance(value, dict | list):
        raise ValueError(f"Invalid value for field '{field.name}'")
    return str(value)
