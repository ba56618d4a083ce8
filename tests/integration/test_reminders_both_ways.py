"""SPEC S11 both ways with every real piece as a process: the Salesforce source (its Task
stream), the reminder agent and the Task sink, on a real broker and SQLite store, against
the Salesforce sandbox process where a person edits Tasks (not the integration user).

- a Task a person creates, edits, completes and deletes in Salesforce follows in Actions;
- an Actions task is written to Salesforce by the sync, and that write never comes back:
  the source publishes nothing for it;
- first enable: a Task changed 23 hours before is imported, one 25 hours before is not.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
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
from actions_sync.topics import OUTBOUND_SALESFORCE_TASKS, REMINDER_TASKS, SALESFORCE_TASKS
from app.stack import Stack
from sandboxes.population import generate
from streams.rules.people import person_row
from tests.factories import person_change
from tests.support.checks import present
from tests.support.stacks import stack_settings

pytestmark = pytest.mark.slow
POPULATION = {p["marketo_id"]: p for p in generate(10, 7)}
LEAD = {m: p["sfdc_lead_id"] for m, p in POPULATION.items()}
CONTACT = {m: p["sfdc_contact_id"] for m, p in POPULATION.items()}
TOPICS = (REMINDER_TASKS, SALESFORCE_TASKS, OUTBOUND_SALESFORCE_TASKS)


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


def start(stack: Stack) -> None:
    set_value(stack.settings, "unsubscribe_sync", "false")
    set_value(stack.settings, "reminder_task_sync", "true")
    env = {
        "ACTIONS_SYNC_SALESFORCE_POLL_INTERVAL_S": "0.2",
        "ACTIONS_SYNC_REMINDERS_RETRY_S": "0.5",
    }
    for name in ("salesforce-source", "reminders", "salesforce-sink"):
        stack.add_worker(name, env)


def sandbox(stack: Stack, method: str, path: str, **body: Any) -> Any:
    answer = httpx.request(
        method, f"{stack.salesforce_url}/_sandbox/salesforce/{path}", json=body or None
    )
    answer.raise_for_status()
    return answer.json()


def stored(stack: Stack, task_id: str) -> dict[str, Any] | None:
    with Store(stack.settings.database_url) as store:
        return table.load(store.engine, [task_id]).get(task_id)


def published(stack: Stack) -> list[str]:
    return [m.key().decode() for m in read_topic(stack.bootstrap, SALESFORCE_TASKS, idle_s=0.5)]


def eventually(check: Callable[[], Any], what: str, timeout_s: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (found := check()):
        assert time.monotonic() < deadline, f"{what} not within {timeout_s:.0f}s"
        time.sleep(0.25)
    return found


def test_a_persons_task_follows_in_actions_from_creation_to_deletion(stack: Stack) -> None:
    start(stack)
    time.sleep(2.0)  # the source's first poll: the enable is older than the Task
    row = sandbox(
        stack,
        "POST",
        "records/Task",
        fields={
            "Subject": "Follow up",
            "WhoId": CONTACT[1],
            "Priority": "High",
            "ActivityDate": "2026-12-24",
        },
    )
    task_id = f"sf-{row['Id']}"
    mine = eventually(lambda: stored(stack, task_id), "the import")
    assert (mine["subject"], mine["priority"], mine["due_date"], mine["marketo_id"]) == (
        "Follow up",
        "HIGH",
        date(2026, 12, 24),
        1,
    )

    sandbox(stack, "PATCH", f"records/Task/{row['Id']}", fields={"Description": "notes"})
    eventually(lambda: present(stored(stack, task_id))["details"] == "notes", "the edit")
    sandbox(stack, "PATCH", f"records/Task/{row['Id']}", fields={"Status": "Completed"})
    eventually(lambda: present(stored(stack, task_id))["status"] == "COMPLETE", "the completion")
    sandbox(stack, "DELETE", f"records/Task/{row['Id']}")
    eventually(lambda: present(stored(stack, task_id))["deleted"], "the deletion")


def test_the_syncs_writes_never_come_back_from_the_source(stack: Stack) -> None:
    start(stack)
    registry = RegistryClient(stack.registry_url)
    try:
        publisher = Publisher(stack.bootstrap, registry)
        publisher.publish(
            REMINDER_TASKS,
            "ReminderTask",
            [
                (
                    "t1",
                    {
                        "task_id": "t1",
                        "marketo_id": 1,
                        "subject": "Call Ada",
                        "status": "OPEN",
                        "priority": "NORMAL",
                        "due_date": None,
                        "details": None,
                        "deleted": False,
                        "changed_at": datetime.now(UTC),
                    },
                )
            ],
        )
        publisher.flush()
    finally:
        registry.close()
    rows = eventually(
        lambda: [
            r for r in sandbox(stack, "GET", "records/Task") if r.get("ActionsSync_Id__c") == "t1"
        ],
        "the sync's write",
    )
    marker = sandbox(stack, "POST", "records/Task", fields={"Subject": "marker", "WhoId": LEAD[2]})
    eventually(lambda: stored(stack, f"sf-{marker['Id']}"), "the marker after the write")
    assert rows[0]["Id"] not in published(stack)


def test_first_enable_imports_tasks_changed_in_the_last_24_hours(stack: Stack) -> None:
    recent = sandbox(stack, "POST", "records/Task", fields={"Subject": "23 h", "WhoId": LEAD[1]})
    stale = sandbox(stack, "POST", "records/Task", fields={"Subject": "25 h", "WhoId": LEAD[1]})
    sandbox(
        stack,
        "PATCH",
        f"records/Task/{recent['Id']}",
        fields={"Priority": "High"},
        late_by_s=23 * 3600,
    )
    sandbox(
        stack,
        "PATCH",
        f"records/Task/{stale['Id']}",
        fields={"Priority": "High"},
        late_by_s=25 * 3600,
    )
    start(stack)
    eventually(lambda: stored(stack, f"sf-{recent['Id']}"), "the 23-hour-old Task")
    time.sleep(2.0)
    assert stored(stack, f"sf-{stale['Id']}") is None
