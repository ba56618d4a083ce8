"""Collapsing a batch of Task changes: the newest wins, with the fields of the older
upserts it supersedes (reminder tasks send only what changed, SPEC S11)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from connectors.salesforce.payloads import Record, merged, newest
from tests.factories import T0


def change(key: str, seconds: float, operation: str = "UPSERT", **fields: Any) -> Record:
    return {
        "external_id": key,
        "operation": operation,
        "fields": fields,
        "occurred_at": T0 + timedelta(seconds=seconds),
        "origin": "",
    }


def test_the_newest_upsert_keeps_the_fields_of_the_older_ones() -> None:
    batch = [
        change("t1", 1, ActivityDate="2027-01-17"),
        change("t1", 2, Priority="High"),
        change("t2", 1, Status="Completed"),
    ]
    kept = newest(batch)
    assert kept == [1, 2]
    assert merged(batch, kept)[1]["fields"] == {"ActivityDate": "2027-01-17", "Priority": "High"}


def test_a_newer_field_value_wins_and_a_delete_ends_what_came_before() -> None:
    batch = [
        change("t1", 1, Status="Not Started", Description="a"),
        change("t1", 3, Status="Completed"),
        change("t1", 2, operation="DELETE"),
    ]
    kept = newest(batch)
    assert merged(batch, kept) == {1: batch[1]}  # the delete dropped the older fields
    batch = [change("t1", 1, Status="Not Started"), change("t1", 2, Status="Completed")]
    assert merged(batch, newest(batch))[1]["fields"] == {"Status": "Completed"}


def test_a_delete_newest_is_no_upsert() -> None:
    batch = [change("t1", 1, Status="Completed"), change("t1", 2, operation="DELETE")]
    assert merged(batch, newest(batch)) == {}
