"""Field-level validation: a JSON record in, canonical field values out, or every problem.

Checks what one value can tell on its own (name, writability, type, length, picklist,
id shape). Checks that need other records (does WhoId exist? is the lead converted?)
live in `writes.py`. Salesforce treats an empty string as null, and so does the sandbox.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from sandboxes.salesforce.errors import RecordError, problem
from sandboxes.salesforce.schema import FieldSpec, FieldType, SObjectSchema, is_id
from sandboxes.salesforce.timefmt import format_datetime, parse_date, parse_datetime
from sandboxes.sfdc_ids import full_id

__all__ = ["coerce_values", "project"]

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_READ_ONLY = (
    "Unable to create/update fields: {}. Please check the security settings of this "
    "field and verify that it is read/write for your Profile or Permission set."
)


def coerce_values(
    schema: SObjectSchema,
    values: Mapping[str, Any],
    *,
    creating: bool,
    human: bool = False,
    current: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Canonical values of the fields in `values` (`attributes` is skipped).

    Raises `RecordError` with one problem per bad field. `human` edits (control routes) may
    set fields people set in Salesforce but the API cannot, such as `Lead.IsConverted`.
    A create-only field (`TaskSubtype`) may be repeated unchanged on update, which keeps an
    upsert replay idempotent; changing it is refused.
    """
    out: dict[str, Any] = {}
    errors: list[dict[str, Any]] = []
    for key, raw in values.items():
        if key == "attributes":
            continue
        spec = schema.field(key)
        if spec is None:
            errors.append(
                problem(
                    "INVALID_FIELD",
                    f"No such column '{key}' on sobject of type {schema.name}",
                    [key],
                )
            )
            continue
        if not _writable(spec, creating, human):
            if current is not None and spec.createable and current.get(spec.name) == raw:
                continue
            errors.append(_not_writable(spec, creating))
            continue
        try:
            out[spec.name] = _coerce(spec, raw)
        except RecordError as exc:
            errors.extend(exc.errors)
    if errors:
        raise RecordError(*errors)
    return out


def project(record: Mapping[str, Any], fields: list[str] | None = None) -> dict[str, Any]:
    """A copy of `record` limited to `fields` (all fields when None)."""
    if fields is None:
        return dict(record)
    return {name: record.get(name) for name in fields}


def _writable(spec: FieldSpec, creating: bool, human: bool) -> bool:
    if human and spec.human_only:
        return True
    return spec.createable if creating else spec.updateable


def _not_writable(spec: FieldSpec, creating: bool) -> dict[str, Any]:
    if spec.name == "Id" and creating:
        return problem(
            "INVALID_FIELD_FOR_INSERT_UPDATE", "cannot specify Id in an insert call", ["Id"]
        )
    return problem("INVALID_FIELD_FOR_INSERT_UPDATE", _READ_ONLY.format(spec.name), [spec.name])


def _coerce(spec: FieldSpec, raw: Any) -> Any:
    if raw is None or raw == "":
        return False if spec.type is FieldType.BOOLEAN else None
    return _COERCERS[spec.type](spec, raw)


def _wrong_type(spec: FieldSpec, raw: Any) -> RecordError:
    return RecordError.of(
        "INVALID_TYPE_ON_FIELD_IN_RECORD",
        f"{spec.display}: value not of required type: {raw}",
        [spec.name],
    )


def _text(spec: FieldSpec, raw: Any) -> str:
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        raise _wrong_type(spec, raw)
    value = str(raw)
    if spec.length and len(value) > spec.length:
        raise RecordError.of(
            "STRING_TOO_LONG",
            f"{spec.display}: data value too large: {value[:40]}... (max length={spec.length})",
            [spec.name],
        )
    return value


def _email(spec: FieldSpec, raw: Any) -> str:
    value = _text(spec, raw)
    if not _EMAIL.fullmatch(value):
        raise RecordError.of(
            "INVALID_EMAIL_ADDRESS", f"{spec.display}: invalid email address: {value}", [spec.name]
        )
    return value


def _picklist(spec: FieldSpec, raw: Any) -> str:
    value = _text(spec, raw)
    if spec.restricted and value not in spec.picklist:
        raise RecordError.of(
            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
            f"{spec.display}: bad value for restricted picklist field: {value}",
            [spec.name],
        )
    return value


def _reference(spec: FieldSpec, raw: Any) -> str:
    value = _text(spec, raw)
    if not is_id(value) or value[:3] not in spec.references:
        raise RecordError.of(
            "FIELD_INTEGRITY_EXCEPTION",
            f"{spec.display}: id value of incorrect type: {value}",
            [spec.name],
        )
    return full_id(value)  # a 15-character id is stored, and answered, as its 18


def _boolean(spec: FieldSpec, raw: Any) -> bool:
    if not isinstance(raw, bool):
        raise _wrong_type(spec, raw)
    return raw


def _integer(spec: FieldSpec, raw: Any) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise _wrong_type(spec, raw)
    if isinstance(raw, float) and not raw.is_integer():
        raise _wrong_type(spec, raw)
    return int(raw)


def _date(spec: FieldSpec, raw: Any) -> str:
    if not isinstance(raw, str) or parse_date(raw) is None:
        raise _wrong_type(spec, raw)
    return raw


def _datetime(spec: FieldSpec, raw: Any) -> str:
    moment = parse_datetime(raw) if isinstance(raw, str) else None
    if moment is None:
        raise _wrong_type(spec, raw)
    return format_datetime(moment)


_COERCERS: dict[FieldType, Callable[[FieldSpec, Any], Any]] = {
    FieldType.ID: _text,
    FieldType.STRING: _text,
    FieldType.TEXTAREA: _text,
    FieldType.EMAIL: _email,
    FieldType.PICKLIST: _picklist,
    FieldType.REFERENCE: _reference,
    FieldType.BOOLEAN: _boolean,
    FieldType.INT: _integer,
    FieldType.DATE: _date,
    FieldType.DATETIME: _datetime,
}
assert set(_COERCERS) == set(FieldType)
