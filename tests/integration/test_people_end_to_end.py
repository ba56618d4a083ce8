"""Person changes -> people worker process(es) -> Actions store, on a real broker (Tansu,
or Apache Kafka when KAFKA_BOOTSTRAP_SERVERS is set) and a real database (SQLite file and
PostgreSQL). Producers use confluent-kafka's own Avro serializer."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from confluent_kafka import KafkaError, Message, Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

import schemas
from actions_sync.kafka import Ends, dlq_topic, ensure_topics, producer_config, read_topic
from actions_sync.settings import Settings
from actions_sync.store import Store
from actions_sync.topics import PERSON_CHANGES, specs
from app.demo import bad_person_records
from app.people_scenario import Scenario, reconcile
from app.stack import Stack
from tests.factories import person_change
from tests.support.checks import present

pytestmark = pytest.mark.slow

# Explicit cases, far from the generated population's Marketo IDs.
REMOVED, TWIN_A, TWIN_B, OUT_OF_ORDER, NEVER_OWNED, DELETED, WRONG_KEY, TOO_LONG = range(
    900_001, 900_009
)


def first_wave() -> list[tuple[str, dict[str, Any]]]:
    """(key, change) pairs, in publication order."""
    return [
        (str(REMOVED), person_change(REMOVED, 1)),
        (str(TWIN_A), person_change(TWIN_A, 1, email="twin@example.com")),
        (
            str(TWIN_B),
            person_change(
                TWIN_B,
                1,
                email="twin@example.com",
                sfdc_lead_owner_id=None,
                sfdc_contact_owner_id="005c",
            ),
        ),
        (str(OUT_OF_ORDER), person_change(OUT_OF_ORDER, 5, title="newest")),
        (str(NEVER_OWNED), person_change(NEVER_OWNED, 1, sfdc_lead_owner_id=None)),
        (str(DELETED), person_change(DELETED, 1)),
        ("not-the-id", person_change(WRONG_KEY, 1)),  # rule violation: key != Marketo ID
        (str(TOO_LONG), person_change(TOO_LONG, 1, company="x" * 300)),  # rule violation
    ]


def second_wave() -> list[tuple[str, dict[str, Any]]]:
    """Published once the first wave is in the store."""
    return [
        (str(REMOVED), person_change(REMOVED, 2, sfdc_lead_owner_id=None)),
        (str(OUT_OF_ORDER), person_change(OUT_OF_ORDER, 3, title="stale")),
        (str(DELETED), person_change(DELETED, 2, deleted=True)),
    ]


def publish(
    kafka: str,
    registry: str,
    changes: list[tuple[str, dict[str, Any]]],
    ends: Ends,
    bad: bool = False,
) -> None:
    """Publish with confluent-kafka's serializer; record what the broker acknowledged."""

    def delivered(err: KafkaError | None, msg: Message) -> None:
        assert err is None, err
        topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
        assert topic is not None and partition is not None and offset is not None
        ends[topic, partition] = max(ends.get((topic, partition), 0), offset + 1)

    with SchemaRegistryClient({"url": registry}) as client:
        serialize = AvroSerializer(client, schemas.schema_text("PersonChange"))
        ctx = SerializationContext(PERSON_CHANGES, MessageField.VALUE)
        producer = Producer(producer_config(kafka))
        for key, change in changes:
            producer.produce(
                PERSON_CHANGES, serialize(change, ctx), key.encode(), on_delivery=delivered
            )
            producer.poll(0)
        for raw_key, value in bad_person_records() if bad else []:
            producer.produce(PERSON_CHANGES, value, raw_key, on_delivery=delivered)
        assert producer.flush(30) == 0


def dead_letter_headers(kafka: str) -> list[dict[str, str]]:
    return [
        {k: v.decode() for k, v in msg.headers()}
        for msg in read_topic(kafka, dlq_topic(PERSON_CHANGES))
    ]


@pytest.mark.parametrize("workers", [1, 2], ids=["one-worker", "two-workers"])
def test_people_reach_the_store_and_bad_records_the_dlq(
    kafka: str, registry: str, database_url: str, workers: int
) -> None:
    settings = Settings(
        kafka_bootstrap_servers=kafka,
        schema_registry_url=registry,
        database_url=database_url,
        group_prefix=f"t-{uuid.uuid4().hex[:8]}",
        people_batch_size=500,
    )
    ensure_topics(kafka, specs((PERSON_CHANGES,), settings.partitions))
    scenario = Scenario(people=600, seed=11)
    generated = [(str(c["marketo_id"]), c) for c in scenario.changes()]
    ends: Ends = {}
    publish(kafka, registry, generated + first_wave(), ends, bad=True)
    with Store(database_url) as store:
        store.migrate()

    with Stack(settings) as stack:
        for _ in range(workers):
            stack.add_worker("people")
        stack.wait_drained("people", PERSON_CHANGES, ends, timeout_s=120)
        with Store(database_url) as store:
            assert present(store.person(REMOVED))["removed_at"] is None
        publish(kafka, registry, second_wave(), ends)
        stack.wait_drained("people", PERSON_CHANGES, ends, timeout_s=60)
        per_worker = [stack.handled_by(w) for w in stack.workers]

    store = Store(database_url)
    try:
        report = reconcile(store, scenario.expected)
        removed = store.person(REMOVED)
        twin_a, twin_b = present(store.person(TWIN_A)), present(store.person(TWIN_B))
        assert removed is not None and removed["removed_at"] is not None  # owner removed
        assert twin_a["removed_at"] is None and twin_b["removed_at"] is None  # copied, not merged
        # older never overwrites newer
        assert present(store.person(OUT_OF_ORDER))["title"] == "newest"
        assert store.person(NEVER_OWNED) is None  # not sales-owned: never written
        assert present(store.person(DELETED))["removed_at"] is not None  # deleted lead leaves
        assert store.person(WRONG_KEY) is None and store.person(TOO_LONG) is None
    finally:
        store.close()
    assert report.ok, report.mismatches
    assert report.expected_present == report.stored_present > 300

    letters = dead_letter_headers(kafka)
    # At least once: a rebalance may hand a partition over before its offsets were
    # committed, so a record can be dead-lettered twice; each bad record is there.
    positions = {(h["source.partition"], h["source.offset"]) for h in letters}
    assert len(positions) == len(bad_person_records()) + 2 <= len(letters)
    assert {h["error.class"] for h in letters} == {"UndecodableRecord", "RuleViolation"}
    assert all(h["source.topic"] == PERSON_CHANGES and h["error.message"] for h in letters)
    assert {h["error.stage"] for h in letters} == {"decode", "rules"}
    # Both copies ran in one group without losses or duplicated effects; how the records
    # split between them is timing (the fast path can drain 800 records before a second
    # copy joins): hand-over mid-drain is tested in test_people_fastpath.py.
    assert len(per_worker) == workers
