"""Writing one record: create, update, upsert by external id, delete.

`Writer` carries what every write of one API call shares: the user it is made as (the
integration user for OAuth calls), the call's SystemModstamp (all records of one call get
the same stamp, as in one Salesforce transaction), and the `Transaction` that can undo it.
Each method validates fully before it mutates, and raises `RecordError` otherwise.
Record-level rules that need other records live here: required fields, WhoId pointing at
a live, unconverted Lead or Contact (a Lead's task cannot also have a WhatId), converted
leads refusing updates, the customer validation rule (`invalid_subject_marker`), unique
external ids, and injected UNABLE_TO_LOCK_ROW.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sandboxes.salesforce.errors import RecordError, problem
from sandboxes.salesforce.records import coerce_values
from sandboxes.salesforce.schema import is_id
from sandboxes.salesforce.state import SalesforceState, Transaction
from sandboxes.sfdc_ids import full_id

__all__ = ["MultipleMatches", "Writer"]

Record = dict[str, Any]


class MultipleMatches(RecordError):
    """An external id matched several records (HTTP 300 on the single-record upsert)."""

    def __init__(self, field_name: str, value: str, ids: list[str]) -> None:
        super().__init__(
            problem(
                "DUPLICATE_EXTERNAL_ID",
                f"{field_name}: more than one record found for external id field: {ids}",
                [field_name],
            )
        )
        self.ids = ids


@dataclass
class Writer:
    """Writes of one call, made as `user` at `now`, undoable through `tx`.

    `human` writes come from the control routes: they may set fields people set in the UI
    (`Lead.IsConverted`) and are never hit by injected lock errors. `locked` fails every
    record of the call with UNABLE_TO_LOCK_ROW (`lock_error_scope="request"`).
    """

    state: SalesforceState
    user: str
    now: str
    tx: Transaction
    human: bool = False
    locked: bool = False

    @classmethod
    def for_call(
        cls,
        state: SalesforceState,
        user: str,
        parent: Transaction | None = None,
        human: bool = False,
        late_by_s: float | None = None,
    ) -> Writer:
        locked = (
            not human and state.config.lock_error_scope == "request" and state.roll_lock_error()
        )
        return cls(
            state, user, state.write_time(late_by_s), Transaction(state, parent), human, locked
        )

    # -- the four writes ------------------------------------------------------------------

    def create(self, sobject: str, values: Mapping[str, Any]) -> Record:
        schema = self.state.schemas[sobject]
        fields = coerce_values(schema, values, creating=True, human=self.human)
        if not fields.get("OwnerId"):
            fields["OwnerId"] = self.user
        merged = {**schema.blank(), **fields}
        self._check(sobject, merged, fields, None)
        self._fault(None)
        return self.state.insert(sobject, fields, self.user, self.now, self.tx)

    def update(
        self, record_id: Any, values: Mapping[str, Any], sobject: str | None = None
    ) -> Record:
        record = self.existing(record_id, sobject)
        kind = self.state.sobject_of(record["Id"]) or ""
        fields = coerce_values(
            self.state.schemas[kind], values, creating=False, human=self.human, current=record
        )
        self._check(kind, {**record, **fields}, fields, record)
        self._fault(record["Id"])
        self.state.modify(record, fields, self.user, self.now, self.tx)
        return record

    def upsert(
        self, sobject: str, field_name: str, value: Any, values: Mapping[str, Any]
    ) -> tuple[Record, bool]:
        """Update the one record whose `field_name` is `value`, or create it; True if created."""
        if value is None or value == "":
            raise RecordError.of("MISSING_ARGUMENT", f"{field_name} not specified", [field_name])
        matches = self.state.external_matches(str(value))
        if len(matches) > 1:
            raise MultipleMatches(field_name, str(value), matches)
        if matches:
            return self.update(matches[0], values), False
        return self.create(sobject, {**values, field_name: value}), True

    def delete(self, record_id: Any, sobject: str | None = None) -> Record:
        record = self.existing(record_id, sobject)
        self._fault(record["Id"])
        self.state.remove(record, self.user, self.now, self.tx)
        return record

    # -- checks ---------------------------------------------------------------------------

    def existing(self, record_id: Any, sobject: str | None = None) -> Record:
        """The live record `record_id` (of type `sobject` when given), or RecordError."""
        record_id = full_id(record_id) if is_id(record_id) else record_id
        kind = self.state.sobject_of(record_id) if is_id(record_id) else None
        if kind is None or (sobject is not None and kind != sobject):
            label = sobject or "Record"
            raise RecordError.of(
                "MALFORMED_ID", f"{label} ID: id value of incorrect type: {record_id}", ["Id"]
            )
        record = self.state.records[kind].get(record_id)
        if record is None:
            raise RecordError.of(
                "INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", ["Id"]
            )
        if record["IsDeleted"]:
            raise RecordError.of("ENTITY_IS_DELETED", "entity is deleted", [])
        if record.get("IsConverted") and not self.human:
            raise RecordError.of(
                "CANNOT_UPDATE_CONVERTED_LEAD", "cannot reference converted lead", []
            )
        return record

    def _check(self, sobject: str, merged: Record, fields: Record, current: Record | None) -> None:
        schema = self.state.schemas[sobject]
        missing = [
            n for n, spec in schema.fields.items() if spec.required and merged.get(n) in (None, "")
        ]
        errors = []
        if missing:
            errors.append(
                problem(
                    "REQUIRED_FIELD_MISSING",
                    f"Required fields are missing: [{', '.join(missing)}]",
                    missing,
                )
            )
        if sobject == "Task":
            errors += self._task_rules(merged, fields)
        errors += self._unique_external_id(sobject, fields, current)
        if errors:
            raise RecordError(*errors)

    def _task_rules(self, merged: Record, fields: Record) -> list[dict[str, Any]]:
        errors = []
        marker = self.state.config.invalid_subject_marker
        if marker and not self.human and marker in (merged.get("Subject") or ""):
            errors.append(
                problem(
                    "FIELD_CUSTOM_VALIDATION_EXCEPTION",
                    "Subject is not allowed by validation rule ActionsSync_Sandbox_Rule",
                    ["Subject"],
                )
            )
        if fields.get("WhoId"):
            errors += self._who_rules(fields["WhoId"])
        who, what = merged.get("WhoId"), merged.get("WhatId")
        if who and what and who.startswith("00Q") and ("WhoId" in fields or "WhatId" in fields):
            errors.append(
                problem(
                    "FIELD_INTEGRITY_EXCEPTION",
                    "Related To ID: a task whose "
                    "Name ID is a lead cannot be related to another record",
                    ["WhatId"],
                )
            )
        return errors

    def _who_rules(self, who: str) -> list[dict[str, Any]]:
        target = self.state.get(who)
        if target is None:
            return [
                problem(
                    "INVALID_CROSS_REFERENCE_KEY",
                    f"Name ID: invalid cross reference id: {who}",
                    ["WhoId"],
                )
            ]
        if target["IsDeleted"]:
            return [problem("ENTITY_IS_DELETED", f"entity is deleted: {who}", ["WhoId"])]
        if target.get("IsConverted"):
            return [
                problem(
                    "CANNOT_UPDATE_CONVERTED_LEAD", "cannot reference converted lead", ["WhoId"]
                )
            ]
        return []

    def _unique_external_id(
        self, sobject: str, fields: Record, current: Record | None
    ) -> list[dict[str, Any]]:
        name = self.state.config.task_external_id_field
        value = fields.get(name)
        if sobject != "Task" or not value or not self.state.config.external_id_unique:
            return []
        own = current["Id"] if current else None
        others = [i for i in self.state.external_matches(value) if i != own]
        if not others:
            return []
        return [
            problem(
                "DUPLICATE_VALUE",
                f"duplicate value found: {name} duplicates value on record with id: {others[0]}",
                [name],
            )
        ]

    def _fault(self, record_id: str | None) -> None:
        if self.human:
            return
        if self.locked or (
            self.state.config.lock_error_scope == "record" and self.state.roll_lock_error()
        ):
            raise RecordError.of(
                "UNABLE_TO_LOCK_ROW",
                "unable to obtain exclusive access to "
                f"this record or 1 records: {record_id or ''}".rstrip(": "),
                [],
            )
