"""The compiled Avro writer (see `actions_sync.avro`)."""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping
from datetime import date, datetime, timedelta
from typing import Any, NoReturn

from fastavro.write import LOGICAL_WRITERS

from actions_sync.avro.reader import _EPOCH, _EPOCH_ORDINAL, _Unsupported

__all__ = ["Writer", "compile_writer", "long_bytes"]

# The writer. The generated function appends a record's body to `out`, field by field:
#     try:
#         v = record['marketo_id']
#     except KeyError:
#         v = _missing('marketo_id')     # no default, not nullable: fastavro's ValueError
#     if type(v) is not int:
#         v = _integer(v, 'marketo_id')  # other Integrals; TypeError for the rest
#     n = (v << 1) ^ (v >> 63)           # zig-zag: >= 2**64 exactly when out of range
#     if n < 0x80:
#         out.append(n)
#     else:
#         ...                            # range check, then the varint loop, inline
# The common case (exact types, strings under 64 bytes, small ints, aware datetimes) runs
# inline. Helpers take the rest, with fastavro's own preparation of logical types
# (LOGICAL_WRITERS), and raise for what fastavro's validation rejects. A timestamp costs
# most (~0.75 us: timedelta floor division ~0.17 us, a 6-byte varint ~0.35 us); a
# 14-bit lookup table would save ~0.1 us of it for ~0.6 MB, not worth it.

Writer = Callable[[Mapping[str, Any], bytearray], None]  # (record, out): appends the body

_LENGTH = [bytes((n << 1,)) for n in range(64)]  # a string length under 64
_OPTIONAL_LENGTH = [b"\x02" + length for length in _LENGTH]  # union index 1, then that
_MILLISECOND = timedelta(milliseconds=1)


def _reject(value: Any, expected: str, field: str) -> NoReturn:
    raise TypeError(f"{field}: {value!r} is not {expected}")


def _missing(field: str) -> NoReturn:
    raise ValueError(f"no value and no default for {field}")  # fastavro's words


def _out_of_range(n: int, bits: int, field: str) -> NoReturn:
    value = (n >> 1) ^ -(n & 1)
    kind = "int" if bits == 32 else "long"
    raise ValueError(f"{field}: {value} is out of range for an Avro {kind}")


def _as_dict(record: Any) -> dict[str, Any]:
    """A mapping read as fastavro reads it (`get`: never a defaultdict's factory)."""
    if not isinstance(record, Mapping):
        raise TypeError(f"{type(record).__name__} is not a record (a mapping)")
    return dict(record)


def _integer(value: Any, field: str) -> int:
    """An int, or numpy's and other Integrals; never a bool, nor a float (fastavro truncates)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        _reject(value, "an integer", field)
    return int(value)


def _text(value: Any, field: str) -> str:
    if not isinstance(value, str):
        _reject(value, "a string", field)
    return str.__str__(value)  # a str subclass's text, as fastavro encodes it


def _varint(n: int, bits: int, field: str) -> bytearray:
    """The varint of the zig-zag value `n`; ValueError past the `bits`-bit range."""
    if n >> bits:
        _out_of_range(n, bits, field)
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return out


def long_bytes(value: int, field: str = "long") -> bytes:
    """The Avro encoding of the long `value` (zig-zag, then a varint), as the writer
    writes it: for encoders that assemble a record's body from parts."""
    n = (value << 1) ^ (value >> 63)
    return _LONG_SMALL[n] if n < 0x80 else bytes(_varint(n, 64, field))


_LONG_SMALL = [bytes((n,)) for n in range(0x80)]
_prepare_uuid = LOGICAL_WRITERS["string-uuid"]
_prepare_millis = LOGICAL_WRITERS["long-timestamp-millis"]
_prepare_date = LOGICAL_WRITERS["int-date"]


def _uuid_text(value: Any, schema: Any, field: str) -> str:
    return _text(_prepare_uuid(value, schema), field)  # a uuid.UUID becomes its str


def _millis(value: Any, schema: Any, field: str) -> int:
    return _integer(_prepare_millis(value, schema), field)  # naive: local time (mktime)


def _days(value: Any, schema: Any, field: str) -> int:
    return _integer(_prepare_date(value, schema), field)  # date, datetime, ISO text, int


def _symbol_index(value: Any, symbols: list[str], field: str) -> int:
    """fastavro's `symbols.index(value)`: also for values equal to a symbol, hashed apart."""
    try:
        return symbols.index(value)
    except ValueError:
        raise ValueError(f"{field}: {value!r} is not a symbol of {symbols}") from None


_SCOPE: dict[str, Any] = {
    "_Date": date,
    "_DateTime": datetime,
    "_EPOCH": _EPOCH,
    "_EPOCH_ORDINAL": _EPOCH_ORDINAL,
    "_LENGTH": _LENGTH,
    "_MILLISECOND": _MILLISECOND,
    "_OPTIONAL_LENGTH": _OPTIONAL_LENGTH,
    "_as_dict": _as_dict,
    "_days": _days,
    "_integer": _integer,
    "_millis": _millis,
    "_missing": _missing,
    "_out_of_range": _out_of_range,
    "_reject": _reject,
    "_symbol_index": _symbol_index,
    "_text": _text,
    "_uuid_text": _uuid_text,
    "_varint": _varint,
}


class _Source:
    """The generated writer's lines and the constants they name."""

    def __init__(self) -> None:
        self.lines = [
            "def write(record, out):",
            "    if type(record) is not dict:",
            "        record = _as_dict(record)",
        ]
        self.scope = dict(_SCOPE)

    def constant(self, value: Any) -> str:
        name = f"_k{len(self.scope)}"
        self.scope[name] = value
        return name


