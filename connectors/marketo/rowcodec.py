"""Bulk-export CSV rows straight to the topic's bytes: (key, Confluent-framed PersonChange).

Why. The initial sync turns ~1M rows into records on a 2-core box shared with the people
worker. `row_reader` builds a dict per row (a datetime, the event id through it) and the
`Serializer` walks it again; here a row's UTF-8 cells go to the Avro body as they are,
the event id and `changed_at` come from the `updatedAt` text, and one straight-line
function per CSV header does the rest (the column positions and the union prefixes
inlined). An owned row: ~13 us to a dict and its bytes before, ~4 us now.

The contract: for every row, the key and value bytes of the reference path (`row_reader`,
then `Serializer`), or its exception. Rows off the common path (an id that is not plain
digits, an `updatedAt` other than Marketo's `YYYY-MM-DDTHH:MM:SSZ`) take the reference
path, and so does every row when the schema has a field this encoder does not know.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import date
from functools import cache
from typing import Any

import schemas
from actions_sync.avro import long_bytes
from actions_sync.serialization import Serializer, frame
from connectors.marketo.context import RECORD
from connectors.marketo.payloads import FIELDS, OWNER_API_FIELDS, name_uuid, row_reader

__all__ = ["RowEncoder", "row_encoder"]

RowEncoder = Callable[[Sequence[bytes]], tuple[bytes, bytes] | None]  # None: no owner


def row_encoder(header: Sequence[str], serializer: Serializer) -> RowEncoder:
    """For rows of UTF-8 cells under `header`: a sales-owned row's (key, value), else None.

    `serializer` is the topic's (its schema id frames the values; the reference path
    encodes with it)."""
    reference = _reference(header, serializer)
    try:
        return _compile(header, frame(serializer.schema_id, b""), reference)
    except _Unsupported:
        return reference


def _reference(header: Sequence[str], serialize: Serializer) -> RowEncoder:
    read = row_reader(header)

    def encode(row: Sequence[bytes]) -> tuple[bytes, bytes] | None:
        change = read([cell.decode() for cell in row])
        if change is None:
            return None
        return str(change["marketo_id"]).encode(), serialize(change)

    return encode


def _identity(id_cell: bytes, updated_at: bytes) -> tuple[bytes, int, int, bytes] | None:
    """(key, marketo_id, epoch seconds, event id) of a row whose id is plain digits and
    whose `updatedAt` is canonical; None for any other text (the reference path reads it).

    The key is the id cell itself (`str(int(cell))` of plain digits without a leading 0);
    18 digits at most, so that it is always within an Avro long."""
    if not id_cell.isdigit() or id_cell[0] == 0x30 or len(id_cell) > 18:
        return None
    try:
        seconds = (
            _DAYS[updated_at[:10]] + _HOURS_MINUTES[updated_at[10:16]] + _SECONDS[updated_at[16:]]
        )
    except KeyError:
        return None
    # payloads._event_id's name for a live lead versioned at whole seconds
    event_id = name_uuid(b"%s:%d.000:0" % (id_cell, seconds)).encode()
    return id_cell, int(id_cell), seconds, event_id


class _Days(dict[bytes, int]):
    """b"YYYY-MM-DD" -> epoch seconds at its midnight (UTC), computed once per day seen.

    Only text that exact pattern and a real date get in (a KeyError otherwise), so that
    the three lookups of `_identity` together accept nothing `parse_time` would read
    differently."""

    def __missing__(self, text: bytes) -> int:
        try:
            if not _DATE.fullmatch(text):
                raise ValueError(text)
            days = date.fromisoformat(text.decode()).toordinal() - _EPOCH_ORDINAL
        except ValueError:
            raise KeyError(text) from None
        if len(self) >= _MAX_DAYS:  # bounded for any input; a load spans a few hundred
            self.clear()
        self[text] = days * 86400
        return days * 86400


_DATE = re.compile(rb"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_MAX_DAYS = 100_000
_DAYS = _Days()
_HOURS_MINUTES = {b"T%02d:%02d" % (h, m): h * 3600 + m * 60 for h in range(24) for m in range(60)}
_SECONDS = {b":%02dZ" % s: s for s in range(60)}


class _Unsupported(Exception):
    """The schema has a field this encoder cannot write: the reference path writes all."""


@cache
def _optional_strings(branches: tuple[str, ...]) -> list[bytes]:
    """A cell's byte length -> what precedes its bytes in a [null, string] union: the
    null branch for an empty cell (CSV: no value), else the string branch and the
    length. A list, the fastest lookup; a longer cell raises IndexError (the reference
    path writes it: Marketo's string fields hold 255 characters)."""
    null, string = (long_bytes(branches.index(t)) for t in ("null", "string"))
    return [null, *(string + long_bytes(n) for n in range(1, _LONGEST_CELL + 1))]


_LONGEST_CELL = 1023  # bytes


def _field(field: dict[str, Any], column: dict[str, int], scope: dict[str, Any]) -> str:
    """The expression of the generated join that encodes `field` (see `_compile`)."""
    name, kind = field["name"], field["type"]
    if name in _HEAD and kind == _HEAD[name][0]:
        return _HEAD[name][1]
    if (
        name in FIELDS
        and isinstance(kind, list)
        and len(kind) == 2
        and "null" in kind
        and "string" in kind
    ):
        prefixes = f"_p{len(scope)}"
        scope[prefixes], at = _optional_strings(tuple(kind)), column[FIELDS[name]]
        return f"{prefixes}[len(row[{at}])], row[{at}]"
    raise _Unsupported(name)


# The fields a row does not hold as they are: the type the schema must give them, and
# their part of the body (locals of the generated function). `changed_at` is in ms.
_HEAD: dict[str, tuple[Any, str]] = {
    "event_id": ({"logicalType": "uuid", "type": "string"}, "_UUID_LENGTH, event_id"),
    "marketo_id": ("long", "_long(marketo_id)"),
    "changed_at": ({"logicalType": "timestamp-millis", "type": "long"}, "_long(seconds * 1000)"),
    "deleted": ("boolean", "_FALSE"),
}


def _compile(header: Sequence[str], framing: bytes, reference: RowEncoder) -> RowEncoder:
    """One function per header, e.g. (the API_FIELDS order):

    def encode(row):
        if not (row[13] or row[14]):
            return None
        identity = _identity(row[0], row[15])
        if identity is None:
            return _reference(row)
        key, marketo_id, seconds, event_id = identity
        try:
            return key, b"".join((_FRAMING, _UUID_LENGTH, event_id, _long(marketo_id),
                                  _long(seconds * 1000), _FALSE,
                                  _p6[len(row[1])], row[1], ...))
        except IndexError:  # a long cell, or a short row: the reference decides
            return _reference(row)
    """
    column = {name: i for i, name in enumerate(header)}  # as row_reader: the last wins
    schema = schemas.parsed(RECORD)
    if {f["name"] for f in schema["fields"]} != {*_HEAD, *FIELDS}:
        raise _Unsupported("fields")  # the reference reads FIELDS, the schema writes
    scope: dict[str, Any] = {
        "_identity": _identity,
        "_reference": reference,
        "_FRAMING": framing,
        "_UUID_LENGTH": long_bytes(36),
        "_long": long_bytes,
        "_FALSE": b"\x00",
    }
    parts = ", ".join(_field(f, column, scope) for f in schema["fields"])
    owned = " or ".join(f"row[{column[api]}]" for api in OWNER_API_FIELDS)
    source = "\n".join(
        [
            "def encode(row):",
            f"    if not ({owned}):",
            "        return None",
            f"    identity = _identity(row[{column['id']}], row[{column['updatedAt']}])",
            "    if identity is None:",
            "        return _reference(row)",
            "    key, marketo_id, seconds, event_id = identity",
            "    try:",
            f"        return key, b''.join((_FRAMING, {parts}))",
            "    except IndexError:  # a long cell, or a short row: the reference decides",
            "        return _reference(row)",
        ]
    )
    exec(source, scope)  # only column positions and field names enter it
    return scope["encode"]  # type: ignore[no-any-return]
