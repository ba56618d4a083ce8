"""Avro schema resolution (schemas.compatibility) and the evolution guard on schemas/*.avsc."""

from __future__ import annotations

import copy
import io
import json
from typing import Any

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import schemas
from schemas.compatibility import (
    AvroSchema,
    Level,
    backward_incompatibilities,
    check_backward,
    check_compatibility,
    is_backward_compatible,
)

PRIMITIVES = ["null", "boolean", "int", "long", "float", "double", "bytes", "string"]
# writer type -> the reader types it may be read as (Avro spec, "Schema Resolution")
PROMOTIONS = {
    "int": {"long", "float", "double"},
    "long": {"float", "double"},
    "float": {"double"},
    "string": {"bytes"},
    "bytes": {"string"},
}


def record(name: str, *fields: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "record", "name": name, "fields": list(fields), **extra}


def field(name: str, type_: AvroSchema, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": type_, **extra}


def enum(name: str, *symbols: str, **extra: Any) -> dict[str, Any]:
    return {"type": "enum", "name": name, "symbols": list(symbols), **extra}


ADDRESS = record("Address", field("street", "string"), namespace="geo")
ADDRESS_WITH_ZIP = record(
    "Address", field("street", "string"), field("zip", "string"), namespace="geo"
)
ADDRESS_WITH_OPTIONAL_ZIP = record(
    "Address",
    field("street", "string"),
    field("zip", ["null", "string"], default=None),
    namespace="geo",
)

# (reader, writer, compatible): can `reader` read what `writer` wrote?
CASES: dict[str, tuple[AvroSchema, AvroSchema, bool]] = {
    "same primitive": ("string", "string", True),
    "int promoted to long": ("long", "int", True),
    "int promoted to double": ("double", "int", True),
    "long promoted to float": ("float", "long", True),
    "string read as bytes": ("bytes", "string", True),
    "bytes read as string": ("string", "bytes", True),
    "long narrowed to int": ("int", "long", False),
    "double narrowed to float": ("float", "double", False),
    "string read as int": ("int", "string", False),
    "logical type resolves as its base type": (
        {"type": "long", "logicalType": "timestamp-millis"},
        "int",
        True,
    ),
    "field added with default": (
        record("R", field("a", "int"), field("b", ["null", "string"], default=None)),
        record("R", field("a", "int")),
        True,
    ),
    "field added without default": (
        record("R", field("a", "int"), field("b", "string")),
        record("R", field("a", "int")),
        False,
    ),
    "field removed": (
        record("R", field("a", "int")),
        record("R", field("a", "int"), field("b", "int")),
        True,
    ),
    "field renamed with an alias": (
        record("R", field("b", "int", aliases=["a"])),
        record("R", field("a", "int")),
        True,
    ),
    "field type promoted": (record("R", field("a", "long")), record("R", field("a", "int")), True),
    "field type narrowed": (record("R", field("a", "int")), record("R", field("a", "long")), False),
    "record renamed": (record("S", field("a", "int")), record("R", field("a", "int")), False),
    "record renamed with an alias": (
        record("S", field("a", "int"), aliases=["R"]),
        record("R", field("a", "int")),
        True,
    ),
    "record moved to another namespace": (
        record("R", field("a", "int"), namespace="x"),
        record("R", field("a", "int"), namespace="y"),
        True,
    ),
    "enum symbol added": (enum("E", "A", "B", "C"), enum("E", "A", "B"), True),
    "enum symbol removed": (enum("E", "A"), enum("E", "A", "B"), False),
    "enum symbol removed, reader has a default": (
        enum("E", "A", default="A"),
        enum("E", "A", "B"),
        True,
    ),
    "fixed of the same size": (
        {"type": "fixed", "name": "F", "size": 4},
        {"type": "fixed", "name": "F", "size": 4},
        True,
    ),
    "fixed resized": (
        {"type": "fixed", "name": "F", "size": 8},
        {"type": "fixed", "name": "F", "size": 4},
        False,
    ),
    "array items promoted": (
        {"type": "array", "items": "long"},
        {"type": "array", "items": "int"},
        True,
    ),
    "map values narrowed": (
        {"type": "map", "values": "int"},
        {"type": "map", "values": "long"},
        False,
    ),
    "union widened": (["null", "string", "int"], ["null", "string"], True),
    "union narrowed": (["null", "string"], ["null", "string", "int"], False),
    "optional made required": ("string", ["null", "string"], False),
    "required made optional": (["null", "string"], "string", True),
    "writer branch promoted into reader union": (["null", "double"], ["null", "int"], True),
    "nested record gains an optional field": (
        record("P", field("home", ADDRESS_WITH_OPTIONAL_ZIP)),
        record("P", field("home", ADDRESS)),
        True,
    ),
    "nested record gains a required field": (
        record("P", field("home", ADDRESS_WITH_ZIP)),
        record("P", field("home", ADDRESS)),
        False,
    ),
    "named reference after the first definition": (
        record("P", field("home", ADDRESS), field("work", "Address"), namespace="geo"),
        record("P", field("home", ADDRESS), field("work", "geo.Address"), namespace="other"),
        True,
    ),
    "recursive record": (
        record("Node", field("value", "long"), field("next", ["null", "Node"])),
        record("Node", field("value", "int"), field("next", ["null", "Node"])),
        True,
    ),
}


@pytest.mark.parametrize(("reader", "writer", "compatible"), CASES.values(), ids=CASES.keys())
def test_schema_resolution_rules(reader: AvroSchema, writer: AvroSchema, compatible: bool) -> None:
    reasons = backward_incompatibilities(reader, writer)

    assert (reasons == []) is compatible, reasons
    assert is_backward_compatible(reader, writer) is compatible


@pytest.mark.parametrize("writer", PRIMITIVES)
@pytest.mark.parametrize("reader", PRIMITIVES)
def test_primitives_resolve_only_to_themselves_or_by_promotion(reader: str, writer: str) -> None:
    expected = reader == writer or reader in PROMOTIONS.get(writer, ())

    assert is_backward_compatible(reader, writer) is expected


def test_reasons_name_the_kind_the_field_and_where_it_is() -> None:
    # Avro's checker resolves each pair of named types once: the second reference to
    # Address ("work") is the same finding, not a second one
    reasons = backward_incompatibilities(
        record("P", field("home", ADDRESS_WITH_ZIP), field("work", "Address"), namespace="geo"),
        record("P", field("home", ADDRESS), field("work", "Address"), namespace="geo"),
    )

    assert reasons == ["READER_FIELD_MISSING_DEFAULT_VALUE: zip at /fields/0/type/fields/1"]


def test_reasons_point_into_arrays_maps_and_unions() -> None:
    reader = record("R", field("xs", {"type": "array", "items": {"type": "map", "values": "int"}}))
    writer = record("R", field("xs", {"type": "array", "items": {"type": "map", "values": "long"}}))

    assert backward_incompatibilities(reader, writer) == [
        "TYPE_MISMATCH: reader type: int not compatible with writer type: long"
        " at /fields/0/type/items/values"
    ]
    assert backward_incompatibilities(["null", "int"], ["null", "string"]) == [
        "MISSING_UNION_BRANCH: reader union lacking writer type: STRING at /1"
    ]


def test_schema_json_text_is_accepted() -> None:
    text = schemas.schema_text("PersonChange")

    assert backward_incompatibilities(text, schemas.load("PersonChange")) == []
    assert is_backward_compatible('"long"', '"int"')


def test_unknown_type_name_is_an_error() -> None:
    with pytest.raises(ValueError, match="Nowhere"):
        backward_incompatibilities(
            record("R", field("a", "Nowhere")), record("R", field("a", "int"))
        )


def test_check_backward_reads_the_latest_previous_version_only() -> None:
    v1 = record("R", field("a", "int"))
    v2 = record("R", field("a", "int"), field("b", "int", default=0))
    v3 = record("R", field("b", "int"))  # reads v2 data; v1 data has no b

    assert check_backward(v3, [v1, v2]) == []
    assert check_backward(v3, []) == []
    assert check_backward(v1 | {"fields": [field("c", "int")]}, [v1]) != []


@pytest.mark.parametrize(
    ("level", "compatible"),
    [
        ("NONE", True),
        ("BACKWARD", True),
        ("BACKWARD_TRANSITIVE", False),
        ("FORWARD", True),
        ("FORWARD_TRANSITIVE", True),
        ("FULL", True),
        ("FULL_TRANSITIVE", False),
    ],
)
def test_compatibility_levels(level: Level, compatible: bool) -> None:
    v1 = record("R", field("a", "int"))
    v2 = record("R", field("a", "int"), field("b", "int", default=0))
    v3 = record("R", field("a", "int"), field("b", "int"))  # reads v2 data, not v1 data

    assert (check_compatibility(level, v3, [v1, v2]) == []) is compatible


def test_forward_reasons_say_old_readers_break() -> None:
    old = record("R", field("a", "int"))

    assert check_compatibility("FORWARD", record("R", field("b", "int")), [old]) == [
        "forward: READER_FIELD_MISSING_DEFAULT_VALUE: a at /fields/0"
    ]


# -- the evolution guard: every record of schemas/ ------------------------------------


@pytest.mark.parametrize("name", schemas.RECORDS)
def test_record_schema_parses(name: str) -> None:
    fastavro.parse_schema(schemas.load(name))


@pytest.mark.parametrize("name", schemas.RECORDS)
def test_record_schema_is_backward_compatible_with_its_release(name: str) -> None:
    previous = schemas.previous(name)

    assert check_backward(schemas.load(name), [previous] if previous else []) == []


def test_a_new_required_field_in_person_change_is_reported() -> None:
    edited = copy.deepcopy(schemas.load("PersonChange"))
    edited["fields"].append(field("nickname", "string"))

    reasons = check_backward(edited, [schemas.load("PersonChange")])

    assert reasons == [
        f"READER_FIELD_MISSING_DEFAULT_VALUE: nickname at /fields/{len(edited['fields']) - 1}"
    ]


# -- generated schemas -----------------------------------------------------------------


def _union_key(branch: Any) -> str:
    """Union branches must differ: by type for unnamed ones, by definition for named ones."""
    if isinstance(branch, str):
        return branch
    named = branch["type"] in ("record", "enum", "fixed")
    return json.dumps(branch, sort_keys=True) if named else str(branch["type"])


def _name_types(schema: Any) -> Any:
    """Give generated named types unique names; an identical repeat becomes a reference."""
    names: dict[str, str] = {}

    def walk(node: Any) -> Any:
        if isinstance(node, list):
            return [walk(b) for b in node]
        if not isinstance(node, dict):
            return node
        if node["type"] in ("array", "map"):
            key = "items" if node["type"] == "array" else "values"
            return {**node, key: walk(node[key])}
        shape = json.dumps(node, sort_keys=True)
        if node["name"] != "?":
            out = dict(node)
        elif shape in names:
            return names[shape]
        else:
            names[shape] = name = f"T{len(names)}"
            out = {**node, "name": name}
        if node["type"] == "record":
            out["fields"] = [{**f, "type": walk(f["type"])} for f in node["fields"]]
        return out

    return walk(schema)


_leaves = st.one_of(
    st.sampled_from(PRIMITIVES),
    st.lists(st.sampled_from("ABCD"), min_size=1, unique=True).map(lambda s: enum("?", *s)),
    st.integers(1, 4).map(lambda n: {"type": "fixed", "name": "?", "size": n}),
)


def _compound(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        children.map(lambda t: {"type": "array", "items": t}),
        children.map(lambda t: {"type": "map", "values": t}),
        st.lists(children, min_size=1, max_size=3).map(
            lambda ts: record("?", *(field(f"f{i}", t) for i, t in enumerate(ts)))
        ),
        st.lists(
            children.filter(lambda t: not isinstance(t, list)),
            min_size=1,
            max_size=3,
            unique_by=_union_key,
        ),
    )


raw_types = st.recursive(_leaves, _compound, max_leaves=8)
avro_types = raw_types.map(_name_types)


@given(avro_types)
def test_any_schema_is_compatible_with_itself(schema: Any) -> None:
    fastavro.parse_schema(schema, named_schemas={})

    assert backward_incompatibilities(schema, schema) == []


@given(raw_types, raw_types)
def test_writer_only_fields_are_ignored_and_new_reader_fields_need_a_default(
    kept: Any, added: Any
) -> None:
    writer = _name_types(record("Outer", field("kept", kept)))
    reader = _name_types(record("Outer", field("kept", kept), field("added", added)))

    assert backward_incompatibilities(writer, reader) == []
    assert backward_incompatibilities(reader, writer) == [
        "READER_FIELD_MISSING_DEFAULT_VALUE: added at /fields/1"
    ]


# a fixed alphabet (with multi-byte UTF-8) spares hypothesis building its Unicode tables
_text = st.text("abz é€😀\x00")

# Flat records whose fields come from a small pool, checked against fastavro itself:
# whatever the checker accepts, fastavro must be able to resolve.
FIELD_TYPES: dict[str, tuple[AvroSchema, Any, st.SearchStrategy[Any]]] = {
    "int": ("int", 0, st.integers(-(2**31), 2**31 - 1)),
    "long": ("long", 0, st.integers(-(2**63), 2**63 - 1)),
    "float": ("float", 0.0, st.floats(width=32, allow_nan=False)),
    "double": ("double", 0.0, st.floats(allow_nan=False)),
    "string": ("string", "", _text),
    "bytes": ("bytes", "", _text.map(str.encode)),  # bytes -> string needs UTF-8
    "boolean": ("boolean", False, st.booleans()),
    "optional string": (["null", "string"], None, st.none() | _text),
    "optional long": (["null", "long"], None, st.none() | st.integers(-(2**63), 2**63 - 1)),
    "int or string": (["int", "string"], 0, st.integers(-(2**31), 2**31 - 1) | _text),
}

flat_records = st.lists(
    st.tuples(st.sampled_from("abcd"), st.sampled_from(sorted(FIELD_TYPES)), st.booleans()),
    max_size=4,
    unique_by=lambda t: t[0],
)


def _flat(spec: list[tuple[str, str, bool]]) -> dict[str, Any]:
    def one(name: str, kind: str, defaulted: bool) -> dict[str, Any]:
        type_, default, _ = FIELD_TYPES[kind]
        return field(name, type_, default=default) if defaulted else field(name, type_)

    return record("Flat", *(one(*f) for f in spec))


@settings(max_examples=200)
@given(flat_records, flat_records, st.data())
def test_fastavro_resolves_whatever_the_checker_accepts(
    writer_spec: list[tuple[str, str, bool]],
    reader_spec: list[tuple[str, str, bool]],
    data: st.DataObject,
) -> None:
    writer, reader = _flat(writer_spec), _flat(reader_spec)
    datum = {name: data.draw(FIELD_TYPES[kind][2]) for name, kind, _ in writer_spec}
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, fastavro.parse_schema(writer, named_schemas={}), datum)
    buffer.seek(0)

    if is_backward_compatible(reader, writer):
        read = fastavro.schemaless_reader(
            buffer, writer, fastavro.parse_schema(reader, named_schemas={})
        )
        assert isinstance(read, dict) and set(read) == {name for name, _, _ in reader_spec}
