"""A broker that stops answering for 15 s (SIGSTOP, then SIGCONT) in the middle of a run
of each worker kind — the people worker, the activity router and the Salesforce sink, with
dead letters and outbound records in flight — stops no worker and loses nothing (issue
10, item 4), on Tansu and on Apache Kafka."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from actions_sync.kafka import Ends, dlq_topic, read_topic, written
from actions_sync.publish import Publisher
from actions_sync.serialization import Deserializer, RegistryClient
from actions_sync.store import Store
from actions_sync.topics import (
    OUTBOUND_MARKETO_ACTIVITIES,
    OUTBOUND_SALESFORCE_TASKS,
    PERSON_CHANGES,
    SALES_ACTIVITIES,
)
from app.stack import Stack, http_client
from streams.rules.people import person_row
from tests.factories import T0, person_change, sales_activity
from tests.support.processes import pause
from tests.support.stacks import stack_settings
from tests.support.vendors import salesforce_tasks

pytestmark = pytest.mark.slow

PAUSE_S = 15.0
WAVE_S = 0.2  # the feed publishes one wave of every kind of record this often
BROKEN = 800_099  # a person whose Salesforce Contact does not exist: its Tasks are refused
LATER = T0 + timedelta(hours=1)
OUTBOUND = (OUTBOUND_MARKETO_ACTIVITIES, OUTBOUND_SALESFORCE_TASKS)


class Feed(threading.Thread):
    """Publishes waves of person changes, activities and bad records of both until
    stopped; what each is expected to become is kept by kind."""

    def __init__(self, bootstrap: str, registry: RegistryClient, people: list[int]) -> None:
        super().__init__(name="feed", daemon=True)
        self.publisher = Publisher(bootstrap, registry)
        self.people = people  # stored people the activities are about
        self.stopping = threading.Event()
        self.changed: list[int] = []  # Marketo IDs of person changes: stored
        self.bad_people: set[bytes] = set()  # keys of undecodable person records: DLQ
        self.tasks: list[str] = []  # activity ids with a Task: routed, in Salesforce once
        self.refused: list[str] = []  # activity ids of BROKEN: routed, Task on the DLQ
        self.wrong_keys: set[bytes] = set()  # activities with a wrong key: DLQ

    def run(self) -> None:
        wave = 0
        while not self.stopping.wait(WAVE_S):
            self.wave(wave)
            wave += 1

    def wave(self, n: int) -> None:
        ids = [100_000 + n * 10 + i for i in range(10)]
        self.publisher.publish(
            PERSON_CHANGES, "PersonChange", [(str(i), person_change(i, 1)) for i in ids]
        )
        self.changed += ids
        self.bad_people.add(f"bad-{n}".encode())
        self.publisher.publish_raw(PERSON_CHANGES, [(f"bad-{n}".encode(), b"not avro")])
        good = [
            sales_activity(marketo_id=self.people[(n + i) % len(self.people)], occurred_at=LATER)
            for i in range(3)
        ]
        refused = [sales_activity(marketo_id=BROKEN, occurred_at=LATER)] if n % 3 == 0 else []
        self.tasks += [a["activity_id"] for a in good]
        self.refused += [a["activity_id"] for a in refused]
        self.publisher.publish(
            SALES_ACTIVITIES, "SalesActivity", [(str(a["marketo_id"]), a) for a in good + refused]
        )
        if n % 4 == 0:
            self.wrong_keys.add(f"wrong-{n}".encode())
            self.publisher.publish(
                SALES_ACTIVITIES,
                "SalesActivity",
                [(f"wrong-{n}", sales_activity(marketo_id=self.people[0], occurred_at=LATER))],
            )

    def finish(self) -> Ends:
        self.stopping.set()
        self.join()
        self.publisher.flush()
        return self.publisher.ends


def dlq_keys(kafka: str, topic: str) -> Counter[bytes]:
    return Counter(m.key() for m in read_topic(kafka, dlq_topic(topic), idle_s=0.5))


def activity_ids(kafka: str, registry: RegistryClient) -> set[str]:
    decode = Deserializer(registry, "MarketoActivityOut")
    return {
        decode(m.value())["activity_id"]
        for m in read_topic(kafka, OUTBOUND_MARKETO_ACTIVITIES, idle_s=0.5)
    }


def salesforce_contacts(url: str) -> list[dict[str, Any]]:
    return list(http_client().get(f"{url}/_sandbox/salesforce/records/Contact", timeout=10).json())


def latency(url: str, ms: float) -> None:
    http_client().post(
        f"{url}/_sandbox/faults", json={"latency_ms": ms}, timeout=10
    ).raise_for_status()


def wait_for(predicate: Any, what: str, stack: Stack, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        stack.check_workers()
        assert time.monotonic() < deadline, f"{what} not within {timeout_s:.0f}s"
        time.sleep(0.3)


def test_a_broker_paused_15s_mid_run_stops_no_worker_and_every_effect_is_there_once(
    kafka: str, registry: str, tmp_path: Path
) -> None:
    settings = stack_settings(
        kafka, registry, tmp_path, (PERSON_CHANGES, SALES_ACTIVITIES, *OUTBOUND)
    )
    client = RegistryClient(registry)
    with Stack(settings) as stack:
        salesforce = stack.sandbox("salesforce", "--seed-people", "10")
        who = [c["Id"] for c in salesforce_contacts(salesforce)]
        people = list(range(800_001, 800_001 + len(who)))
        with Store(settings.database_url) as store:
            store.migrate()
            store.apply_people(
                [
                    person_row(person_change(m, 1, sfdc_contact_id=c))
                    for m, c in zip(people, who, strict=True)
                ]
                + [person_row(person_change(BROKEN, 1, sfdc_contact_id="003000000000009999"))],
                [],
            )
        for name, env in (
            ("people", {}),
            ("activities", {}),
            ("salesforce-sink", {"ACTIONS_SYNC_SALESFORCE_URL": salesforce}),
        ):
            stack.add_worker(name, env)
        feed = Feed(kafka, client, people)
        feed.start()
        try:  # mid-run: every worker has handled records and more keep coming
            wait_for(
                lambda: salesforce_tasks(salesforce) and dlq_keys(kafka, OUTBOUND_SALESFORCE_TASKS),
                "the first Tasks and dead letters",
                stack,
            )
            # Calls slowed down: the sink's batch in flight ends while the broker is away,
            # and its dead letters (Tasks to BROKEN) wait for it.
            latency(salesforce, 3000)
            time.sleep(1.0)
            pause(kafka, PAUSE_S)
            latency(salesforce, 0)
            time.sleep(1.0)  # records published while the broker was away, and after
        finally:
            ends = feed.finish()
        stack.wait_drained("people", PERSON_CHANGES, ends, timeout_s=120)
        stack.wait_drained("activities", SALES_ACTIVITIES, ends, timeout_s=120)
        stack.wait_drained(
            "salesforce-sink",
            OUTBOUND_SALESFORCE_TASKS,
            written(kafka, [OUTBOUND_SALESFORCE_TASKS]),
            timeout_s=120,
        )
        stack.check_workers()  # all three still running
        tasks = Counter(t["ActionsSync_Id__c"] for t in salesforce_tasks(salesforce))

    with Store(settings.database_url) as store:
        assert [m for m in feed.changed if store.person(m) is None] == []
    assert set(dlq_keys(kafka, PERSON_CHANGES)) == feed.bad_people
    assert set(dlq_keys(kafka, SALES_ACTIVITIES)) == feed.wrong_keys
    assert activity_ids(kafka, client) == set(feed.tasks) | set(feed.refused)
    assert tasks == Counter(feed.tasks)  # each Task once, none of the refused ones
    assert set(dlq_keys(kafka, OUTBOUND_SALESFORCE_TASKS)) == {i.encode() for i in feed.refused}
    client.close()
