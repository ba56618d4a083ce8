"""Metrics count what is durable (issue 10, item 6): a batch retried once counts once, and
a dead letter counts when the broker acknowledged it — on a real broker and store, the
handlers driven in-process as their pipeline drives them (a failed write is retried)."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from actions_sync.admin.model import AdminSettings
from actions_sync.dead_letter import DeadLetter, DeadLetterProducer, dead_letter
from actions_sync.errors import Retriable, RuleViolation
from actions_sync.kafka import dlq_topic, ensure_topics, read_topic
from actions_sync.publish import Publisher
from actions_sync.serialization import Deserializer, RegistryClient, Serializer
from actions_sync.store import Store
from actions_sync.topics import (
    OUTBOUND_MARKETO_ACTIVITIES,
    OUTBOUND_SALESFORCE_TASKS,
    PERSON_CHANGES,
    SALES_ACTIVITIES,
    specs,
)
from streams.activities import ActivityRouter
from streams.batch import RawRecord
from streams.people import PeopleHandler
from streams.rules.people import person_row
from tests.factories import T0, person_change, sales_activity
from tests.support.checks import present
from tests.support.processes import pause


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class FailingOnce:
    """The real dead-letter producer, whose first send fails as a broker away would: the
    handler's batch is retried, as its pipeline does."""

    def __init__(self, producer: DeadLetterProducer) -> None:
        self.producer = producer
        self.failed = False

    def send(self, letters: Iterable[DeadLetter]) -> int:
        if not self.failed:
            self.failed = True
            raise Retriable("dead letters not acknowledged")
        return self.producer.send(letters)


@pytest.fixture
def edges(kafka: str, registry: str, tmp_path: Path) -> Iterator[tuple[Store, RegistryClient]]:
    ensure_topics(
        kafka,
        specs(
            (
                PERSON_CHANGES,
                SALES_ACTIVITIES,
                OUTBOUND_MARKETO_ACTIVITIES,
                OUTBOUND_SALESFORCE_TASKS,
            ),
            2,
        ),
    )
    client = RegistryClient(registry)
    with Store(f"sqlite:///{tmp_path}/store.db") as store:
        store.migrate()
        yield store, client
    client.close()


def records(
    client: RegistryClient, topic: str, record: str, items: list[tuple[str, dict[str, Any]]]
) -> list[RawRecord]:
    encode = Serializer(client, topic, record)
    return [
        RawRecord(topic, 0, n, key.encode(), encode(value)) for n, (key, value) in enumerate(items)
    ]


def retried_once(handler: object, batch: list[RawRecord]) -> None:
    with pytest.raises(Retriable):
        handler(batch)  # type: ignore[operator]
    handler(batch)  # type: ignore[operator]


def test_a_routed_batch_retried_once_counts_once(
    kafka: str, edges: tuple[Store, RegistryClient]
) -> None:
    store, client = edges
    store.apply_people([person_row(person_change(5, 1))], [])
    good = [sales_activity(marketo_id=5, occurred_at=T0.replace(hour=13)) for _ in range(4)]
    batch = records(
        client,
        SALES_ACTIVITIES,
        "SalesActivity",
        [("5", a) for a in good] + [("6", sales_activity(marketo_id=5))],
    )
    letters = DeadLetterProducer(kafka)
    publisher = Publisher(kafka, client)
    router = ActivityRouter(
        store,
        Deserializer(client, "SalesActivity"),
        FailingOnce(letters),  # type: ignore[arg-type]
        publisher,
        client,
        AdminSettings,
        park_s=60,
        retry_s=60,
        future_skew_s=86_400,
    )
    routed = ("actions_sync_activities_routed_total", {"destination": "marketo", "outcome": "sent"})
    dead = (
        "actions_sync_dead_letters_total",
        {"topic": dlq_topic(SALES_ACTIVITIES), "error_class": "RuleViolation"},
    )
    before = sample(routed[0], **routed[1]), sample(dead[0], **dead[1])
    try:
        retried_once(router, batch)
    finally:
        letters.close()
    assert sample(routed[0], **routed[1]) - before[0] == 4  # not 8
    assert sample(dead[0], **dead[1]) - before[1] == 1
    assert len(read_topic(kafka, dlq_topic(SALES_ACTIVITIES), idle_s=0.5)) == 1


def test_a_people_batch_retried_once_counts_once(
    kafka: str, edges: tuple[Store, RegistryClient]
) -> None:
    store, client = edges
    changes = [
        ("7", person_change(7, 1)),
        ("7", person_change(7, 2)),  # 1 superseded
        ("8", person_change(8, 1)),
        ("8", person_change(9, 1)),
    ]  # wrong key: DLQ
    batch = records(client, PERSON_CHANGES, "PersonChange", changes)
    letters = DeadLetterProducer(kafka)
    handler = PeopleHandler(
        store,
        Deserializer(client, "PersonChange"),
        FailingOnce(letters),  # type: ignore[arg-type]
        future_skew_s=86_400,
    )
    counters = {
        "superseded": ("actions_sync_skipped_total", {"worker": "people", "reason": "superseded"}),
        "upserted": ("actions_sync_store_writes_total", {"table": "persons", "kind": "upsert"}),
    }
    before = {k: sample(n, **labels) for k, (n, labels) in counters.items()}
    try:
        retried_once(handler, batch)
    finally:
        letters.close()
    after = {k: sample(n, **labels) - before[k] for k, (n, labels) in counters.items()}
    assert after == {"superseded": 1, "upserted": 2}
    assert present(store.person(7))["changed_at"] == T0.replace(second=2)


def test_dead_letters_count_once_acknowledged_though_the_broker_stopped_answering(
    kafka: str,
) -> None:
    """Letters queued while the broker is stopped time out (`message.timeout.ms` 2 s) and
    are sent again when it is back; each counts once, when acknowledged."""
    ensure_topics(kafka, specs((PERSON_CHANGES,), 2))
    letters = [
        dead_letter(PERSON_CHANGES, 0, n, b"k", b"v", RuleViolation("bad")) for n in range(5)
    ]
    name, labels = (
        "actions_sync_dead_letters_total",
        {"topic": dlq_topic(PERSON_CHANGES), "error_class": "RuleViolation"},
    )
    before = sample(name, **labels)
    stopped = threading.Event()
    pauser = threading.Thread(target=pause, args=(kafka, 6.0, stopped))
    pauser.start()
    stopped.wait()
    config: dict[str, Any] = {"message.timeout.ms": 2000}
    producer = DeadLetterProducer(kafka, **config)
    try:
        assert producer.send(letters) == 5
    finally:
        pauser.join()
        producer.close()
    assert sample(name, **labels) - before == 5
    offsets = [
        int(dict(m.headers())["source.offset"])
        for m in read_topic(kafka, dlq_topic(PERSON_CHANGES), idle_s=0.5)
    ]
    assert sorted(offsets) == list(range(5))
