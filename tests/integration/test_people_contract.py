"""The people worker process on the version rules and the producer contract (issue 10),
on a real broker (Tansu, or Apache Kafka when KAFKA_BOOTSTRAP_SERVERS is set) and a real
store (a SQLite file and PostgreSQL):

- changes of one person in one second (Marketo's resolution) apply in log order: an
  update then a delete ends deleted, the second of two edits stays — within one batch
  and across two;
- a record that breaks the contract (no key, a `changed_at` from the future, a body of
  varints that never end) is dead-lettered with its reason, and the good change
  published after it is applied.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from actions_sync.kafka import dlq_topic, ensure_topics, read_topic
from actions_sync.publish import Publisher
from actions_sync.serialization import RegistryClient, frame
from actions_sync.settings import Settings
from actions_sync.store import Store
from actions_sync.topics import PERSON_CHANGES, specs
from app.stack import Stack
from tests.factories import person_change
from tests.support.checks import present

pytestmark = pytest.mark.slow

# Same batch: both changes published together; across batches: the second after the first
# is in the store.
EDITED, DELETED, OWNER_GONE, EDITED_LATER, DELETED_LATER = range(800_001, 800_006)
NO_KEY, FUTURE, ENDLESS_VARINT, GOOD = range(800_011, 800_015)


class People:
    """Publishes person changes (and raw records) and remembers what the broker acked."""

    def __init__(self, kafka: str, registry_url: str) -> None:
        self.kafka = kafka
        self.registry = RegistryClient(registry_url)
        self.publisher = Publisher(kafka, self.registry)
        self.encode = self.publisher.serializer(PERSON_CHANGES, "PersonChange")

    def publish(
        self, changes: list[dict[str, Any]], raw: Sequence[tuple[bytes | None, bytes]] = ()
    ) -> None:
        self.publisher.publish(
            PERSON_CHANGES, "PersonChange", [(str(c["marketo_id"]), c) for c in changes]
        )
        self.publisher.publish_raw(PERSON_CHANGES, raw)
        self.publisher.flush()

    def dead_letters(self) -> list[dict[str, str]]:
        return [
            {k: v.decode() for k, v in msg.headers()}
            for msg in read_topic(self.kafka, dlq_topic(PERSON_CHANGES), idle_s=0.5)
        ]

    def close(self) -> None:
        self.publisher.flush()
        self.registry.close()


@pytest.fixture
def people(kafka: str, registry: str) -> Iterator[People]:
    ensure_topics(kafka, specs((PERSON_CHANGES,), 8))
    p = People(kafka, registry)
    yield p
    p.close()


@pytest.fixture
def settings(kafka: str, registry: str, database_url: str) -> Settings:
    with Store(database_url) as store:
        store.migrate()
    return Settings(
        kafka_bootstrap_servers=kafka,
        schema_registry_url=registry,
        database_url=database_url,
        group_prefix=f"t-{uuid.uuid4().hex[:8]}",
    )


def test_changes_in_one_second_apply_in_log_order(people: People, settings: Settings) -> None:
    people.publish(
        [
            person_change(EDITED, 5, title="first"),
            person_change(EDITED, 5, title="second"),
            person_change(DELETED, 5),
            person_change(DELETED, 5, deleted=True),
            person_change(OWNER_GONE, 5),
            person_change(OWNER_GONE, 5, sfdc_lead_owner_id=None),
            person_change(EDITED_LATER, 5, title="first"),
            person_change(DELETED_LATER, 5),
        ]
    )
    with Stack(settings) as stack:
        stack.add_worker("people")
        stack.wait_drained("people", PERSON_CHANGES, people.publisher.ends, timeout_s=120)
        with Store(settings.database_url) as store:
            assert present(store.person(DELETED_LATER))["removed_at"] is None
        people.publish(
            [
                person_change(EDITED_LATER, 5, title="second"),
                person_change(DELETED_LATER, 5, deleted=True),
            ]
        )
        stack.wait_drained("people", PERSON_CHANGES, people.publisher.ends, timeout_s=60)

    with Store(settings.database_url) as store:
        # A second edit in one second (the lead-changes poller looked it up after the first)
        assert present(store.person(EDITED))["title"] == "second"
        assert present(store.person(EDITED_LATER))["title"] == "second"
        # A lead updated and then deleted (or its owner removed) in one second leaves Actions
        for gone in (DELETED, OWNER_GONE, DELETED_LATER):
            assert present(store.person(gone))["removed_at"] == person_change(gone, 5)["changed_at"]
    assert people.dead_letters() == []


def test_a_record_breaking_the_contract_is_dead_lettered_and_the_next_one_applied(
    people: People, settings: Settings
) -> None:
    future = datetime.now(UTC) + timedelta(days=1, hours=1)  # the default skew is one day
    endless = frame(people.encode.schema_id, b"\xff" * 900_000)  # a varint that never ends
    people.publish([], raw=[(None, people.encode(person_change(NO_KEY, 1)))])
    people.publish([person_change(FUTURE, 1, changed_at=future)])
    people.publish([], raw=[(str(ENDLESS_VARINT).encode(), endless)])
    people.publish(
        [
            person_change(NO_KEY, 2),
            person_change(FUTURE, 2),
            person_change(ENDLESS_VARINT, 2),
            person_change(GOOD, 1),
        ]
    )
    with Stack(settings) as stack:
        stack.add_worker("people")
        stack.wait_drained("people", PERSON_CHANGES, people.publisher.ends, timeout_s=120)

    with Store(settings.database_url) as store:
        for good in (NO_KEY, FUTURE, ENDLESS_VARINT, GOOD):
            version = 2 - (good == GOOD)
            assert (
                present(store.person(good))["changed_at"]
                == person_change(good, version)["changed_at"]
            )
    letters = people.dead_letters()
    assert len(letters) == 3
    reasons = sorted((h["error.class"], h["error.stage"], h["error.message"]) for h in letters)
    assert [r[:2] for r in reasons] == [
        ("RuleViolation", "rules"),
        ("RuleViolation", "rules"),
        ("UndecodableRecord", "decode"),
    ]
    assert any(m.startswith("no key: the key must be the Marketo ID") for *_, m in reasons)
    assert any(
        m.startswith(f"changed_at {future.isoformat()[:19]}") and "in the future" in m
        for *_, m in reasons
    )
    assert any("runs past 10 bytes" in m for *_, m in reasons)
    assert all(h["source.topic"] == PERSON_CHANGES and h["source.offset"] for h in letters)
