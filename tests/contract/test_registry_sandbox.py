"""The schema-registry sandbox over real HTTP: its REST answers, and confluent-kafka's own
client and Avro serdes against it."""

from __future__ import annotations

import copy
import datetime as dt
import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

import schemas
from sandboxes.base import SandboxServer
from sandboxes.registry import MEDIA_TYPE, create_app

SUBJECT = "marketo.person.changes-value"
PERSON_CHANGE = schemas.load("PersonChange")


def person_change_with(*fields: dict[str, Any]) -> dict[str, Any]:
    edited = copy.deepcopy(PERSON_CHANGE)
    edited["fields"] += fields
    return edited


WITH_NICKNAME = person_change_with(
    {"name": "nickname", "type": ["null", "string"], "default": None}
)
WITH_REQUIRED_NICKNAME = person_change_with({"name": "nickname", "type": "string"})


def body(schema: dict[str, Any] | str) -> dict[str, str]:
    return {"schema": schema if isinstance(schema, str) else json.dumps(schema)}


@pytest.fixture
def server() -> Iterator[SandboxServer]:
    with SandboxServer(create_app()) as running:
        yield running


@pytest.fixture
def http(server: SandboxServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        yield client


@pytest.fixture
def client(server: SandboxServer) -> Iterator[SchemaRegistryClient]:
    with SchemaRegistryClient({"url": server.url, "max.retries": 0}) as registry:
        yield registry


def register(
    http: httpx.Client, schema: dict[str, Any] | str, subject: str = SUBJECT
) -> httpx.Response:
    return http.post(f"/subjects/{subject}/versions", json=body(schema))


def error_code(response: httpx.Response) -> tuple[int, int]:
    return response.status_code, response.json()["error_code"]


# -- REST --------------------------------------------------------------------------------


def test_register_answers_id_subject_version_and_schema(http: httpx.Client) -> None:
    response = register(http, PERSON_CHANGE)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith(MEDIA_TYPE)
    assert response.json() | {"schema": None} == {
        "id": 1,
        "subject": SUBJECT,
        "version": 1,
        "schema": None,
    }
    assert json.loads(response.json()["schema"]) == PERSON_CHANGE


def test_the_same_schema_gets_the_same_id_whatever_its_whitespace(http: httpx.Client) -> None:
    first = register(http, schemas.schema_text("PersonChange")).json()
    again = register(http, json.dumps(PERSON_CHANGE, indent=4)).json()

    assert (again["id"], again["version"]) == (first["id"], first["version"])
    assert http.get(f"/subjects/{SUBJECT}/versions").json() == [1]


def test_the_same_schema_under_two_subjects_shares_one_id(http: httpx.Client) -> None:
    value = register(http, PERSON_CHANGE).json()
    other = register(http, PERSON_CHANGE, subject="marketo.person.replay-value").json()

    assert other["id"] == value["id"] and other["version"] == 1
    assert http.get("/subjects").json() == [
        "marketo.person.changes-value",
        "marketo.person.replay-value",
    ]


def test_schema_by_id_and_unknown_id(http: httpx.Client) -> None:
    schema_id = register(http, PERSON_CHANGE).json()["id"]

    found = http.get(f"/schemas/ids/{schema_id}", params={"subject": SUBJECT, "format": "x"})
    missing = http.get("/schemas/ids/999")

    assert json.loads(found.json()["schema"]) == PERSON_CHANGE
    assert error_code(missing) == (404, 40403)
    assert missing.json()["message"] == "Schema not found"


def test_compatible_evolution_becomes_version_2_and_latest(http: httpx.Client) -> None:
    register(http, PERSON_CHANGE)
    evolved = register(http, WITH_NICKNAME).json()

    latest = http.get(f"/subjects/{SUBJECT}/versions/latest").json()

    assert (evolved["id"], evolved["version"]) == (2, 2)
    assert latest | {"schema": None} == {"subject": SUBJECT, "version": 2, "id": 2, "schema": None}
    assert http.get(f"/subjects/{SUBJECT}/versions/1").json()["id"] == 1
    assert http.get(f"/subjects/{SUBJECT}/versions").json() == [1, 2]


def test_unknown_subject_version_and_bad_version_codes(http: httpx.Client) -> None:
    register(http, PERSON_CHANGE)

    assert error_code(http.get("/subjects/nobody-value/versions")) == (404, 40401)
    assert error_code(http.get("/subjects/nobody-value/versions/latest")) == (404, 40401)
    assert error_code(http.get(f"/subjects/{SUBJECT}/versions/7")) == (404, 40402)
    assert error_code(http.get(f"/subjects/{SUBJECT}/versions/first")) == (422, 42202)


def test_invalid_schema_is_422_42201(http: httpx.Client) -> None:
    not_json = register(http, "{not json")
    not_avro = register(
        http, {"type": "record", "name": "R", "fields": [{"name": "a", "type": "int32"}]}
    )

    assert error_code(not_json) == (422, 42201)
    assert error_code(not_avro) == (422, 42201)
    assert http.get("/subjects").json() == []


def test_new_required_field_is_409_and_journaled(server: SandboxServer, http: httpx.Client) -> None:
    register(http, PERSON_CHANGE)

    response = register(http, WITH_REQUIRED_NICKNAME)

    assert error_code(response) == (409, 409)
    assert "READER_FIELD_MISSING_DEFAULT_VALUE: nickname" in response.json()["message"]
    assert http.get("/_sandbox/journal").json()[-1]["code"] == "409"


def test_lookup_finds_a_registered_schema_under_its_subject(http: httpx.Client) -> None:
    register(http, PERSON_CHANGE)

    found = http.post(f"/subjects/{SUBJECT}", json=body(json.dumps(PERSON_CHANGE, indent=2)))
    other = http.post(f"/subjects/{SUBJECT}", json=body(WITH_NICKNAME))
    unknown = http.post("/subjects/nobody-value", json=body(PERSON_CHANGE))

    assert (found.json()["id"], found.json()["version"]) == (1, 1)
    assert error_code(other) == (404, 40403)
    assert error_code(unknown) == (404, 40401)


def test_compatibility_check_against_latest_with_verbose_messages(http: httpx.Client) -> None:
    register(http, PERSON_CHANGE)
    url = f"/compatibility/subjects/{SUBJECT}/versions/latest"

    good = http.post(url, json=body(WITH_NICKNAME)).json()
    bad = http.post(url, params={"verbose": "true"}, json=body(WITH_REQUIRED_NICKNAME)).json()

    assert good == {"is_compatible": True}
    assert bad["is_compatible"] is False
    assert any("READER_FIELD_MISSING_DEFAULT_VALUE: nickname" in m for m in bad["messages"])


def test_config_defaults_to_backward_and_none_lets_anything_in(http: httpx.Client) -> None:
    register(http, PERSON_CHANGE)

    assert http.get("/config").json() == {"compatibilityLevel": "BACKWARD"}
    assert error_code(http.get(f"/config/{SUBJECT}")) == (404, 40408)
    assert http.put(f"/config/{SUBJECT}", json={"compatibility": "NONE"}).json() == {
        "compatibility": "NONE"
    }
    assert http.get(f"/config/{SUBJECT}").json() == {"compatibilityLevel": "NONE"}
    assert register(http, WITH_REQUIRED_NICKNAME).json()["version"] == 2
    assert error_code(http.put("/config", json={"compatibility": "SIDEWAYS"})) == (422, 42203)


def test_forward_rejects_dropping_a_field_old_readers_need(http: httpx.Client) -> None:
    http.put("/config", json={"compatibility": "FORWARD"})
    register(http, PERSON_CHANGE)
    without_marketo_id = {
        **PERSON_CHANGE,
        "fields": [f for f in PERSON_CHANGE["fields"] if f["name"] != "marketo_id"],
    }

    assert error_code(register(http, without_marketo_id)) == (409, 409)
    assert register(http, WITH_REQUIRED_NICKNAME).json()["version"] == 2  # old readers skip it


def test_transitive_checks_every_version(http: httpx.Client) -> None:
    http.put(f"/config/{SUBJECT}", json={"compatibility": "BACKWARD_TRANSITIVE"})
    register(http, PERSON_CHANGE)
    register(http, person_change_with({"name": "nickname", "type": "string", "default": ""}))

    # reads version 2 (which has a nickname) but not version 1
    assert error_code(register(http, WITH_REQUIRED_NICKNAME)) == (409, 409)
    http.put(f"/config/{SUBJECT}", json={"compatibility": "BACKWARD"})
    assert register(http, WITH_REQUIRED_NICKNAME).json()["version"] == 3


def test_delete_subject_keeps_schema_ids(http: httpx.Client) -> None:
    register(http, PERSON_CHANGE)

    assert http.delete(f"/subjects/{SUBJECT}").json() == [1]
    assert http.get("/subjects").json() == []
    assert http.get("/schemas/ids/1").status_code == 200


def test_plain_application_json_is_accepted(http: httpx.Client) -> None:
    response = http.post(
        f"/subjects/{SUBJECT}/versions",
        content=json.dumps(body(PERSON_CHANGE)),
        headers={"content-type": "application/json"},
    )

    assert response.json()["id"] == 1


def test_seeded_faults_answer_50001(http: httpx.Client) -> None:
    http.post("/_sandbox/faults", json={"error_rate": 1.0})

    response = http.get("/subjects")

    assert error_code(response) == (500, 50001)
    assert http.get("/_sandbox/journal").json()[-1]["code"] == "50001"


# -- confluent-kafka's client ------------------------------------------------------------


def test_client_registers_and_fetches_by_id_and_latest(client: SchemaRegistryClient) -> None:
    schema_id = client.register_schema(SUBJECT, Schema(schemas.schema_text("PersonChange"), "AVRO"))

    fetched = client.get_schema(schema_id)
    latest = client.get_latest_version(SUBJECT)

    assert json.loads(fetched.schema_str or "") == PERSON_CHANGE
    assert (latest.schema_id, latest.version, latest.subject) == (schema_id, 1, SUBJECT)


def test_client_compatibility_and_levels(client: SchemaRegistryClient) -> None:
    client.register_schema(SUBJECT, Schema(json.dumps(PERSON_CHANGE), "AVRO"))
    required = Schema(json.dumps(WITH_REQUIRED_NICKNAME), "AVRO")

    assert client.test_compatibility(SUBJECT, Schema(json.dumps(WITH_NICKNAME), "AVRO")) is True
    assert client.test_compatibility(SUBJECT, required) is False
    with pytest.raises(SchemaRegistryError) as refused:
        client.register_schema(SUBJECT, required)
    assert refused.value.error_code == 409
    client.set_compatibility(SUBJECT, "NONE")
    assert client.get_compatibility(SUBJECT) == "NONE"
    assert client.register_schema(SUBJECT, required) == 2


def test_avro_serdes_round_trip_a_person_change(client: SchemaRegistryClient) -> None:
    serializer = AvroSerializer(client, schemas.schema_text("PersonChange"))
    deserializer = AvroDeserializer(client)
    context = SerializationContext("marketo.person.changes", MessageField.VALUE)
    change = {
        "event_id": uuid.uuid4(),
        "marketo_id": 42,
        "email": "ada@example.com",
        "changed_at": dt.datetime(2024, 5, 1, 12, tzinfo=dt.UTC),
    }

    message = serializer(change, context)
    decoded = deserializer(message, context)

    assert message[0] == 0  # the Confluent wire format: magic byte, schema id, Avro body
    assert int.from_bytes(message[1:5], "big") == client.get_latest_version(SUBJECT).schema_id
    assert decoded is not None and {k: decoded[k] for k in change} == change
    assert decoded["deleted"] is False and decoded["phone"] is None
