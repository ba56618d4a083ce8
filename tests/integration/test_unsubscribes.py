"""SPEC S9 end to end: the unsubscribe agent and the opt-out sink as real worker processes,
on a real broker (Tansu, or Apache Kafka when KAFKA_BOOTSTRAP_SERVERS is set), a real store
and the Salesforce sandbox over real HTTP.

The Salesforce source is another worker (issue 12, item 1): here the test publishes the
`SalesforceOptOut` records it would, after making the change in the sandbox as a person.
People are written to the store as the people agent would (`person_row`). Each test runs
on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from actions_sync.admin import set_value
from actions_sync.kafka import dlq_topic, ensure_topics, read_topic, written
from actions_sync.publish import Publisher
from actions_sync.serialization import RegistryClient
from actions_sync.settings import Settings
from actions_sync.store import Store
from actions_sync.store.unsubscribes import (
    OptOutWrite,
    held_optouts,
    record_optout_writes,
    store_unsubscribes,
    unsubscribes,
    written_optouts,
)
from actions_sync.topics import (
    OUTBOUND_SALESFORCE_OPTOUTS,
    SALESFORCE_OPTOUTS,
    UNSUBSCRIBES,
    specs,
)
from app.stack import Stack, http_client
from sandboxes.population import generate
from streams.rules.people import person_row
from tests.factories import person_change

pytestmark = pytest.mark.slow

TOPICS = (UNSUBSCRIBES, SALESFORCE_OPTOUTS, OUTBOUND_SALESFORCE_OPTOUTS)
OPTED = "HasOptedOutOfEmail"
CUSTOM = "ActionsSync_Opt_Out__c"  # the sandbox org's custom opt-out checkbox
INTEGRATION_USER = "0050000000000INTEG"
T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
POPULATION = {p["marketo_id"]: p for p in generate(10, 7)}
# Person 1 has a Lead and a Contact, 2 a Lead only, 6 and 7 both (seed 7).
LEAD = {m: POPULATION[m]["sfdc_lead_id"] for m in POPULATION}
CONTACT = {m: POPULATION[m]["sfdc_contact_id"] for m in POPULATION}


@pytest.fixture
def stack(kafka: str, registry: str, database_url: str, tmp_path: Path) -> Iterator[Stack]:
    settings = Settings(
        kafka_bootstrap_servers=kafka,
        schema_registry_url=registry,
        database_url=database_url,
        group_prefix=f"t-{uuid.uuid4().hex[:8]}",
    )
    ensure_topics(kafka, specs(TOPICS, settings.partitions))
    with Store(settings.database_url) as store:
        store.migrate()
    with Stack(settings, logdir=tmp_path) as running:
        running.salesforce_url = running.sandbox("salesforce", "--seed-people", "10")
        yield running
        for worker in running.workers:
            worker.proc.terminate()


def start(stack: Stack) -> None:
    for name in ("unsubscribes", "salesforce-optout-sink"):
        stack.add_worker(name, {"ACTIONS_SYNC_UNSUBSCRIBES_RETRY_S": "0.5"})


def people(stack: Stack, *changes: dict[str, Any]) -> None:
    with Store(stack.settings.database_url) as store:
        store.apply_people([person_row(c) for c in changes], [])


def person(marketo_id: int, version: int = 0, **fields: Any) -> dict[str, Any]:
    p = POPULATION.get(marketo_id, {})
    return person_change(
        marketo_id,
        version,
        **{
            "sfdc_lead_id": p.get("sfdc_lead_id"),
            "sfdc_contact_id": p.get("sfdc_contact_id"),
            "email": f"person{marketo_id}@example.com",
            **fields,
        },
    )


def unsubscribe(marketo_id: int, n: int, source: str = "CLICKED_LINK") -> dict[str, Any]:
    return {
        "event_id": str(uuid.UUID(int=n)),
        "marketo_id": marketo_id,
        "email": f"person{marketo_id}@example.com",
        "occurred_at": T0 + timedelta(minutes=n),
        "source": source,
    }


def optout(sobject: str, sfdc_id: str, n: int, field: str = OPTED) -> dict[str, Any]:
    return {
        "event_id": str(uuid.UUID(int=1000 + n)),
        "sobject": sobject,
        "sfdc_id": sfdc_id,
        "email": None,
        "field": field,
        "system_modstamp": T0 + timedelta(minutes=n),
        "last_modified_by_id": "0050000000000HUMAN",
    }


def publish(
    stack: Stack, topic: str, record: str, items: list[tuple[str, dict[str, Any]]]
) -> dict[tuple[str, int], int]:
    registry = RegistryClient(stack.registry_url)
    try:
        publisher = Publisher(stack.bootstrap, registry)
        publisher.publish(topic, record, items)
        publisher.flush()
        return dict(publisher.ends)
    finally:
        registry.close()


def send_unsubscribes(stack: Stack, *items: dict[str, Any]) -> None:
    ends = publish(stack, UNSUBSCRIBES, "Unsubscribe", [(str(u["marketo_id"]), u) for u in items])
    stack.wait_drained("unsubscribes", UNSUBSCRIBES, ends, timeout_s=60)
    drain_sink(stack)


def send_optouts(stack: Stack, *items: dict[str, Any]) -> None:
    ends = publish(
        stack, SALESFORCE_OPTOUTS, "SalesforceOptOut", [(o["sfdc_id"], o) for o in items]
    )
    stack.wait_drained("unsubscribes", SALESFORCE_OPTOUTS, ends, timeout_s=60)


def drain_sink(stack: Stack) -> None:
    stack.wait_drained(
        "salesforce-optout-sink",
        OUTBOUND_SALESFORCE_OPTOUTS,
        written(stack.bootstrap, (OUTBOUND_SALESFORCE_OPTOUTS,)),
        timeout_s=60,
    )


def record(stack: Stack, sobject: str, sfdc_id: str) -> dict[str, Any]:
    answer = http_client().get(
        f"{stack.salesforce_url}/_sandbox/salesforce/records/{sobject}/{sfdc_id}", timeout=10
    )
    answer.raise_for_status()
    return dict(answer.json())


def as_a_person(stack: Stack, sobject: str, sfdc_id: str, **fields: Any) -> None:
    http_client().patch(
        f"{stack.salesforce_url}/_sandbox/salesforce/records/{sobject}/{sfdc_id}",
        json={"fields": fields},
        timeout=10,
    ).raise_for_status()


def rows(stack: Stack) -> dict[int, dict[str, Any]]:
    with Store(stack.settings.database_url) as store, store.engine.connect() as conn:
        return {r.marketo_id: dict(r._mapping) for r in conn.execute(select(unsubscribes))}


def eventually(check: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"{what} not within {timeout_s:.0f}s"
        time.sleep(0.25)


def test_an_actions_unsubscribe_opts_out_lead_and_contact_once(stack: Stack) -> None:
    people(stack, person(1), person(2), person(4, sfdc_lead_id=None))
    start(stack)
    send_unsubscribes(
        stack, unsubscribe(1, 1), unsubscribe(2, 2), unsubscribe(4, 4), unsubscribe(99, 5)
    )

    # S9: Lead and Contact of person 1, the Lead of person 2, written by the integration.
    for sobject, sfdc_id in (("Lead", LEAD[1]), ("Contact", CONTACT[1]), ("Lead", LEAD[2])):
        found = record(stack, sobject, sfdc_id)
        assert found[OPTED] is True, sfdc_id
        assert found["LastModifiedById"] == INTEGRATION_USER
        assert found[CUSTOM] is False
    assert record(stack, "Lead", LEAD[3])[OPTED] is False
    stored = rows(stack)
    assert {
        m: (r["source"], r["unsynced"], r["pushed_at"] is not None) for m, r in stored.items()
    } == {
        1: ("CLICKED_LINK", None, True),
        2: ("CLICKED_LINK", None, True),
        4: ("CLICKED_LINK", "no_salesforce_id", False),  # stored and counted, not failed
        99: ("CLICKED_LINK", "person_unknown", False),
    }
    with Store(stack.settings.database_url) as store:  # what the source's echo filter reads
        assert written_optouts(store.engine, OPTED, [LEAD[1], CONTACT[1], LEAD[2], LEAD[3]]) == {
            LEAD[1],
            CONTACT[1],
            LEAD[2],
        }

    # Setting true twice is one effect: the same unsubscribe again writes nothing; and
    # after a person re-subscribed in Salesforce, it does not overwrite their choice.
    modstamp = record(stack, "Contact", CONTACT[1])["SystemModstamp"]
    as_a_person(stack, "Lead", LEAD[1], **{OPTED: False})
    send_unsubscribes(stack, unsubscribe(1, 1))
    assert record(stack, "Contact", CONTACT[1])["SystemModstamp"] == modstamp
    assert record(stack, "Lead", LEAD[1])[OPTED] is False
    assert 1 in rows(stack)  # and the re-subscribe changed nothing in Actions

    # Person 4 gains a Lead id: the stored unsubscribe goes now (the catch-up).
    people(stack, person(4, 1, sfdc_lead_id=LEAD[4]))
    eventually(lambda: record(stack, "Lead", LEAD[4])[OPTED] is True, "Lead 4 opted out")
    eventually(lambda: rows(stack)[4]["unsynced"] is None, "person 4 marked pushed")
    for topic in TOPICS:
        assert not read_topic(stack.bootstrap, dlq_topic(topic), idle_s=0.5), topic


def test_a_custom_field_and_sync_off_then_on_catches_up_both_ways(stack: Stack) -> None:
    set_value(stack.settings, "unsubscribe_field", CUSTOM)
    set_value(stack.settings, "unsubscribe_sync", "false")
    people(stack, person(6), person(7))
    start(stack)
    send_unsubscribes(stack, unsubscribe(6, 1))
    as_a_person(stack, "Contact", CONTACT[7], **{CUSTOM: True})
    send_optouts(stack, optout("Contact", CONTACT[7], 2, CUSTOM))

    # Off: nothing pushed, nothing pulled; both kept.
    assert record(stack, "Contact", CONTACT[6])[CUSTOM] is False
    assert {m: r["unsynced"] for m, r in rows(stack).items()} == {6: "sync_off"}
    with Store(stack.settings.database_url) as store, store.engine.connect() as conn:
        assert [r.reason for r in conn.execute(select(held_optouts))] == ["sync_off"]

    set_value(stack.settings, "unsubscribe_sync", "true")
    eventually(lambda: record(stack, "Contact", CONTACT[6])[CUSTOM] is True, "Contact 6")
    eventually(lambda: 7 in rows(stack), "the Salesforce opt-out of person 7")
    drain_sink(stack)
    assert record(stack, "Lead", LEAD[6])[CUSTOM] is True
    assert record(stack, "Lead", LEAD[6])[OPTED] is False  # only the admin's field
    assert record(stack, "Contact", CONTACT[6])[OPTED] is False
    assert rows(stack)[7]["source"] == "SALESFORCE_SYNC"
    assert record(stack, "Lead", LEAD[7])[CUSTOM] is False  # not pushed back
    with Store(stack.settings.database_url) as store, store.engine.connect() as conn:
        assert not list(conn.execute(select(held_optouts)))


def test_salesforce_opt_outs_reach_actions_as_salesforce_sync(stack: Stack) -> None:
    # (15-character ids in the store: tests/integration/test_store.py.) Person 9 arrives
    # later.
    people(stack, person(1), person(2), person(3))
    start(stack)
    as_a_person(stack, "Contact", CONTACT[1], **{OPTED: True})
    as_a_person(stack, "Lead", LEAD[2], **{OPTED: True})
    bad = optout("Lead", "not-an-id", 9)
    send_optouts(
        stack,
        optout("Contact", CONTACT[1], 1),
        optout("Lead", LEAD[2], 2),
        optout("Lead", LEAD[9], 3),
        bad,
    )

    stored = rows(stack)
    assert {m: (r["source"], r["sfdc_id"]) for m, r in stored.items()} == {
        1: ("SALESFORCE_SYNC", CONTACT[1]),
        2: ("SALESFORCE_SYNC", LEAD[2]),
    }
    at = stored[1]["occurred_at"]
    assert (at if at.tzinfo else at.replace(tzinfo=UTC)) == T0 + timedelta(minutes=1)
    letters = read_topic(stack.bootstrap, dlq_topic(SALESFORCE_OPTOUTS), idle_s=1.0)
    assert len(letters) == 1
    assert dict(letters[0].headers())["error.class"] == b"RuleViolation"

    # The opt-out of a record nobody in the store has waits for its person.
    people(stack, person(9))
    eventually(lambda: 9 in rows(stack), "person 9's held opt-out applied")

    # A re-subscribe in Salesforce never arrives (the source drops it): nothing changes,
    # and nothing was pushed back to the Lead of person 1.
    as_a_person(stack, "Contact", CONTACT[1], **{OPTED: False})
    assert rows(stack)[1]["source"] == "SALESFORCE_SYNC"
    assert record(stack, "Lead", LEAD[1])[OPTED] is False
    assert not read_topic(stack.bootstrap, OUTBOUND_SALESFORCE_OPTOUTS, idle_s=0.5)


def reconcile(stack: Stack, *args: str) -> list[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACTIONS_SYNC_")}
    done = subprocess.run(
        [sys.executable, "-m", "app", "reconcile", "unsubscribes", *args],
        env={
            **env,
            "DATABASE_URL": stack.settings.database_url,
            "ACTIONS_SYNC_SALESFORCE_URL": str(stack.salesforce_url),
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_reconciliation_fixes_drift_both_ways_and_resumes(stack: Stack) -> None:
    # Pages of 2 rows: the walk follows nextRecordsUrl.
    stack.salesforce_url = stack.sandbox(
        "salesforce", "--seed-people", "10", "--set", "query_page_size=2"
    )
    people(stack, *(person(m) for m in (1, 2, 3, 4, 5, 6, 7)))
    with Store(stack.settings.database_url) as store:
        store_unsubscribes(
            store.engine,
            [
                {
                    "marketo_id": 2,
                    "source": "CLICKED_LINK",
                    "occurred_at": T0,
                    "event_id": "e2",
                    "email": "person2@example.com",
                    "pushed_at": T0,
                },  # its write was lost
                {"marketo_id": 5, "source": "BOUNCE", "occurred_at": T0, "event_id": "e5"},
                {"marketo_id": 6, "source": "MANUAL", "occurred_at": T0, "event_id": "e6"},
                {"marketo_id": 3, "source": "SALESFORCE_SYNC", "occurred_at": T0, "event_id": "e3"},
            ],
        )
        # The sync once wrote Lead 6, and a person unchecked it since: a re-subscribe.
        record_optout_writes(store.engine, [OptOutWrite(LEAD[6], OPTED, "Lead", 6, T0, T0)])
    for sobject, sfdc_id in (
        ("Lead", LEAD[1]),
        ("Contact", CONTACT[7]),
        ("Lead", LEAD[9]),
        ("Lead", LEAD[4]),
        ("Lead", LEAD[5]),
    ):
        as_a_person(stack, sobject, sfdc_id, **{OPTED: True})
    before = {m: r["source"] for m, r in rows(stack).items()}

    lines = reconcile(stack, "--dry-run")
    assert sorted(lines[:-1]) == sorted(
        [
            f"would store: person 1 <- Lead {LEAD[1]} {OPTED}",
            f"would store: person 4 <- Lead {LEAD[4]} {OPTED}",
            f"would store: person 7 <- Contact {CONTACT[7]} {OPTED}",
            f"would push: person 2 -> Lead {LEAD[2]} {OPTED}",
            f"would push: person 6 -> Contact {CONTACT[6]} {OPTED}",
        ]
    )  # 5: already true
    assert "1 held" in lines[-1]
    assert {m: r["source"] for m, r in rows(stack).items()} == before
    assert record(stack, "Lead", LEAD[2])[OPTED] is False

    # A run that stopped after person 2 resumes there: it pushes person 6 only.
    with Store(stack.settings.database_url) as store:
        store.save_checkpoint("reconcile-unsubscribes", {"phase": "actions", "after": 2})
    lines = reconcile(stack)
    assert lines == [
        f"pushed: person 6 -> Contact {CONTACT[6]} {OPTED}",
        "unsubscribe reconciliation resumed: 0 stored from Salesforce, 1 pushed"
        " to Salesforce, 0 held (no person), 0 refused",
    ]
    assert record(stack, "Contact", CONTACT[6])[OPTED] is True
    assert record(stack, "Lead", LEAD[6])[OPTED] is False  # never over a re-subscribe

    lines = reconcile(stack)  # a fresh run: the rest
    assert sorted(lines[:-1]) == sorted(
        [
            f"stored: person 1 <- Lead {LEAD[1]} {OPTED}",
            f"stored: person 4 <- Lead {LEAD[4]} {OPTED}",
            f"stored: person 7 <- Contact {CONTACT[7]} {OPTED}",
            f"pushed: person 2 -> Lead {LEAD[2]} {OPTED}",
        ]
    )
    assert record(stack, "Lead", LEAD[2])[OPTED] is True
    assert record(stack, "Lead", LEAD[3])[OPTED] is False  # SALESFORCE_SYNC: not pushed
    stored = rows(stack)
    assert {m: stored[m]["source"] for m in (1, 4, 7)} == {m: "SALESFORCE_SYNC" for m in (1, 4, 7)}
    with Store(stack.settings.database_url) as store, store.engine.connect() as conn:
        assert [r.sfdc_id for r in conn.execute(select(held_optouts))] == [LEAD[9]]

    assert reconcile(stack) == [
        "unsubscribe reconciliation: 0 stored from Salesforce, 0 pushed"
        " to Salesforce, 1 held (no person), 0 refused"
    ]


def test_kill_9_of_the_agent_mid_stream_loses_nothing(stack: Stack) -> None:
    stack.salesforce_url = stack.sandbox("salesforce", "--seed-people", "300")
    population = list(generate(300, 7))
    people(
        stack,
        *(
            person_change(
                p["marketo_id"],
                0,
                sfdc_lead_id=p["sfdc_lead_id"],
                sfdc_contact_id=p["sfdc_contact_id"],
            )
            for p in population
        ),
    )
    # Ten unsubscribes a person, in batches of 20: a kill lands in the middle.
    items = [unsubscribe(n % 300 + 1, n + 1) for n in range(3000)]
    ends = publish(stack, UNSUBSCRIBES, "Unsubscribe", [(str(u["marketo_id"]), u) for u in items])
    env = {"ACTIONS_SYNC_UNSUBSCRIBES_RETRY_S": "0.5", "ACTIONS_SYNC_PEOPLE_BATCH_SIZE": "20"}
    stack.add_worker("salesforce-optout-sink")
    agent = stack.add_worker("unsubscribes", env)
    eventually(
        lambda: stack.progress("unsubscribes", UNSUBSCRIBES, ends)[0] > 0,
        "the agent's first batches",
        timeout_s=60,
    )
    done, total = stack.progress("unsubscribes", UNSUBSCRIBES, ends)
    agent.proc.kill()
    agent.proc.wait()
    stack.workers.remove(agent)
    assert done < total, "the agent finished before the kill"
    stack.add_worker("unsubscribes", env)
    stack.wait_drained("unsubscribes", UNSUBSCRIBES, ends, timeout_s=120)
    drain_sink(stack)

    assert all(r["pushed_at"] is not None for r in rows(stack).values())
    assert set(rows(stack)) == {p["marketo_id"] for p in population}
    leads = (
        http_client()
        .get(f"{stack.salesforce_url}/_sandbox/salesforce/records/Lead", timeout=30)
        .json()
    )
    contacts = (
        http_client()
        .get(f"{stack.salesforce_url}/_sandbox/salesforce/records/Contact", timeout=30)
        .json()
    )
    assert all(r[OPTED] is True for r in leads + contacts)
    assert len(leads) == 300 and contacts
    for topic in TOPICS:
        assert not read_topic(stack.bootstrap, dlq_topic(topic), idle_s=0.5), topic
