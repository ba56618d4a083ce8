"""SPEC S11 end to end: the reminder agent and the Salesforce Task sink as real worker
processes, on a real broker (Tansu, or Apache Kafka when KAFKA_BOOTSTRAP_SERVERS is set),
a real SQLite store and the Salesforce sandbox over real HTTP.

Salesforce changes are made in the sandbox as a person (not the integration user); the
test then publishes the `SalesforceTask` record the Salesforce source would (the source's
Task stream is tested on its own). People are written to the store as the people agent
would (`person_row`).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest

from actions_sync.admin import set_value
from actions_sync.kafka import read_topic
from actions_sync.publish import Publisher
from actions_sync.serialization import RegistryClient
from actions_sync.store import Store
from actions_sync.store import reminder_tasks as table
from actions_sync.topics import (
    OUTBOUND_SALESFORCE_TASKS,
    REMINDER_TASKS,
    SALESFORCE_TASKS,
)
from app.stack import Stack
from sandboxes.population import generate
from streams.rules.people import person_row
from tests.factories import person_change
from tests.support.checks import present
from tests.support.stacks import stack_settings

pytestmark = pytest.mark.slow

TOPICS = (REMINDER_TASKS, SALESFORCE_TASKS, OUTBOUND_SALESFORCE_TASKS)
POPULATION = {p["marketo_id"]: p for p in generate(10, 7)}
LEAD = {m: p["sfdc_lead_id"] for m, p in POPULATION.items()}
CONTACT = {m: p["sfdc_contact_id"] for m, p in POPULATION.items()}  # 1: Lead and Contact
HUMAN = "0050000000000HUMAN"


@pytest.fixture
def stack(kafka: str, registry: str, tmp_path: Path) -> Iterator[Stack]:
    settings = stack_settings(kafka, registry, tmp_path, TOPICS)
    with Store(settings.database_url) as store:
        store.migrate()
        store.apply_people(
            [
                person_row(person_change(m, 0, sfdc_lead_id=LEAD[m], sfdc_contact_id=CONTACT[m]))
                for m in (1, 2, 3)
            ],
            [],
        )
    with Stack(settings, logdir=tmp_path) as running:
        running.salesforce_url = running.sandbox("salesforce", "--seed-people", "10")
        yield running


def start(stack: Stack, sync: bool = True) -> None:
    if sync:
        set_value(stack.settings, "reminder_task_sync", "true")
    for name in ("reminders", "salesforce-sink"):
        stack.add_worker(name, {"ACTIONS_SYNC_REMINDERS_RETRY_S": "0.5"})


def reminder(
    task_id: str, marketo_id: int = 1, at: datetime | None = None, **fields: Any
) -> dict[str, Any]:
    return {
        "task_id": task_id,
        "marketo_id": marketo_id,
        "subject": "Call Ada",
        "status": "OPEN",
        "priority": "NORMAL",
        "due_date": date(2026, 12, 24),
        "details": "about the engine",
        "deleted": False,
        "changed_at": at or datetime.now(UTC),
    } | fields


def publish(stack: Stack, topic: str, record: str, items: list[tuple[str, dict[str, Any]]]) -> None:
    registry = RegistryClient(stack.registry_url)
    try:
        publisher = Publisher(stack.bootstrap, registry)
        publisher.publish(topic, record, items)
        publisher.flush()
    finally:
        registry.close()


def from_actions(stack: Stack, *tasks: dict[str, Any]) -> None:
    publish(stack, REMINDER_TASKS, "ReminderTask", [(t["task_id"], t) for t in tasks])


def sandbox(stack: Stack, method: str, path: str, **body: Any) -> Any:
    answer = httpx.request(
        method, f"{stack.salesforce_url}/_sandbox/salesforce/{path}", json=body or None
    )
    answer.raise_for_status()
    return answer.json()


def sf_task(stack: Stack, external_id: str) -> dict[str, Any] | None:
    rows = sandbox(stack, "GET", "records/Task")
    return next((r for r in rows if r.get("ActionsSync_Id__c") == external_id), None)


def as_source(
    stack: Stack, row: dict[str, Any], at: datetime | None = None, deleted: bool = False
) -> None:
    """Publish the `SalesforceTask` the Salesforce source would for the sandbox's row."""
    due = row.get("ActivityDate")
    publish(
        stack,
        SALESFORCE_TASKS,
        "SalesforceTask",
        [
            (
                row["Id"],
                {
                    "event_id": str(uuid.uuid4()),
                    "sfdc_id": row["Id"],
                    "external_id": row.get("ActionsSync_Id__c"),
                    "subject": row.get("Subject"),
                    "status": row.get("Status"),
                    "priority": row.get("Priority"),
                    "activity_date": date.fromisoformat(due[:10]) if due else None,
                    "description": row.get("Description"),
                    "who_id": row.get("WhoId"),
                    "what_id": row.get("WhatId"),
                    "is_deleted": deleted,
                    "created_date": None,
                    "system_modstamp": at or datetime.now(UTC),
                    "last_modified_by_id": HUMAN,
                },
            )
        ],
    )


