"""SPEC S11 end to end through the real Salesforce source: the source, the reminder agent
and the Task sink as real processes, a real broker, a SQLite store and the Salesforce
sandbox over HTTP, its clock moved by its control route for what happened days ago.

First enable: a person's Task of 23 hours ago is imported, one of 25 hours ago is not,
and an Actions task from before the enable is not pushed. Off then on: a person's edit
made while `reminder_task_sync` is off reaches Actions once it is on again.

Deletes through `sobjects/Task/deleted`:
A Task deleted in Salesforce and then purged from the recycle bin is seen by no query
(`queryAll` included): only the deletion feed reports it. The source is stopped while it
happens, and its deletion checkpoint is put back to when it stopped (14 or 16 days ago,
as if it had been down that long); the org's clock is moved back for the deletion itself
(its `deletedDate` is then that old). A deletion 14 days old is read and deletes the task
in Actions; one 16 days old is beyond the recycle bin's 15 days: the window is refused
(INVALID_REPLICATION_DATE), logged and counted, and the task is left as it is.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from actions_sync.admin import set_value
from actions_sync.publish import Publisher
from actions_sync.serialization import RegistryClient
from actions_sync.store import Store
from actions_sync.store import reminder_tasks as table
from actions_sync.topics import OUTBOUND_SALESFORCE_TASKS, REMINDER_TASKS, SALESFORCE_TASKS
from app.stack import Stack, Worker, http_client, scrape_sum
from connectors.salesforce.tasks import task_stream
from sandboxes.population import generate
from streams.rules.people import person_row
from tests.factories import person_change
from tests.support.checks import present
from tests.support.stacks import stack_settings

pytestmark = pytest.mark.slow
POPULATION = {p["marketo_id"]: p for p in generate(10, 7)}
TOPICS = (REMINDER_TASKS, SALESFORCE_TASKS, OUTBOUND_SALESFORCE_TASKS)
ENV = {
    "ACTIONS_SYNC_SALESFORCE_POLL_INTERVAL_S": "0.2",
    "ACTIONS_SYNC_REMINDERS_RETRY_S": "0.5",
    "ACTIONS_SYNC_SALESFORCE_DELETED_EVERY_S": "0.5",
}
DELETED_CHECKPOINT = f"{task_stream().name}.deleted"
DAY = 86400.0


@pytest.fixture
def stack(kafka: str, registry: str, tmp_path: Path) -> Iterator[Stack]:
    settings = stack_settings(kafka, registry, tmp_path, TOPICS)
    with Store(settings.database_url) as store:
        store.migrate()
        p = POPULATION[1]
        store.apply_people(
            [
                person_row(
                    person_change(
                        1, 0, sfdc_lead_id=p["sfdc_lead_id"], sfdc_contact_id=p["sfdc_contact_id"]
                    )
                )
            ],
            [],
        )
    with Stack(settings, logdir=tmp_path) as running:
        running.salesforce_url = running.sandbox("salesforce", "--seed-people", "10")
        set_value(settings, "unsubscribe_sync", "false")
        for name in ("salesforce-source", "reminders", "salesforce-sink"):
            running.add_worker(name, ENV)
        yield running


def eventually(check: Callable[[], Any], what: str, timeout_s: float = 180.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (found := check()):
        assert time.monotonic() < deadline, f"{what} not within {timeout_s:.0f}s"
        time.sleep(0.25)
    return found


def sandbox(stack: Stack, method: str, path: str, **body: Any) -> Any:
    answer = httpx.request(
        method, f"{stack.salesforce_url}/_sandbox/salesforce/{path}", json=body or None
    )
    answer.raise_for_status()
    return answer.json()


def enable(stack: Stack, on: bool = True) -> None:
    set_value(stack.settings, "reminder_task_sync", "true" if on else "false")


def made_ago(stack: Stack, hours: float, **fields: Any) -> dict[str, Any]:
    """A person's Task, created `hours` ago (the org's clock moved back for it)."""
    sandbox(stack, "POST", "clock", advance_s=-hours * 3600)
    try:
        return dict(sandbox(stack, "POST", "records/Task", fields=fields))
    finally:
        sandbox(stack, "POST", "clock", advance_s=hours * 3600)


def from_actions(stack: Stack, task_id: str, at: datetime | None = None) -> None:
    registry = RegistryClient(stack.registry_url)
    try:
        publisher = Publisher(stack.bootstrap, registry)
        publisher.publish(
            REMINDER_TASKS,
            "ReminderTask",
            [
                (
                    task_id,
                    {
                        "task_id": task_id,
                        "marketo_id": 1,
                        "subject": f"Call {task_id}",
                        "status": "OPEN",
                        "priority": "NORMAL",
                        "due_date": date(2026, 12, 24),
                        "details": None,
                        "deleted": False,
                        "changed_at": at or datetime.now(UTC),
                    },
                )
            ],
        )
        publisher.flush()
    finally:
        registry.close()


def stored(stack: Stack, task_id: str) -> dict[str, Any] | None:
    with Store(stack.settings.database_url) as store:
        return table.load(store.engine, [task_id]).get(task_id)


def task_id_of(stack: Stack, task_id: str) -> str | None:
    row = stored(stack, task_id)
    return row["sfdc_task_id"] if row else None


def sample(url: str, name: str, **labels: str) -> float:
    """One sample of a worker's /metrics."""
    for family in text_string_to_metric_families(http_client().get(url, timeout=10).text):
        for found in family.samples:
            if found.name == name and found.labels == labels:
                return float(found.value)
    raise AssertionError(f"{name}{labels} not exported")


