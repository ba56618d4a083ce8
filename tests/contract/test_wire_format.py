"""The project's wire format against confluent-kafka's own serializers, via the registry
sandbox over real HTTP: each side decodes what the other encodes."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import fastavro
import httpx
import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

import schemas
from actions_sync.errors import Retriable, UndecodableRecord
from actions_sync.serialization import Deserializer, RegistryClient, Serializer, frame
from actions_sync.topics import PERSON_CHANGES
from sandboxes.base import free_port
from tests.factories import person_change

CTX = SerializationContext(PERSON_CHANGES, MessageField.VALUE)


@pytest.fixture
def client(registry: str) -> Iterator[RegistryClient]:
    client = RegistryClient(registry)
    yield client
    client.close()


@pytest.fixture
def confluent(registry: str) -> Iterator[SchemaRegistryClient]:
    with SchemaRegistryClient({"url": registry}) as client:
        yield client


def test_confluent_serializer_output_decodes_here(
    confluent: SchemaRegistryClient, client: RegistryClient
) -> None:
    serializer = AvroSerializer(confluent, schemas.schema_text("PersonChange"))
    change = person_change(42)
    data = serializer(change, CTX)
    decoded = Deserializer(client, "PersonChange")(data)
    assert decoded["marketo_id"] == 42
    assert decoded["changed_at"] == change["changed_at"]
    assert str(decoded["event_id"]) == change["event_id"]


def test_project_serializer_output_decodes_with_confluent(
    confluent: SchemaRegistryClient, client: RegistryClient
) -> None:
    data = Serializer(client, PERSON_CHANGES, "PersonChange")(person_change(7, title="VP"))
    decoded = AvroDeserializer(confluent)(data, CTX)
    assert data[0] == 0
    assert (decoded["marketo_id"], decoded["title"]) == (7, "VP")


def test_same_schema_registers_once(client: RegistryClient) -> None:
    first = Serializer(client, PERSON_CHANGES, "PersonChange").schema_id
    again = Serializer(client, PERSON_CHANGES, "PersonChange").schema_id
    assert first == again


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b'{"json": true}', "magic byte"),
        (None, "magic byte"),
        (frame(987_654, b"\x02"), "schema registry"),
    ],
)
def test_undecodable_bytes_are_named(
    client: RegistryClient, data: bytes | None, reason: str
) -> None:
    with pytest.raises(UndecodableRecord, match=reason):
        Deserializer(client, "PersonChange")(data)


def test_truncated_or_padded_bodies_are_undecodable(client: RegistryClient) -> None:
    good = Serializer(client, PERSON_CHANGES, "PersonChange")(person_change(1))
    decode = Deserializer(client, "PersonChange")
    with pytest.raises(UndecodableRecord, match="does not match"):
        decode(good[:-8])
    with pytest.raises(UndecodableRecord, match="left after"):
        decode(good + b"\x00\x00")


def test_older_writer_schema_is_resolved_to_the_reader(client: RegistryClient) -> None:
    old = {
        "type": "record",
        "name": "PersonChange",
        "namespace": "actions_sync",
        "fields": [f for f in schemas.load("PersonChange")["fields"] if f["name"] != "title"],
    }
    schema_id = client.register(f"{PERSON_CHANGES}-value", json.dumps(old))
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(old), person_change(3))
    decoded = Deserializer(client, "PersonChange")(frame(schema_id, buf.getvalue()))
    assert decoded["marketo_id"] == 3 and decoded["title"] is None


def test_unreachable_registry_is_retriable_not_a_bad_record() -> None:
    client = RegistryClient(f"http://127.0.0.1:{free_port()}", timeout_s=1)
    try:
        with pytest.raises(Retriable):
            Deserializer(client, "PersonChange")(frame(1, b"\x00"))
    finally:
        client.close()


def test_registry_transport_is_injectable() -> None:
    transport = httpx.MockTransport(lambda r: httpx.Response(200, json={"id": 5}))
    client = RegistryClient("http://registry.invalid", transport=transport)
    try:
        assert client.register("t-value", '"string"') == 5
    finally:
        client.close()
