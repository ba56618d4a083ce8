"""The sObjects the sandbox knows (Lead, Contact, Task) and the properties of their fields.

One table per object, read by validation (`records.py`), SOQL (`soql_eval.py`) and the
describe endpoint. Field names are matched case-insensitively, as Salesforce does, and
answered in their canonical spelling. Properties follow Salesforce's describe results:
`TaskSubtype` is create-only, `IsConverted` and `IsClosed` are read-only, `Description` is a
long text area that SOQL cannot filter or sort on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sandboxes.salesforce.config import SalesforceConfig
from sandboxes.sfdc_ids import is_id

__all__ = ["KEY_PREFIXES", "FieldSpec", "FieldType", "SObjectSchema", "build_schemas", "is_id"]

KEY_PREFIXES = {"Lead": "00Q", "Contact": "003", "Task": "00T"}
# Objects a reference may point at, by key prefix (the sandbox stores only the first three).
REFERENCED = {
    "00Q": "Lead",
    "003": "Contact",
    "00T": "Task",
    "001": "Account",
    "006": "Opportunity",
    "005": "User",
    "00G": "Group",
}
USER_PREFIXES = ("005", "00G")  # users and queues can own records
TASK_STATUSES = ("Not Started", "In Progress", "Completed", "Waiting on someone else", "Deferred")
CLOSED_STATUSES = frozenset({"Completed"})


class FieldType(StrEnum):
    ID = "id"
    REFERENCE = "reference"
    STRING = "string"
    TEXTAREA = "textarea"
    EMAIL = "email"
    BOOLEAN = "boolean"
    DATETIME = "datetime"
    DATE = "date"
    PICKLIST = "picklist"
    INT = "int"


@dataclass(frozen=True)
class FieldSpec:
    """One field as describe reports it; `human_only` fields are read-only through the API
    but set by people in Salesforce (the control routes), e.g. `Lead.IsConverted`."""

    name: str
    type: FieldType
    length: int | None = None
    createable: bool = True
    updateable: bool = True
    required: bool = False
    default: Any = None
    picklist: tuple[str, ...] = ()
    restricted: bool = False
    references: tuple[str, ...] = ()
    external_id: bool = False
    filterable: bool = True
    human_only: bool = False
    label: str = ""

    @property
    def display(self) -> str:
        """How Salesforce names the field in error messages ("Name ID" for WhoId)."""
        return self.label or self.name


@dataclass(frozen=True)
class SObjectSchema:
    name: str
    key_prefix: str
    fields: Mapping[str, FieldSpec]
    _lower: Mapping[str, FieldSpec] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_lower", {k.lower(): v for k, v in self.fields.items()})

    def field(self, name: str) -> FieldSpec | None:
        """The field called `name`, in any letter case, or None."""
        return self._lower.get(name.lower())

    def blank(self) -> dict[str, Any]:
        """A record holding every field at its default."""
        return {name: spec.default for name, spec in self.fields.items()}

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "keyPrefix": self.key_prefix,
            "createable": True,
            "updateable": True,
            "deletable": True,
            "queryable": True,
            "fields": [_describe_field(spec) for spec in self.fields.values()],
        }


def build_schemas(config: SalesforceConfig) -> dict[str, SObjectSchema]:
    """Lead, Contact and Task for the org `config` describes."""
    return {
        "Lead": _schema("Lead", _person_fields(config, lead=True)),
        "Contact": _schema("Contact", _person_fields(config, lead=False)),
        "Task": _schema("Task", _task_fields(config)),
    }


def _schema(name: str, specific: list[FieldSpec]) -> SObjectSchema:
    ordered = [FieldSpec("Id", FieldType.ID, 18, createable=False, updateable=False)]
    ordered += specific
    ordered += _system_fields()
    return SObjectSchema(name, KEY_PREFIXES[name], {f.name: f for f in ordered})


def _system_fields() -> list[FieldSpec]:
    def ro(name: str, kind: FieldType, **kw: Any) -> FieldSpec:
        return FieldSpec(name, kind, createable=False, updateable=False, **kw)

    return [
        ro("CreatedDate", FieldType.DATETIME),
        ro("CreatedById", FieldType.REFERENCE, length=18, references=("005",)),
        ro("LastModifiedDate", FieldType.DATETIME),
        ro("LastModifiedById", FieldType.REFERENCE, length=18, references=("005",)),
        ro("SystemModstamp", FieldType.DATETIME),
        ro("IsDeleted", FieldType.BOOLEAN, default=False),
    ]


def _owner() -> FieldSpec:
    return FieldSpec("OwnerId", FieldType.REFERENCE, 18, references=USER_PREFIXES, label="Owner ID")


def _person_fields(config: SalesforceConfig, lead: bool) -> list[FieldSpec]:
    specs = [
        _owner(),
        FieldSpec("FirstName", FieldType.STRING, 40),
        FieldSpec("LastName", FieldType.STRING, 80, required=True, label="Last Name"),
        FieldSpec("Email", FieldType.EMAIL, 80),
        FieldSpec("HasOptedOutOfEmail", FieldType.BOOLEAN, default=False),
    ]
    if lead:
        specs += [
            FieldSpec("Company", FieldType.STRING, 255, required=True, label="Company"),
            FieldSpec(
                "IsConverted",
                FieldType.BOOLEAN,
                default=False,
                createable=False,
                updateable=False,
                human_only=True,
            ),
            FieldSpec(
                "ConvertedContactId",
                FieldType.REFERENCE,
                18,
                references=("003",),
                createable=False,
                updateable=False,
                human_only=True,
            ),
        ]
    if config.opt_out_field:
        specs.append(FieldSpec(config.opt_out_field, FieldType.BOOLEAN, default=False))
    return specs


def _task_fields(config: SalesforceConfig) -> list[FieldSpec]:
    pick = FieldType.PICKLIST
    return [
        _owner(),
        FieldSpec("Subject", FieldType.STRING, 255, required=True, label="Subject"),
        FieldSpec("WhoId", FieldType.REFERENCE, 18, references=("00Q", "003"), label="Name ID"),
        FieldSpec(
            "WhatId", FieldType.REFERENCE, 18, references=("001", "006"), label="Related To ID"
        ),
        FieldSpec("ActivityDate", FieldType.DATE),
        FieldSpec(
            "Status",
            pick,
            40,
            picklist=TASK_STATUSES,
            restricted=True,
            default="Not Started",
            required=True,
        ),
        FieldSpec(
            "Priority",
            pick,
            40,
            picklist=("High", "Normal", "Low"),
            restricted=True,
            default="Normal",
            required=True,
        ),
        FieldSpec("Type", pick, 40, picklist=("Call", "Email", "Meeting", "Other")),
        FieldSpec(
            "TaskSubtype",
            pick,
            40,
            picklist=("Task", "Email", "Call"),
            restricted=True,
            default="Task",
            updateable=False,
        ),
        FieldSpec("Description", FieldType.TEXTAREA, 32_000, filterable=False),
        FieldSpec("IsClosed", FieldType.BOOLEAN, default=False, createable=False, updateable=False),
        FieldSpec("CallDurationInSeconds", FieldType.INT),
        FieldSpec(
            "CallType", pick, 40, picklist=("Inbound", "Internal", "Outbound"), restricted=True
        ),
        FieldSpec("CallDisposition", FieldType.STRING, 255),
        FieldSpec(config.task_external_id_field, FieldType.STRING, 255, external_id=True),
    ]


def _describe_field(spec: FieldSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "label": spec.display,
        "type": str(spec.type),
        "length": spec.length or 0,
        "createable": spec.createable,
        "updateable": spec.updateable,
        "nillable": not spec.required and spec.type is not FieldType.BOOLEAN,
        "defaultValue": spec.default,
        "externalId": spec.external_id,
        "filterable": spec.filterable,
        "sortable": spec.filterable,
        "idLookup": spec.external_id or spec.name == "Id",
        "referenceTo": [REFERENCED[p] for p in spec.references],
        "restrictedPicklist": spec.restricted,
        "picklistValues": [
            {"value": v, "label": v, "active": True, "defaultValue": v == spec.default}
            for v in spec.picklist
        ],
    }