def person_edits(stack: Stack, sfdc_id: str, **fields: Any) -> dict[str, Any]:
    return dict(sandbox(stack, "PATCH", f"records/Task/{sfdc_id}", fields=fields))


def stored(stack: Stack, task_id: str) -> dict[str, Any] | None:
    with Store(stack.settings.database_url) as store:
        return table.load(store.engine, [task_id]).get(task_id)


def eventually(check: Callable[[], Any], what: str, timeout_s: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (found := check()):
        assert time.monotonic() < deadline, f"{what} not within {timeout_s:.0f}s"
        time.sleep(0.25)
    return found


def writes(stack: Stack) -> int:
    return len(read_topic(stack.bootstrap, OUTBOUND_SALESFORCE_TASKS, idle_s=0.5))


# -- Actions -> Salesforce ---------------------------------------------------------------


def test_an_actions_task_is_created_edited_completed_and_deleted_in_salesforce(
    stack: Stack,
) -> None:
    start(stack)
    from_actions(stack, reminder("t1", priority="HIGH"))
    row = eventually(lambda: sf_task(stack, "t1"), "the Task in Salesforce")
    assert (
        row["Subject"],
        row["Status"],
        row["Priority"],
        row["ActivityDate"][:10],
        row["Description"],
        row["WhoId"],
    ) == ("Call Ada", "Not Started", "High", "2026-12-24", "about the engine", CONTACT[1])

    from_actions(
        stack,
        reminder("t1", priority="HIGH", status="COMPLETE", details="done", subject="Called Ada"),
    )
    row = eventually(lambda: (r := sf_task(stack, "t1")) and r["IsClosed"] and r, "the completion")
    assert (row["Status"], row["Description"], row["Subject"]) == (
        "Completed",
        "done",
        "Called Ada",
    )

    from_actions(stack, reminder("t1", deleted=True))
    eventually(lambda: sf_task(stack, "t1") is None, "the delete")
    assert present(stored(stack, "t1"))["deleted"] is True


def test_a_lead_only_person_gets_the_lead_as_who(stack: Stack) -> None:
    start(stack)
    lead_only = next(m for m in (1, 2, 3) if not CONTACT[m])
    from_actions(stack, reminder("t2", marketo_id=lead_only))
    row = eventually(lambda: sf_task(stack, "t2"), "the Task")
    assert row["WhoId"] == LEAD[lead_only]


# -- Salesforce -> Actions ---------------------------------------------------------------


def test_salesforce_edits_reach_actions_and_what_does_not_sync_stays(stack: Stack) -> None:
    start(stack)
    from_actions(stack, reminder("t3"))
    row = eventually(lambda: sf_task(stack, "t3"), "the Task")
    before = writes(stack)

    row = person_edits(
        stack,
        row["Id"],
        Status="Completed",
        Description="from Salesforce",
        Subject="renamed in Salesforce",
        ActivityDate="2027-01-02",
    )
    as_source(stack, row)
    done = eventually(
        lambda: (s := stored(stack, "t3")) and s["status"] == "COMPLETE" and s,
        "the completion in Actions",
    )
    assert (done["details"], done["subject"], done["due_date"]) == (
        "from Salesforce",
        "Call Ada",
        date(2027, 1, 2),
    )

    row = person_edits(
        stack, row["Id"], Status="Deferred", Priority="Low", Description="still syncs"
    )
    as_source(stack, row)
    done = eventually(
        lambda: (s := stored(stack, "t3")) and s["details"] == "still syncs" and s,
        "the description beside Low and Deferred",
    )
    assert (done["status"], done["priority"]) == ("COMPLETE", "NORMAL")
    time.sleep(1.0)
    assert writes(stack) == before  # nothing went back to Salesforce


def test_a_salesforce_delete_deletes_in_actions_within_15_days_only(stack: Stack) -> None:
    start(stack)
    now = datetime.now(UTC)
    for task_id in ("t4", "t5"):
        from_actions(stack, reminder(task_id))
    rows = {t: eventually(partial(sf_task, stack, t), t) for t in ("t4", "t5")}
    as_source(stack, rows["t4"], at=now - timedelta(days=14), deleted=True)
    as_source(stack, rows["t5"], at=now - timedelta(days=16), deleted=True)
    eventually(lambda: present(stored(stack, "t4"))["deleted"], "the 14-day-old delete")
    time.sleep(1.0)
    assert present(stored(stack, "t5"))["deleted"] is False  # reported, not guessed


def test_a_task_born_in_salesforce_is_imported_and_goes_back_by_its_id(stack: Stack) -> None:
    start(stack)
    row = sandbox(
        stack,
        "POST",
        "records/Task",
        fields={
            "Subject": "Follow up",
            "WhoId": LEAD[2],
            "Status": "Not Started",
            "Priority": "High",
        },
    )
    as_source(stack, row)
    task_id = f"sf-{row['Id']}"
    mine = eventually(lambda: stored(stack, task_id), "the import")
    assert (mine["marketo_id"], mine["subject"], mine["priority"]) == (2, "Follow up", "HIGH")

    from_actions(
        stack,
        reminder(
            task_id,
            marketo_id=2,
            subject="Follow up",
            priority="HIGH",
            status="COMPLETE",
            details=None,
            due_date=None,
        ),
    )
    back = eventually(
        lambda: (
            (r := sandbox(stack, "GET", f"records/Task/{row['Id']}"))
            and r["Status"] == "Completed"
            and r
        ),
        "the completion in Salesforce",
    )
    assert back["ActionsSync_Id__c"] == task_id
    assert (
        len([r for r in sandbox(stack, "GET", "records/Task") if r["Subject"] == "Follow up"]) == 1
    )  # updated, not duplicated


def test_the_syncs_own_write_coming_back_changes_nothing(stack: Stack) -> None:
    start(stack)
    from_actions(stack, reminder("t6", status="COMPLETE"))
    row = eventually(lambda: sf_task(stack, "t6"), "the Task")
    before = present(stored(stack, "t6"))
    as_source(stack, row)  # as if the echo filter had missed it
    time.sleep(2.0)
    after = present(stored(stack, "t6"))
    assert (after["status"], after["stamps"]) == ("COMPLETE", before["stamps"])


def test_conflicting_edits_the_newer_wins(stack: Stack) -> None:
    start(stack)
    t0 = datetime.now(UTC)
    from_actions(stack, reminder("t7", at=t0))
    row = eventually(lambda: sf_task(stack, "t7"), "the Task")
    edited = person_edits(stack, row["Id"], Description="Salesforce, older")
    from_actions(stack, reminder("t7", at=t0 + timedelta(seconds=30), details="Actions, newer"))
    eventually(
        lambda: (r := sf_task(stack, "t7")) and r["Description"] == "Actions, newer",
        "the newer Actions edit in Salesforce",
    )
    as_source(stack, edited, at=t0 + timedelta(seconds=10))
    time.sleep(2.0)
    assert present(stored(stack, "t7"))["details"] == "Actions, newer"


# -- settings, first enable --------------------------------------------------------------


def test_nothing_flows_while_off_and_turning_on_catches_up(stack: Stack) -> None:
    start(stack)
    set_value(stack.settings, "salesforce_log_reminder_tasks", "false")
    time.sleep(1.0)  # the workers' live settings
    from_actions(stack, reminder("t8"))
    eventually(lambda: stored(stack, "t8"), "the stored task")
    time.sleep(2.0)
    assert sf_task(stack, "t8") is None
    set_value(stack.settings, "salesforce_log_reminder_tasks", "true")
    row = eventually(lambda: sf_task(stack, "t8"), "the catch-up")
    assert row["Subject"] == "Call Ada"
    assert present(stored(stack, "t8"))["unpushed"] is False


def test_first_enable_imports_the_last_24_hours_and_pushes_no_existing_task(stack: Stack) -> None:
    earlier = datetime.now(UTC) - timedelta(minutes=5)
    start(stack)  # the first enable: now
    from_actions(stack, reminder("old", at=earlier))  # a task from before the enable
    now = datetime.now(UTC)
    recent = sandbox(stack, "POST", "records/Task", fields={"Subject": "23 h", "WhoId": LEAD[1]})
    stale = sandbox(stack, "POST", "records/Task", fields={"Subject": "25 h", "WhoId": LEAD[1]})
    as_source(stack, recent, at=now - timedelta(hours=23))
    as_source(stack, stale, at=now - timedelta(hours=25))
    eventually(lambda: stored(stack, f"sf-{recent['Id']}"), "the 23-hour-old task")
    eventually(lambda: stored(stack, "old"), "the existing Actions task, stored")
    time.sleep(2.0)
    assert stored(stack, f"sf-{stale['Id']}") is None
    assert sf_task(stack, "old") is None