def source(stack: Stack) -> Worker:
    return next(w for w in stack.workers if w.name == "salesforce-source" and w.proc.poll() is None)


def deleted_while_the_source_was_down(stack: Stack, sfdc_id: str, days: float) -> None:
    """Stop the source; a person deletes the Task `days` ago and the recycle bin is
    emptied; the source's deletion checkpoint is put back to before it; start it again."""
    worker = source(stack)
    worker.proc.send_signal(signal.SIGTERM)
    worker.proc.wait(timeout=60)
    sandbox(stack, "POST", "clock", advance_s=-days * DAY)
    try:
        sandbox(stack, "DELETE", f"records/Task/{sfdc_id}")
    finally:
        sandbox(stack, "POST", "clock", advance_s=days * DAY)
    assert sandbox(stack, "POST", "recycle-bin/empty")["purged"] == 1
    assert not [
        r for r in sandbox(stack, "GET", "records/Task?include_deleted=true") if r["Id"] == sfdc_id
    ]  # no query shows it any more
    with Store(stack.settings.database_url) as store:
        down_since = datetime.now(UTC) - timedelta(days=days, hours=1)
        store.save_checkpoint(DELETED_CHECKPOINT, {"through": down_since.isoformat()})
    stack.add_worker("salesforce-source", ENV)


def test_a_hard_delete_reaches_actions_through_the_deleted_feed_within_15_days(
    stack: Stack,
) -> None:
    enable(stack)
    for task_id in ("d14", "d16"):
        from_actions(stack, task_id)
    ids = {
        t: eventually(partial(task_id_of, stack, t), f"{t}'s Task id in the store")
        for t in ("d14", "d16")
    }

    deleted_while_the_source_was_down(stack, ids["d14"], days=14)
    eventually(lambda: present(stored(stack, "d14"))["deleted"], "the 14-day-old delete in Actions")
    reminders = next(w for w in stack.workers if w.name == "reminders")
    assert (
        sample(
            reminders.metrics_url,
            "actions_sync_reminder_tasks_synced_total",
            direction="to_actions",
            outcome="deleted",
        )
        == 1
    )

    deleted_while_the_source_was_down(stack, ids["d16"], days=16)
    log = source(stack).log
    eventually(lambda: "INVALID_REPLICATION_DATE" in log.read_text(), "the gap, logged")
    gaps = scrape_sum([source(stack).metrics_url], "actions_sync_salesforce_deletion_gaps_total")
    assert gaps == 1  # counted once: reading goes on from now
    time.sleep(2.0)  # a few more polls of the feed
    assert present(stored(stack, "d16"))["deleted"] is False  # reported, not guessed
    assert (
        scrape_sum([source(stack).metrics_url], "actions_sync_salesforce_deletion_gaps_total") == 1
    )


def test_first_enable_imports_a_task_of_23_hours_not_25_and_pushes_no_existing_task(
    stack: Stack,
) -> None:
    lead = POPULATION[1]["sfdc_lead_id"]
    recent = made_ago(stack, 23, Subject="23 h", WhoId=lead, Priority="High")
    stale = made_ago(stack, 25, Subject="25 h", WhoId=lead)
    from_actions(stack, "before", at=datetime.now(UTC) - timedelta(minutes=5))
    eventually(lambda: stored(stack, "before"), "the Actions task, stored while off")

    enable(stack)  # the first enable
    mine = eventually(lambda: stored(stack, f"sf-{recent['Id']}"), "the 23-hour-old Task")
    assert (mine["subject"], mine["priority"], mine["marketo_id"]) == ("23 h", "HIGH", 1)
    time.sleep(3.0)  # more polls, catch-ups
    assert stored(stack, f"sf-{stale['Id']}") is None
    assert not [
        r for r in sandbox(stack, "GET", "records/Task") if r.get("ActionsSync_Id__c") == "before"
    ]


def test_a_salesforce_edit_made_while_off_reaches_actions_once_on_again(stack: Stack) -> None:
    enable(stack)
    from_actions(stack, "c1")
    sfdc_id = eventually(
        lambda: (s := stored(stack, "c1")) and s["sfdc_task_id"], "the Task id in the store"
    )

    enable(stack, on=False)
    time.sleep(2.0)  # the workers' live settings
    sandbox(
        stack,
        "PATCH",
        f"records/Task/{sfdc_id}",
        fields={"Status": "Completed", "Description": "done while off"},
    )
    time.sleep(3.0)
    assert present(stored(stack, "c1"))["status"] == "OPEN"  # nothing flows while off

    enable(stack)
    done = eventually(
        lambda: (s := stored(stack, "c1")) and s["status"] == "COMPLETE" and s,
        "the edit, caught up",
    )
    assert done["details"] == "done while off"
