"""A record too large to be dead-lettered whole (issue 10, item 3): a 2 MB record, from a
producer whose `message.max.bytes` allows it, reaches the dead-letter topic with its
headers and a truncated value that says so, and the records after it are handled — through
the real people worker and activity router, on Tansu and Apache Kafka."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from actions_sync.dead_letter import HEADERS, DeadLetter, DeadLetterProducer, dead_letter
from actions_sync.dead_letter_admin import replay_dead_letters
from actions_sync.errors import RuleViolation
from actions_sync.kafka import (
    LIBRDKAFKA_MESSAGE_MAX,
    TopicSpec,
    dlq_topic,
    ensure_topics,
    max_message_bytes,
    read_topic,
)
from actions_sync.publish import Publisher
from actions_sync.serialization import Deserializer, RegistryClient
from actions_sync.settings import Settings
from actions_sync.store import Store
from actions_sync.topics import OUTBOUND_MARKETO_ACTIVITIES, PERSON_CHANGES, SALES_ACTIVITIES, specs
from app.stack import Stack
from streams.rules.people import person_row
from tests.factories import person_change, sales_activity
from tests.support.checks import present

BIG = 2 * 1024 * 1024  # characters of the oversize field
# a producer that lets a 2 MB record through
LARGE_PRODUCER: dict[str, Any] = {"message.max.bytes": 3 * BIG}


def publish(
    kafka: str, registry_url: str, topic: str, record: str, items: list[tuple[str, dict[str, Any]]]
) -> dict[tuple[str, int], int]:
    registry = RegistryClient(registry_url)
    try:
        publisher = Publisher(kafka, registry, **LARGE_PRODUCER)
        publisher.publish(topic, record, items)
        publisher.flush()
        return publisher.ends
    finally:
        registry.close()


def letters(kafka: str, topic: str) -> list[tuple[dict[str, str], bytes]]:
    return [
        ({k: v.decode() for k, v in msg.headers()}, msg.value())
        for msg in read_topic(kafka, dlq_topic(topic), idle_s=1.0)
    ]


def assert_truncated(letter: tuple[dict[str, str], bytes], topic: str, stage: str) -> None:
    headers, value = letter
    assert set(HEADERS) <= set(headers)
    assert (headers["error.class"], headers["error.stage"]) == ("RuleViolation", stage)
    assert headers["source.topic"] == topic and headers["value.truncated"] == "true"
    original = int(headers["value.original_size"])
    assert original > BIG and 0 < len(value) < LIBRDKAFKA_MESSAGE_MAX


@pytest.fixture
def settings(kafka: str, registry: str, tmp_path: Path) -> Settings:
    return Settings(
        kafka_bootstrap_servers=kafka,
        schema_registry_url=registry,
        database_url=f"sqlite:///{tmp_path}/store.db",
        group_prefix=f"t-{uuid.uuid4().hex[:8]}",
    )


@pytest.mark.slow
def test_an_oversize_person_record_is_dead_lettered_truncated_and_the_next_is_stored(
    kafka: str, registry: str, settings: Settings
) -> None:
    ensure_topics(kafka, specs((PERSON_CHANGES,), settings.partitions))
    huge = person_change(11, 1, company="x" * BIG)  # breaks the 255-character rule
    ends = publish(
        kafka,
        registry,
        PERSON_CHANGES,
        "PersonChange",
        [("11", huge), ("12", person_change(12, 1))],
    )
    with Stack(settings) as stack:
        stack.add_worker("people")
        stack.wait_drained("people", PERSON_CHANGES, ends, timeout_s=90)
        stack.check_workers()
    with Store(settings.database_url) as store:
        assert store.person(12) is not None and store.person(11) is None
    [letter] = letters(kafka, PERSON_CHANGES)
    assert_truncated(letter, PERSON_CHANGES, "rules")


@pytest.mark.slow
def test_an_oversize_activity_is_dead_lettered_truncated_and_the_next_is_routed(
    kafka: str, registry: str, settings: Settings
) -> None:
    ensure_topics(kafka, specs((SALES_ACTIVITIES,), settings.partitions))
    with Store(settings.database_url) as store:
        store.migrate()
        store.apply_people([person_row(person_change(21, 1))], [])
    huge = sales_activity(marketo_id=21, email_subject="x" * BIG)
    good = sales_activity(marketo_id=21)
    ends = publish(
        kafka, registry, SALES_ACTIVITIES, "SalesActivity", [("999", huge), ("21", good)]
    )  # key != Marketo ID: a rule violation
    with Stack(settings) as stack:
        stack.add_worker("activities")
        stack.wait_drained("activities", SALES_ACTIVITIES, ends, timeout_s=90)
        stack.check_workers()
    client = RegistryClient(registry)
    decode = Deserializer(client, "MarketoActivityOut")
    routed = {
        decode(m.value())["activity_id"]
        for m in read_topic(kafka, OUTBOUND_MARKETO_ACTIVITIES, idle_s=1.0)
    }
    client.close()
    assert good["activity_id"] in routed and huge["activity_id"] not in routed
    [letter] = letters(kafka, SALES_ACTIVITIES)
    assert_truncated(letter, SALES_ACTIVITIES, "rules")


def _letter(topic: str, key: bytes, value: bytes) -> DeadLetter:
    return dead_letter(topic, 0, 7, key, value, RuleViolation("too large"))


def test_the_limit_is_the_dlq_topics_own_and_a_letter_over_it_is_cut_to_fit(kafka: str) -> None:
    """A DLQ topic made to take at most 200 kB (Apache Kafka honours `max.message.bytes`;
    Tansu does not say, and the producer's own limit applies)."""
    topic = f"small-{uuid.uuid4().hex[:8]}"
    ensure_topics(
        kafka, [TopicSpec(dlq_topic(topic), 1, config=(("max.message.bytes", "200000"),))]
    )
    told = max_message_bytes(kafka, dlq_topic(topic))
    assert told in (200_000, None)
    limit = told or LIBRDKAFKA_MESSAGE_MAX
    # Incompressible bytes: the broker checks the compressed batch, so it must fit anyway.
    big = _letter(topic, b"k", uuid.uuid4().bytes * (BIG // 16))
    small = [_letter(topic, str(n).encode(), b"v" * 30_000) for n in range(20)]
    producer = DeadLetterProducer(kafka)
    try:
        assert producer.send([big, *small]) == 21
    finally:
        producer.close()
    got = read_topic(kafka, dlq_topic(topic), idle_s=1.0)
    assert len(got) == 21
    first = {k: v.decode() for k, v in got[0].headers()}
    assert first["value.original_size"] == str(BIG) and first["error.message"] == "too large"
    cut = present(got[0].value())
    assert cut == present(big.value)[: len(cut)] and len(cut) < limit
    assert all(m.value() == b"v" * 30_000 for m in got[1:])  # small ones untouched
    ensure_topics(kafka, [TopicSpec(topic, 1)])
    assert len(replay_dead_letters(kafka, topic, idle_s=1.0)) == 20  # not the truncated one
    assert len(read_topic(kafka, topic, idle_s=1.0)) == 20
