"""Sales activities -> activity router worker process -> outbound Marketo activities and
Salesforce Tasks (SPEC S4, S7, S8), on a real broker and store: people joined from the
store, parking of activities whose person is unknown (surviving a worker restart), the
person_unknown and person_not_synced dead letters, and an admin settings change applied
without restarting the worker."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from actions_sync.admin import set_value
from actions_sync.kafka import Ends, dlq_topic, ensure_topics, read_topic
from actions_sync.publish import Publisher
from actions_sync.serialization import Deserializer, RegistryClient
from actions_sync.settings import Settings
from actions_sync.store import Store
from actions_sync.store import parked as parking
from actions_sync.topics import (
    OUTBOUND_MARKETO_ACTIVITIES,
    OUTBOUND_SALESFORCE_TASKS,
    SALES_ACTIVITIES,
    specs,
)
from app.process import stop
from app.stack import Stack
from streams.rules.people import person_row
from tests.factories import T0, person_change, sales_activity

pytestmark = pytest.mark.slow

CONTACT, LEAD, REMOVED, LATE, NEVER = 700_001, 700_002, 700_003, 700_004, 700_005
LATER = T0 + timedelta(hours=1)


def people() -> list[dict[str, Any]]:
    return [
        person_row(
            person_change(
                CONTACT,
                1,
                sfdc_contact_id="003C",
                sfdc_account_id="001A",
                sfdc_opportunity_id="006O",
            )
        ),
        person_row(person_change(LEAD, 1, sfdc_lead_id="00QL", sfdc_account_id="001A")),
        person_row(person_change(REMOVED, 1)),
    ]


def activity(type_: str, marketo_id: int, **fields: Any) -> dict[str, Any]:
    return sales_activity(type_, marketo_id, occurred_at=LATER, **fields)


class Topics:
    """Publishes activities and reads back what the router wrote, decoded."""

    def __init__(self, kafka: str, registry_url: str) -> None:
        self.kafka = kafka
        self.registry = RegistryClient(registry_url)
        self.publisher = Publisher(kafka, self.registry)
        self.ends: Ends = {}

    def publish(
        self, activities: list[dict[str, Any]], raw: Sequence[tuple[bytes | None, bytes]] = ()
    ) -> None:
        self.publisher.publish(
            SALES_ACTIVITIES, "SalesActivity", [(str(a["marketo_id"]), a) for a in activities]
        )
        self.publisher.publish_raw(SALES_ACTIVITIES, raw)
        self.publisher.flush()
        self.ends.update(self.publisher.ends)

    def read(self, topic: str, record: str) -> dict[str, dict[str, Any]]:
        decode = Deserializer(self.registry, record)
        out = {}
        for msg in read_topic(self.kafka, topic, idle_s=0.5):
            value = decode(msg.value())
            out[value.get("activity_id") or value["external_id"]] = value
        return out

    def marketo(self) -> dict[str, dict[str, Any]]:
        return self.read(OUTBOUND_MARKETO_ACTIVITIES, "MarketoActivityOut")

    def salesforce(self) -> dict[str, dict[str, Any]]:
        return self.read(OUTBOUND_SALESFORCE_TASKS, "SalesforceTaskOut")

    def dead(self) -> dict[str, dict[str, str]]:
        """source offset -> headers of the dead letters of the activities topic."""
        return {
            f"{h['source.partition']}:{h['source.offset']}": h
            for h in (
                {k: v.decode() for k, v in msg.headers()}
                for msg in read_topic(self.kafka, dlq_topic(SALES_ACTIVITIES), idle_s=0.5)
            )
        }

    def close(self) -> None:
        self.publisher.flush()
        self.registry.close()


def wait_until(predicate: Callable[[], object], what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"{what} not within {timeout_s:.0f}s"
        time.sleep(0.3)


@pytest.fixture
def topics(kafka: str, registry: str) -> Iterator[Topics]:
    ensure_topics(kafka, specs((SALES_ACTIVITIES,), 8))
    t = Topics(kafka, registry)
    yield t
    t.close()


def test_activities_are_routed_parked_and_dead_lettered_with_live_settings(
    kafka: str, registry: str, tmp_path: Path, topics: Topics
) -> None:
    database_url = f"sqlite:///{tmp_path}/store.db"
    settings = Settings(
        kafka_bootstrap_servers=kafka,
        schema_registry_url=registry,
        database_url=database_url,
        group_prefix=f"t-{uuid.uuid4().hex[:8]}",
    )
    with Store(database_url) as store:
        store.migrate()
        store.apply_people(people(), [])
        gone = person_row(person_change(REMOVED, 2, sfdc_lead_owner_id=None))
        store.apply_people([], [gone])  # removed at T0+2s, before LATER

    email, reply = activity("SEND_SALES_EMAIL", CONTACT), activity("REPLY_TO_SALES_EMAIL", LEAD)
    call, opened = activity("RECEIVED_SALES_CALL", CONTACT), activity("OPEN_SALES_EMAIL", LEAD)
    late, never = activity("SEND_SALES_EMAIL", LATE), activity("SEND_SALES_EMAIL", NEVER)
    after_removal = activity("SEND_SALES_EMAIL", REMOVED)
    wrong_key = activity("SEND_SALES_EMAIL", CONTACT)
    topics.publish([email, reply, call, opened, late, never, after_removal])
    topics.publish([], raw=[(str(CONTACT).encode(), b"not avro")])
    topics.publisher.publish(SALES_ACTIVITIES, "SalesActivity", [("999", wrong_key)])
    topics.publish([])

    env = {"ACTIONS_SYNC_ACTIVITIES_PARK_S": "6", "ACTIONS_SYNC_ACTIVITIES_RETRY_S": "0.5"}
    with Stack(settings) as stack:
        stack.add_worker("activities", env)
        stack.wait_drained("activities", SALES_ACTIVITIES, topics.ends, timeout_s=60)

        marketo, salesforce = topics.marketo(), topics.salesforce()
        routed = [email, reply, call, opened]
        assert {a["activity_id"] for a in routed} <= set(marketo)
        assert marketo[email["activity_id"]]["primary_attribute_value"].endswith(
            f"(SIA-{email['activity_id']})"
        )
        assert marketo[opened["activity_id"]]["attributes"]["source"] == "Sales App"
        # S8: email, reply and call log as Tasks; an open does not.
        assert set(salesforce) >= {email["activity_id"], reply["activity_id"], call["activity_id"]}
        assert opened["activity_id"] not in salesforce
        email_task = salesforce[email["activity_id"]]["fields"]
        assert (email_task["WhoId"], email_task["WhatId"]) == ("003C", "006O")
        assert email_task["Subject"] == "Email: Quick question"
        reply_task = salesforce[reply["activity_id"]]["fields"]
        assert reply_task["Subject"] == "Reply: Quick question" and reply_task["Type"] == "Reply"
        assert reply_task["WhoId"] == "00QL" and "WhatId" not in reply_task  # a Lead: no WhatId

        # Unknown people are parked; parking survives a restart of the worker.
        assert late["activity_id"] not in marketo and never["activity_id"] not in marketo
        with Store(database_url) as store:
            assert parking.count(store.engine) == 2
        stop(stack.workers[0].proc)
        stack.workers.clear()
        stack.add_worker("activities", env)
        with Store(database_url) as store:
            store.apply_people([person_row(person_change(LATE, 1))], [])
        wait_until(lambda: late["activity_id"] in topics.marketo(), "parked activity routed")

        # A settings change applies to the running worker, without a restart.
        set_value(settings, "salesforce_log_calls", "false")
        time.sleep(2.0)
        second_call = activity("RECEIVED_SALES_CALL", CONTACT)
        topics.publish([second_call])
        stack.wait_drained("activities", SALES_ACTIVITIES, topics.ends, timeout_s=60)
        assert second_call["activity_id"] in topics.marketo()
        assert second_call["activity_id"] not in topics.salesforce()

        wait_until(
            lambda: any(h["error.class"] == "PersonUnknown" for h in topics.dead().values()),
            "person_unknown dead letter",
        )
        with Store(database_url) as store:
            assert parking.count(store.engine) == 0

    letters = topics.dead().values()
    classes = sorted(h["error.class"] for h in letters)
    assert classes == ["PersonNotSynced", "PersonUnknown", "RuleViolation", "UndecodableRecord"]
    unknown = next(h for h in letters if h["error.class"] == "PersonUnknown")
    assert unknown["error.message"].startswith("person_unknown")
    assert unknown["source.topic"] == SALES_ACTIVITIES
    not_synced = next(h for h in letters if h["error.class"] == "PersonNotSynced")
    assert not_synced["error.message"].startswith("person_not_synced")


def test_an_activity_breaking_the_contract_is_dead_lettered_and_the_next_one_routed(
    kafka: str, registry: str, tmp_path: Path, topics: Topics
) -> None:
    """No key, a date from the future, a 500,000-character subject (the contract's limit
    is 255, as for person fields): each dead-lettered with its reason; the good activity
    published after them is routed."""
    database_url = f"sqlite:///{tmp_path}/store.db"
    settings = Settings(
        kafka_bootstrap_servers=kafka,
        schema_registry_url=registry,
        database_url=database_url,
        group_prefix=f"t-{uuid.uuid4().hex[:8]}",
    )
    with Store(database_url) as store:
        store.migrate()
        store.apply_people(people(), [])
    encode = topics.publisher.serializer(SALES_ACTIVITIES, "SalesActivity")
    future = datetime.now(UTC) + timedelta(days=1, hours=1)  # the default skew is one day
    no_key = activity("SEND_SALES_EMAIL", CONTACT)
    from_the_future = sales_activity("SEND_SALES_EMAIL", CONTACT, occurred_at=future)
    long_subject = activity("SEND_SALES_EMAIL", CONTACT, email_subject="s" * 500_000)
    good = activity("SEND_SALES_EMAIL", CONTACT)
    topics.publish([], raw=[(None, encode(no_key))])
    topics.publish([from_the_future, long_subject, good])

    with Stack(settings) as stack:
        stack.add_worker("activities")
        stack.wait_drained("activities", SALES_ACTIVITIES, topics.ends, timeout_s=60)
        marketo = topics.marketo()

    assert good["activity_id"] in marketo
    assert not {a["activity_id"] for a in (no_key, from_the_future, long_subject)} & set(marketo)
    letters = list(topics.dead().values())
    assert [(h["error.class"], h["error.stage"]) for h in letters] == [
        ("RuleViolation", "rules")
    ] * 3
    messages = sorted(h["error.message"] for h in letters)
    assert messages[0].startswith("email_subject is 500000 characters, at most 255")
    assert messages[1].startswith("no key: the key must be the Marketo ID")
    assert messages[2].startswith(f"occurred_at {future.isoformat()[:19]}")
    assert all(h["source.topic"] == SALES_ACTIVITIES for h in letters)
