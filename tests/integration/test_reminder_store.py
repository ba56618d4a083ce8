"""The `reminder_tasks` table on SQLite and PostgreSQL: compare-and-set writes, lookups
by Salesforce id, the catch-up's page and the first enable."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import pytest

from actions_sync.admin.model import AdminSettings
from actions_sync.store import Store, admin_settings
from actions_sync.store import reminder_tasks as table

NOW = datetime(2026, 12, 2, 9, tzinfo=UTC)
SFDC = "00T000000000001AAA"


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    store = Store(database_url)
    store.migrate()
    yield store
    store.close()


def row(task_id: str, revision: int = 0, **fields: Any) -> dict[str, Any]:
    return {
        "task_id": task_id,
        "marketo_id": 1,
        "subject": "Call",
        "status": "OPEN",
        "priority": "NORMAL",
        "due_date": date(2026, 12, 24),
        "details": None,
        "deleted": False,
        "sfdc_task_id": None,
        "actions_version": NOW,
        "salesforce_version": None,
        "salesforce_synced": {"Status": "Not Started"},
        "stamps": {"status": [NOW.isoformat(), "ACTIONS"]},
        "written_at": None,
        "written": [],
        "unpushed": False,
        "revision": revision,
    } | fields


def test_a_write_from_a_stale_revision_loses_and_changes_nothing(store: Store) -> None:
    assert table.save(store.engine, [row("t1")], NOW) == set()
    assert table.save(store.engine, [row("t1", 1, status="COMPLETE")], NOW) == set()
    assert table.save(store.engine, [row("t1", 1, status="OPEN")], NOW) == {"t1"}
    assert table.save(store.engine, [row("t1")], NOW) == {"t1"}  # a second "new" one
    stored = table.load(store.engine, ["t1"])["t1"]
    assert (stored["status"], stored["revision"]) == ("COMPLETE", 2)
    assert stored["salesforce_synced"] == {"Status": "Not Started"}


def test_a_task_id_learnt_from_the_source_is_kept_and_a_resolution_without_it_loses(
    store: Store,
) -> None:
    table.save(store.engine, [row("t1")], NOW)
    assert table.synced(store.engine, ["t1"], [])["t1"]["Id"] is None
    assert table.record_task_ids(store.engine, {"t1": SFDC, "unknown": SFDC}, NOW) == 1
    assert table.record_task_ids(store.engine, {"t1": SFDC}, NOW) == 0  # known already
    assert table.save(store.engine, [row("t1", 1, status="COMPLETE")], NOW) == {"t1"}
    stored = table.load(store.engine, ["t1"])["t1"]
    assert (stored["sfdc_task_id"], stored["status"], stored["revision"]) == (SFDC, "OPEN", 2)
    assert table.synced(store.engine, [], [SFDC])[SFDC]["Id"] == SFDC


def test_tasks_are_found_by_salesforce_id_and_unpushed_ones_paged(store: Store) -> None:
    table.save(
        store.engine,
        [row("a", unpushed=True), row("b", sfdc_task_id=SFDC), row("c", unpushed=True)],
        NOW,
    )
    assert table.by_salesforce_id(store.engine, [SFDC])[SFDC]["task_id"] == "b"
    assert [r["task_id"] for r in table.unpushed(store.engine, "", 1)] == ["a"]
    assert [r["task_id"] for r in table.unpushed(store.engine, "a", 10)] == ["c"]


def test_the_first_enable_is_the_oldest_change_to_true(store: Store) -> None:
    assert table.first_enabled(store.engine) is None
    default = AdminSettings().reminder_task_sync
    first = admin_settings.write(store.engine, "reminder_task_sync", True, "t", default)
    admin_settings.write(store.engine, "reminder_task_sync", False, "t")
    admin_settings.write(store.engine, "reminder_task_sync", True, "t")
    assert table.first_enabled(store.engine) == first.changed_at
