"""Custom activity types: how the sales activities of SPEC S7 become Marketo activities.

Marketo's API cannot write its native activity types, so a client registers its own:
create a type (draft), add attributes, approve it, then write activities of it. At most
`max_types` types of at most `max_attributes` attributes each (1003 beyond). Type ids
start at 100001, as Marketo's custom types do. Not thread-safe on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from sandboxes.marketo.errors import MarketoError
from sandboxes.marketo.fields import iso

__all__ = ["DATA_TYPES", "ActivityType", "ActivityTypes", "Attribute"]

DATA_TYPES = frozenset(
    {
        "string",
        "text",
        "integer",
        "float",
        "boolean",
        "email",
        "phone",
        "link",
        "url",
        "date",
        "datetime",
        "currency",
    }
)
FIRST_TYPE_ID = 100_001


@dataclass(frozen=True)
class Attribute:
    api_name: str
    name: str
    data_type: str
    description: str = ""

    @classmethod
    def parse(cls, body: Any) -> Attribute:
        if not isinstance(body, dict) or not body.get("apiName") or not body.get("name"):
            raise MarketoError("1003", "Attribute requires apiName and name")
        data_type = str(body.get("dataType", "string"))
        if data_type not in DATA_TYPES:
            raise MarketoError("1003", f"Invalid dataType '{data_type}'")
        return cls(
            str(body["apiName"]), str(body["name"]), data_type, str(body.get("description", ""))
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "apiName": self.api_name,
            "name": self.name,
            "dataType": self.data_type,
            "description": self.description,
        }


@dataclass
class ActivityType:
    id: int
    api_name: str
    name: str
    trigger_name: str
    filter_name: str
    description: str
    primary: Attribute
    created_at: float
    attributes: list[Attribute] = field(default_factory=list)
    status: Literal["draft", "approved"] = "draft"

    def attribute(self, api_name: str) -> Attribute | None:
        return next((a for a in self.attributes if a.api_name == api_name), None)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "apiName": self.api_name,
            "name": self.name,
            "description": self.description,
            "triggerName": self.trigger_name,
            "filterName": self.filter_name,
            "status": self.status,
            "primaryAttribute": self.primary.as_dict(),
            "attributes": [a.as_dict() for a in self.attributes],
            "createdAt": iso(self.created_at),
        }


class ActivityTypes:
    def __init__(self, max_types: int, max_attributes: int) -> None:
        self.max_types = max_types
        self.max_attributes = max_attributes
        self._by_api_name: dict[str, ActivityType] = {}
        self._by_id: dict[int, ActivityType] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def all(self) -> list[ActivityType]:
        return list(self._by_id.values())

    def by_id(self, type_id: int) -> ActivityType | None:
        return self._by_id.get(type_id)

    def get(self, api_name: str) -> ActivityType:
        found = self._by_api_name.get(api_name)
        if found is None:
            raise MarketoError("610", f"Activity type '{api_name}' not found")
        return found

    def create(self, body: Any, now: float) -> ActivityType:
        if not isinstance(body, dict):
            raise MarketoError("1003", "Request body must be an object")
        missing = [
            k
            for k in ("apiName", "name", "triggerName", "filterName", "primaryAttribute")
            if not body.get(k)
        ]
        if missing:
            raise MarketoError("1003", f"Missing required field(s): {', '.join(missing)}")
        if body["apiName"] in self._by_api_name:
            raise MarketoError("1003", "Activity type already exists")
        if len(self._by_id) >= self.max_types:
            raise MarketoError("1003", f"Maximum of {self.max_types} activity types reached")
        type_ = ActivityType(
            FIRST_TYPE_ID + len(self._by_id),
            str(body["apiName"]),
            str(body["name"]),
            str(body["triggerName"]),
            str(body["filterName"]),
            str(body.get("description", "")),
            Attribute.parse(body["primaryAttribute"]),
            now,
        )
        self._by_api_name[type_.api_name] = self._by_id[type_.id] = type_
        return type_

    def add_attributes(self, api_name: str, body: Any) -> ActivityType:
        type_ = self.get(api_name)
        items = body.get("attribute") if isinstance(body, dict) else None
        if not isinstance(items, list) or not items:
            raise MarketoError("1003", "attribute must be a non-empty list")
        new = [Attribute.parse(item) for item in items]
        taken = {a.api_name for a in type_.attributes} | {type_.primary.api_name}
        clash = sorted({a.api_name for a in new} & taken)
        if clash or len({a.api_name for a in new}) < len(new):
            raise MarketoError("1003", f"Attribute already exists: {', '.join(clash)}")
        if len(type_.attributes) + len(new) > self.max_attributes:
            raise MarketoError("1003", f"Maximum of {self.max_attributes} attributes reached")
        type_.attributes.extend(new)
        return type_

    def approve(self, api_name: str) -> ActivityType:
        type_ = self.get(api_name)
        type_.status = "approved"
        return type_