def _indent(lines: list[str]) -> list[str]:
    return ["    " + line for line in lines]


def _varint_lines(bits: int, prefix: bytes, field: str) -> list[str]:
    """Append the int or long in `v`, after `prefix` (a union index, or nothing)."""
    lines = [f"out += {prefix!r}"] if prefix else []
    return [
        *lines,
        "n = (v << 1) ^ (v >> 63)",
        "if n < 0x80:",
        "    out.append(n)",
        "else:",
        f"    if n >> {bits}:",
        f"        _out_of_range(n, {bits}, {field!r})",
        "    while n >= 0x80:",
        "        out.append(n & 0x7F | 0x80)",
        "        n >>= 7",
        "    out.append(n)",
    ]


def _string_lines(convert: str, prefix: bytes, field: str) -> list[str]:
    """Append the string in `v` (`convert`ed first unless an exact str), after `prefix`."""
    lengths, long_prefix = (
        ("_OPTIONAL_LENGTH", [f"    out += {prefix!r}"]) if prefix else ("_LENGTH", [])
    )
    return [
        "if type(v) is not str:",
        f"    v = {convert}",
        "v = v.encode()",
        "n = len(v)",
        "if n < 64:",
        f"    out += {lengths}[n]",
        "else:",
        *long_prefix,
        f"    out += _varint(n << 1, 64, {field!r})",
        "out += v",
    ]


def _value_lines(schema: Any, source: _Source, field: str, prefix: bytes = b"") -> list[str]:
    """Lines that append `v`, a value of `schema`, to `out` after `prefix`."""
    f = repr(field)
    if isinstance(schema, list):
        if len(schema) != 2 or schema[0] != "null" or schema[1] == "null" or prefix:
            raise _Unsupported("a union other than [null, X]")
        return [
            "if v is None:",
            "    out += b'\\x00'",
            "else:",
            *_indent(_value_lines(schema[1], source, field, b"\x02")),
        ]
    kind = schema if isinstance(schema, str) else schema.get("type")
    logical = None if isinstance(schema, str) else schema.get("logicalType")
    if logical is not None:
        return _logical_lines(f"{kind}-{logical}", source.constant(schema), prefix, field)
    if kind == "enum":
        symbols = list(schema["symbols"])
        codes = [prefix + _varint(i << 1, 32, field) for i in range(len(symbols))]
        by_symbol = source.constant(dict(zip(symbols, codes, strict=True)))
        by_index = source.constant(codes)
        return [
            "try:",
            f"    out += {by_symbol}[v]",
            "except (KeyError, TypeError):",
            f"    out += {by_index}[_symbol_index(v, {source.constant(symbols)}, {f})]",
        ]
    if isinstance(schema, dict) and set(schema) - {"type"}:
        raise _Unsupported(str(schema))  # a record, a map, extra attributes...
    if kind == "null":
        return ["if v is not None:", f"    _reject(v, 'None', {f})"]
    if kind == "boolean":
        true, false = prefix + b"\x01", prefix + b"\x00"
        return [
            "if v is True:",
            f"    out += {true!r}",
            "elif v is False:",
            f"    out += {false!r}",
            "else:",
            f"    _reject(v, 'a boolean', {f})",
        ]
    if kind in ("int", "long"):
        return [
            "if type(v) is not int:",
            f"    v = _integer(v, {f})",
            *_varint_lines(32 if kind == "int" else 64, prefix, field),
        ]
    if kind == "string":
        return _string_lines(f"_text(v, {f})", prefix, field)
    raise _Unsupported(str(kind))  # float, double, bytes, or a named reference


def _logical_lines(logical: str, schema: str, prefix: bytes, field: str) -> list[str]:
    """Lines for `kind-logicalType` `logical`; `schema` names its schema for fastavro."""
    f = repr(field)
    if logical == "string-uuid":
        return _string_lines(f"_uuid_text(v, {schema}, {f})", prefix, field)
    if logical == "long-timestamp-millis":  # aware: exact and floored, as fastavro
        return [
            "if type(v) is _DateTime and v.tzinfo is not None:",
            "    v = (v - _EPOCH) // _MILLISECOND",
            "else:",
            f"    v = _millis(v, {schema}, {f})",
            *_varint_lines(64, prefix, field),
        ]
    if logical == "int-date":
        return [
            "if type(v) is _Date:",
            "    v = v.toordinal() - _EPOCH_ORDINAL",
            "else:",
            f"    v = _days(v, {schema}, {f})",
            *_varint_lines(32, prefix, field),
        ]
    raise _Unsupported(logical)


def _field_lines(field: Mapping[str, Any], source: _Source) -> list[str]:
    """fastavro's write_record: a missing field takes its default, else None if nullable."""
    name, kind = field["name"], field["type"]
    if "default" in field:
        fallback = source.constant(field["default"])
    elif kind == "null" or (isinstance(kind, list) and "null" in kind):
        fallback = "None"
    else:
        fallback = f"_missing({name!r})"
    return [
        "try:",
        f"    v = record[{name!r}]",
        "except KeyError:",
        f"    v = {fallback}",
        *_value_lines(kind, source, name),
    ]


def compile_writer(schema: Any) -> Writer | None:
    """A writer for records of the (fastavro-parsed) `schema`, or None if out of scope."""
    if not isinstance(schema, dict) or schema.get("type") != "record":
        return None
    source = _Source()
    try:
        for field in schema["fields"]:
            source.lines += _indent(_field_lines(field, source))
    except _Unsupported:
        return None
    exec("\n".join(source.lines), source.scope)  # see above
    return source.scope["write"]  # type: ignore[no-any-return]
