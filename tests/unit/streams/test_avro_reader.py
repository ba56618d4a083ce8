"""The compiled Avro reader reads exactly what the project's Deserializer (fastavro) reads."""

from __future__ import annotations

import io
import json
import string
from datetime import UTC, date, datetime, timedelta
from typing import Any

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import schemas
from actions_sync.errors import UndecodableRecord
from actions_sync.serialization import Deserializer, frame
from streams.avro_reader import FastDeserializer, compile_reader
from tests.factories import person_change

COMPILED = ("PersonChange", "ReminderTask", "SalesActivity", "SendCheck", "SendDecision",
            "Unsubscribe")


class FakeRegistry:
    """Schema ids 1.. for the given parsed writer schemas."""

    def __init__(self, *writers: Any) -> None:
        self._by_id = dict(enumerate(writers, start=1))

    def schema(self, schema_id: int) -> Any:
        if schema_id not in self._by_id:
            raise UndecodableRecord(f"schema registry: no schema {schema_id}")
        return self._by_id[schema_id]


def encode(record: str, value: dict[str, Any], schema_id: int = 1) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, schemas.parsed(record), value)
    return frame(schema_id, out.getvalue())


def readers(record: str, *writers: Any) -> tuple[FastDeserializer, Deserializer]:
    registry: Any = FakeRegistry(*(writers or (schemas.parsed(record),)))
    return FastDeserializer(registry, record), Deserializer(registry, record)


def values_of(schema: Any) -> st.SearchStrategy[Any]:
    """Values of a (parsed) schema in the compiled reader's scope."""
    if isinstance(schema, list):
        return st.one_of([values_of(branch) for branch in schema])
    if isinstance(schema, str):
        return {
            "null": st.none(), "boolean": st.booleans(),
            "int": st.integers(-(2**31), 2**31 - 1), "long": st.integers(-(2**63), 2**63 - 1),
            "string": st.text(string.printable + "éü€😀", max_size=300),
        }[schema]
    logical = schema.get("logicalType")
    if logical == "uuid":
        return st.uuids().map(str)
    if logical == "timestamp-millis":
        return st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                            timezones=st.just(UTC)).map(
            lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000))
    if logical == "date":
        return st.dates()
    if schema["type"] == "enum":
        return st.sampled_from(schema["symbols"])
    return st.fixed_dictionaries({f["name"]: values_of(f["type"]) for f in schema["fields"]})


@pytest.mark.parametrize("record", schemas.RECORDS)
def test_records_of_primitives_compile_and_the_rest_is_left_to_fastavro(record):
    assert (compile_reader(schemas.parsed(record)) is not None) == (record in COMPILED)


@pytest.mark.parametrize("record", COMPILED)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_a_generated_record_reads_the_same_as_with_fastavro(record, data):
    value = data.draw(values_of(schemas.parsed(record)))
    fast, reference = readers(record)
    wire = encode(record, value)
    assert fast(wire) == reference(wire)


@settings(max_examples=400, deadline=None)
@given(body=st.binary(max_size=400), keep=st.integers(0, 400))
def test_corrupt_bytes_are_undecodable_or_read_as_fastavro_reads_them(body, keep):
    valid = encode("PersonChange", person_change(7, 3))[5:]
    wire = frame(1, valid[:keep] + body)  # a valid prefix, then anything
    fast, reference = readers("PersonChange")
    try:
        expected = reference(wire)
    except UndecodableRecord:
        with pytest.raises(UndecodableRecord):
            fast(wire)
        return
    try:
        assert fast(wire) == expected
    except UndecodableRecord as exc:  # stricter only on an index fastavro wraps around
        assert "out of range" in str(exc)


def test_logical_types_come_out_as_python_objects():
    fast, _ = readers("PersonChange")
    change = person_change(5, 0, changed_at=datetime(2026, 3, 1, 12, 0, 0, 123000, tzinfo=UTC))
    got = fast(encode("PersonChange", change))
    assert str(got["event_id"]) == change["event_id"]
    assert got["changed_at"] == change["changed_at"] and got["changed_at"].tzinfo is not None
    due = date(2026, 4, 1)
    task = {"task_id": "t", "marketo_id": 1, "subject": "s", "status": "OPEN",
            "priority": "HIGH", "due_date": due, "details": None, "deleted": False,
            "changed_at": datetime(2026, 3, 1, tzinfo=UTC) + timedelta(milliseconds=1)}
    fast_task, _ = readers("ReminderTask")
    assert fast_task(encode("ReminderTask", task)) == task


@pytest.mark.parametrize("wire", [None, b"", b"\x00\x00\x00", b"\x01\x00\x00\x00\x01abc"])
def test_bytes_that_are_not_confluent_framing_are_undecodable(wire):
    fast, _ = readers("PersonChange")
    with pytest.raises(UndecodableRecord, match="magic byte"):
        fast(wire)


def test_an_unknown_schema_id_is_undecodable():
    fast, _ = readers("PersonChange")
    with pytest.raises(UndecodableRecord, match="no schema 9"):
        fast(encode("PersonChange", person_change(), schema_id=9))


def test_bytes_left_after_the_record_are_undecodable():
    fast, _ = readers("PersonChange")
    with pytest.raises(UndecodableRecord, match="1 bytes left"):
        fast(encode("PersonChange", person_change()) + b"\x00")


def test_another_writer_schema_is_resolved_by_fastavro():
    older = json.loads(schemas.schema_text("PersonChange"))
    older["fields"] = [f for f in older["fields"] if f["name"] != "sfdc_opportunity_id"]
    writer = fastavro.parse_schema(older)
    change = person_change(3, 1)
    body = io.BytesIO()
    fastavro.schemaless_writer(body, writer, change)
    fast, reference = readers("PersonChange", writer)
    wire = frame(1, body.getvalue())
    assert fast(wire) == reference(wire)
    assert fast(wire)["sfdc_opportunity_id"] is None  # the reader's default
