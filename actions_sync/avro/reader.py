"""The compiled Avro reader (see `actions_sync.avro`)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

__all__ = ["Reader", "compile_reader"]

Reader = Callable[[bytes, int], tuple[Any, int]]  # (data, position) -> (value, position)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_new_uuid, _set = object.__new__, object.__setattr__


class _Unsupported(Exception):
    """A schema construct this module leaves to fastavro."""


MAX_VARINT_BYTES = 10  # a zig-zag long: 64 bits in 7-bit groups (the Avro spec's bound)


def _long(data: bytes, pos: int) -> tuple[int, int]:
    """Avro int/long: zig-zag varint, at most 10 bytes and 64 bits.

    Why the bound: without it a run of 0x80-0xff bytes is read as one ever-growing
    integer, each byte costing a shift of all the bits before it — a 2 MB value of 0xff
    took ~3 minutes of CPU (issue 10). fastavro stops at no length either but wraps to
    64 bits; this reader raises instead, as for an out-of-range index.
    """
    b = data[pos]
    if b < 0x80:
        return (b >> 1) ^ -(b & 1), pos + 1
    start, n, shift = pos, b & 0x7F, 7
    while True:
        pos += 1
        b = data[pos]
        n |= (b & 0x7F) << shift
        if b < 0x80:
            if n >> 64:
                raise ValueError(f"varint at byte {start} is out of range for an Avro long")
            return (n >> 1) ^ -(n & 1), pos + 1
        shift += 7
        if shift >= 7 * MAX_VARINT_BYTES:
            raise ValueError(
                f"varint at byte {start} runs past {MAX_VARINT_BYTES} bytes,"
                " out of range for an Avro long"
            )


def _bytes(data: bytes, pos: int) -> tuple[bytes, int]:
    b = data[pos]
    if b < 0x80 and not b & 1:  # a short, non-negative length in one byte
        size, pos = b >> 1, pos + 1
    else:
        size, pos = _long(data, pos)
    end = pos + size
    if size < 0 or end > len(data):
        raise ValueError(f"length {size} at byte {pos} runs past the record")
    return data[pos:end], end


def _string(data: bytes, pos: int) -> tuple[str, int]:
    b = data[pos]
    if b < 0x80 and not b & 1:  # inlined short case of _bytes: most strings
        end = pos + 1 + (b >> 1)
        if end > len(data):
            raise ValueError(f"length {b >> 1} at byte {pos} runs past the record")
        return data[pos + 1 : end].decode(), end
    raw, pos = _bytes(data, pos)
    return raw.decode(), pos


def _optional_string(data: bytes, pos: int) -> tuple[str | None, int]:
    """["null", "string"], the commonest field, with _string inlined."""
    index = data[pos]
    if index == 0:
        return None, pos + 1
    if index != 2:  # zig-zag 1
        raise ValueError(f"union index byte {index} out of range")
    b = data[pos + 1]
    if b < 0x80 and not b & 1:
        end = pos + 2 + (b >> 1)
        if end > len(data):
            raise ValueError(f"length {b >> 1} at byte {pos + 1} runs past the record")
        return data[pos + 2 : end].decode(), end
    return _string(data, pos + 1)


def _boolean(data: bytes, pos: int) -> tuple[bool, int]:
    return data[pos] != 0, pos + 1  # as fastavro: any byte but 0 is true


def _null(data: bytes, pos: int) -> tuple[None, int]:
    return None, pos


def _uuid(data: bytes, pos: int) -> tuple[uuid.UUID, int]:
    text, pos = _string(data, pos)
    # The canonical 8-4-4-4-12 form, as every producer writes it: made as `uuid.UUID`
    # makes it, without its parsing of braces and prefixes (1.4 -> 0.5 us, a twentieth of
    # the people helper's decode); any other form is left to `uuid.UUID`, which also
    # raises for what is no UUID.
    if len(text) == 36 and text[8] == text[13] == text[18] == text[23] == "-":
        value = int(text.replace("-", ""), 16)
        made = _new_uuid(uuid.UUID)
        _set(made, "int", value)
        _set(made, "is_safe", uuid.SafeUUID.unknown)
        return made, pos
    return uuid.UUID(text), pos


def _timestamp_millis(data: bytes, pos: int) -> tuple[datetime, int]:
    millis, pos = _long(data, pos)
    return _EPOCH + timedelta(microseconds=millis * 1000), pos  # exact, as fastavro


def _date(data: bytes, pos: int) -> tuple[date, int]:
    days, pos = _long(data, pos)
    return date.fromordinal(days + _EPOCH_ORDINAL), pos


_PRIMITIVES: dict[str, Reader] = {
    "null": _null,
    "boolean": _boolean,
    "int": _long,
    "long": _long,
    "string": _string,
}
_LOGICAL: dict[tuple[str, str], Reader] = {
    ("string", "uuid"): _uuid,
    ("long", "timestamp-millis"): _timestamp_millis,
    ("int", "date"): _date,
}


def _enum(symbols: list[str]) -> Reader:
    def read(data: bytes, pos: int) -> tuple[str, int]:
        index, pos = _long(data, pos)
        if not 0 <= index < len(symbols):
            raise ValueError(f"enum index {index} out of range")
        return symbols[index], pos

    return read


def _union(branches: list[Reader]) -> Reader:
    if branches == [_null, _string]:
        return _optional_string
    if len(branches) == 2 and branches[0] is _null:  # ["null", X]: an optional field
        value = branches[1]

        def optional(data: bytes, pos: int) -> tuple[Any, int]:
            index = data[pos]
            if index == 0:
                return None, pos + 1
            if index == 2:  # zig-zag 1
                return value(data, pos + 1)
            raise ValueError(f"union index byte {index} out of range")

        return optional

    def read(data: bytes, pos: int) -> tuple[Any, int]:
        index, pos = _long(data, pos)
        if not 0 <= index < len(branches):
            raise ValueError(f"union index {index} out of range")
        return branches[index](data, pos)

    return read


# The record reader is generated as one straight-line function, with the commonest
# fields (optional strings, longs, booleans) inlined: a call per field costs ~0.15 us,
# and a PersonChange has 18 fields (~3 us of ~10). Only field names (Avro names, quoted
# with repr) and helper names enter the generated source.
_INLINE: dict[Reader, list[str]] = {
    _optional_string: [
        "    b = data[pos]",
        "    if b == 0:",
        "        record[{key}] = None",
        "        pos += 1",
        "    elif b == 2 and data[pos + 1] < 0x80 and not data[pos + 1] & 1:",
        "        end = pos + 2 + (data[pos + 1] >> 1)",
        "        if end > len(data):",
        "            raise ValueError('a string runs past the record')",
        "        record[{key}] = data[pos + 2:end].decode()",
        "        pos = end",
        "    else:",
        "        record[{key}], pos = _optional_string(data, pos)",
    ],
    _long: [
        "    b = data[pos]",
        "    if b < 0x80:",
        "        record[{key}] = (b >> 1) ^ -(b & 1)",
        "        pos += 1",
        "    else:",
        "        record[{key}], pos = _long(data, pos)",
    ],
    _boolean: [
        "    record[{key}] = data[pos] != 0",
        "    pos += 1",
    ],
}


def _record(fields: list[tuple[str, Reader]]) -> Reader:
    lines = ["def read(data, pos):", "    record = {}"]
    helpers: dict[str, Any] = {"_optional_string": _optional_string, "_long": _long}
    for i, (name, field_reader) in enumerate(fields):
        inline = _INLINE.get(field_reader)
        if inline is None:
            helpers[f"_field{i}"] = field_reader
            lines.append(f"    record[{name!r}], pos = _field{i}(data, pos)")
        else:
            lines += [line.replace("{key}", repr(name)) for line in inline]
    lines.append("    return record, pos")
    exec("\n".join(lines), helpers)  # see above
    return helpers["read"]  # type: ignore[no-any-return]


def _compile(schema: Any) -> Reader:
    if isinstance(schema, str):
        if schema in _PRIMITIVES:
            return _PRIMITIVES[schema]
        raise _Unsupported(schema)  # float, double, bytes or a named reference
    if isinstance(schema, list):
        return _union([_compile(branch) for branch in schema])
    kind = schema.get("type")
    logical = schema.get("logicalType")
    if logical is not None:
        if (kind, logical) in _LOGICAL:
            return _LOGICAL[(kind, logical)]
        raise _Unsupported(f"{kind}/{logical}")
    if kind == "enum":
        return _enum(list(schema["symbols"]))
    if kind == "record":
        return _record([(f["name"], _compile(f["type"])) for f in schema["fields"]])
    if isinstance(kind, str) and kind in _PRIMITIVES and set(schema) <= {"type"}:
        return _PRIMITIVES[kind]
    raise _Unsupported(str(kind))


def compile_reader(schema: Any) -> Reader | None:
    """A reader for records of the (fastavro-parsed) `schema`, or None if out of scope."""
    if not isinstance(schema, dict) or schema.get("type") != "record":
        return None
    try:
        return _compile(schema)
    except _Unsupported:
        return None
