"""SPEC S11 Tasks as the Salesforce source reads them: pure rules.

Every change of a Task by someone other than the integration user is published as a
`SalesforceTask`, whatever it changed (what syncs is the reminder agent's business:
`streams.rules.reminders`); the sync's own writes never come back (DESIGN: no echo
loops): a row whose `LastModifiedById` is the integration user is dropped when its synced
fields equal what the sync last wrote or read (the store's `salesforce_synced`:
compare-before-write). Dropping every integration-user row would lose a person's edit
made less than a poll before the sync wrote another field of the same Task: the row then
shows the sync as its last modifier (bench/reminders.py found a completion lost so).
Deletions come two ways: rows `queryAll` still shows with
`IsDeleted` (recycle bin), and `sobjects/Task/deleted/` (id and deletion time only),
read every few minutes by the poller. Event ids derive from the row version.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from typing import Any

from connectors.salesforce.client import EXTERNAL_ID
from connectors.salesforce.cursor import Row, Stream, parse_stamp
from connectors.salesforce.ids import to18

__all__ = [
    "FIRST_ENABLE_WINDOW",
    "TASK_FIELDS",
    "deleted_task",
    "task_record",
    "task_stream",
    "tasks",
]

EVENT_NAMESPACE = uuid.UUID("0b3e1c4e-43c6-4f6e-8e2f-6d1d2b8f2a51")  # uuid5 of row versions
TASK_FIELDS = (
    "Subject",
    "Status",
    "Priority",
    "ActivityDate",
    "Description",
    "WhoId",
    "WhatId",
    "CreatedDate",
    EXTERNAL_ID,
)
# S11: on first enable the Tasks changed in the last 24 hours are imported, so the
# stream's first position is that far back.
FIRST_ENABLE_WINDOW = timedelta(hours=24)


def task_stream() -> Stream:
    """The cursor stream of Task changes; `queryAll`, so a deletion before the poll is seen."""
    return Stream(
        "salesforce.tasks.Task",
        "Task",
        TASK_FIELDS,
        include_deleted=True,
        first_back=FIRST_ENABLE_WINDOW,
    )


SYNCED_FIELDS = ("Status", "Priority", "ActivityDate", "Description")


def tasks(
    rows: Sequence[Row], integration_user: str, synced: Mapping[str, Mapping[str, Any]]
) -> tuple[list[dict[str, Any]], Counter[str]]:
    """(records to publish, rows skipped by reason: `echo`). `synced`: the Task fields last
    synced, by external id or 18-character Task id (`*_synced` of the store's rows)."""
    out, skipped = [], Counter[str]()
    for row in rows:
        if row.get("LastModifiedById") == integration_user and _as_synced(row, synced):
            skipped["echo"] += 1
        else:
            out.append(task_record(row))
    return out, skipped


def _as_synced(row: Row, synced: Mapping[str, Mapping[str, Any]]) -> bool:
    last = synced.get(str(row.get(EXTERNAL_ID) or "")) or synced.get(to18(str(row["Id"])))
    if last is None:
        return True  # the sync wrote it and knows nothing more: nothing for Actions
    due = row.get("ActivityDate")
    now = {**{f: row.get(f) for f in SYNCED_FIELDS}, "ActivityDate": str(due)[:10] if due else None}
    return all(now[f] == last.get(f) for f in SYNCED_FIELDS if f in last) and not row.get(
        "IsDeleted"
    )


def _date(value: Any) -> date | None:
    """`ActivityDate` is a date: its first ten characters, never shifted by a time zone."""
    return date.fromisoformat(str(value)[:10]) if value else None


def task_record(row: Row) -> dict[str, Any]:
    """The `SalesforceTask` of one row."""
    stamp = str(row["SystemModstamp"])
    created = row.get("CreatedDate")
    return {
        "event_id": str(uuid.uuid5(EVENT_NAMESPACE, f"{row['Id']}/{stamp}")),
        "sfdc_id": to18(str(row["Id"])),
        "external_id": row.get(EXTERNAL_ID) or None,
        "subject": row.get("Subject"),
        "status": row.get("Status"),
        "priority": row.get("Priority"),
        "activity_date": _date(row.get("ActivityDate")),
        "description": row.get("Description"),
        "who_id": row.get("WhoId"),
        "what_id": row.get("WhatId"),
        "is_deleted": bool(row.get("IsDeleted")),
        "created_date": parse_stamp(str(created)) if created else None,
        "system_modstamp": parse_stamp(stamp),
        "last_modified_by_id": row.get("LastModifiedById"),
    }


def deleted_task(item: Mapping[str, Any]) -> dict[str, Any]:
    """The `SalesforceTask` of one `deletedRecords` item (`id`, `deletedDate`)."""
    stamp = str(item["deletedDate"])
    return {
        "event_id": str(uuid.uuid5(EVENT_NAMESPACE, f"{item['id']}/deleted/{stamp}")),
        "sfdc_id": to18(str(item["id"])),
        "external_id": None,
        "subject": None,
        "status": None,
        "priority": None,
        "activity_date": None,
        "description": None,
        "who_id": None,
        "what_id": None,
        "is_deleted": True,
        "created_date": None,
        "system_modstamp": parse_stamp(stamp),
        "last_modified_by_id": None,
    }
