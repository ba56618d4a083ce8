"""The Salesforce source's Task rules (SPEC S11): records, echoes, deletions, first enable."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from connectors.salesforce.cursor import Position
from connectors.salesforce.ids import to18
from connectors.salesforce.tasks import deleted_task, task_record, task_stream, tasks

INTEGRATION = "0050000000000INTEG"
ROW: dict[str, Any] = {
    "Id": "00T000000000001",
    "SystemModstamp": "2026-12-01T10:00:00.000+0000",
    "LastModifiedById": "0050000000000HUMAN",
    "IsDeleted": False,
    "Subject": "Call",
    "Status": "In Progress",
    "Priority": "Low",
    "ActivityDate": "2026-12-24",
    "Description": None,
    "WhoId": "00Q000000000001AAA",
    "WhatId": None,
    "CreatedDate": "2026-11-30T10:00:00.000+0000",
    "ActionsSync_Id__c": None,
}


def test_a_persons_change_is_published_whatever_it_changed() -> None:
    records, skipped = tasks([ROW], INTEGRATION, {})
    assert len(records) == 1 and not skipped
    record = records[0]
    assert record["sfdc_id"] == to18("00T000000000001")  # 18 characters
    assert (record["status"], record["priority"]) == ("In Progress", "Low")
    assert record["activity_date"] == date(2026, 12, 24)
    assert record["system_modstamp"] == datetime(2026, 12, 1, 10, tzinfo=UTC)


SYNCED = {
    "Status": "In Progress",
    "Priority": "Low",
    "ActivityDate": "2026-12-24",
    "Description": None,
}


def test_the_syncs_own_write_is_dropped() -> None:
    mine = ROW | {"LastModifiedById": INTEGRATION, "ActionsSync_Id__c": "t1"}
    records, skipped = tasks([mine], INTEGRATION, {"t1": SYNCED})
    assert records == [] and skipped == {"echo": 1}
    assert tasks([mine], INTEGRATION, {})[0] == []  # a Task the store does not know


def test_a_persons_edit_hidden_behind_the_syncs_later_write_is_published() -> None:
    """A person completed the Task, then the sync wrote its due date before the poll:
    the row's last modifier is the sync, but its status is not what the sync knows."""
    mine = ROW | {"LastModifiedById": INTEGRATION, "Status": "Completed"}
    records, _ = tasks([mine], INTEGRATION, {to18(ROW["Id"]): SYNCED})
    assert [r["status"] for r in records] == ["Completed"]


def test_an_activity_date_is_never_shifted_by_a_time_zone() -> None:
    assert task_record(ROW | {"ActivityDate": "2026-12-24T23:00:00.000-0800"})[
        "activity_date"
    ] == date(2026, 12, 24)


def test_the_same_row_version_read_twice_is_the_same_event() -> None:
    assert task_record(ROW)["event_id"] == task_record(dict(ROW))["event_id"]
    later = ROW | {"SystemModstamp": "2026-12-01T10:00:01.000+0000"}
    assert task_record(later)["event_id"] != task_record(ROW)["event_id"]


def test_a_deleted_records_item_is_a_deletion_at_its_time() -> None:
    record = deleted_task({"id": "00T000000000001", "deletedDate": "2026-12-01T11:00:00Z"})
    assert record["is_deleted"] is True and record["sfdc_id"] == to18("00T000000000001")
    assert record["system_modstamp"] == datetime(2026, 12, 1, 11, tzinfo=UTC)


def test_the_task_stream_starts_24_hours_back_through_query_all() -> None:
    stream = task_stream()
    assert stream.include_deleted and stream.first_back == timedelta(hours=24)
    now = datetime(2026, 12, 2, 9, tzinfo=UTC)
    assert Position.start(now - stream.first_back).stamp.startswith("2026-12-01T09:00")
