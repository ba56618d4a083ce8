"""Collapsing a batch of Task changes: the newest wins, with the fields of the older
upserts it supersedes (reminder tasks send only what changed, SPEC S11)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from connectors.salesforce.payloads import (
    Record,
    conditional,
    delivered_before,
    digest,
    merged,
    newest,
)
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


# -- the write bound: a redelivered upsert, a person's newer edit (SPEC S11) ---------------

INTEGRATION, PERSON = "005000000000001AAA", "005000000000002AAA"


def held(seconds: float, by: str = PERSON, **fields: Any) -> dict[str, Any]:
    """A Task as Salesforce holds it (a query row), last modified at T0 + `seconds`."""
    stamp = T0 + timedelta(seconds=seconds)
    return {
        "Id": "00T000000000001AAA",
        "ActionsSync_Id__c": "t1",
        "LastModifiedById": by,
        "SystemModstamp": f"{stamp:%Y-%m-%dT%H:%M:%S}.{stamp.microsecond // 1000:03d}+0000",
        "Status": "Not Started",
        "Priority": "Normal",
        "ActivityDate": "2026-03-05",
        "Description": "a",
        **fields,
    }


def test_an_upsert_equal_to_the_last_delivered_one_is_not_sent_again() -> None:
    write = change("t1", 5, Status="Completed")
    last = digest(write)
    assert delivered_before(dict(write), last)  # the same change, resolved again
    assert not delivered_before(write, None)  # nothing delivered yet
    assert not delivered_before(change("t1", 6, Status="Completed"), last)  # a new edit
    assert not delivered_before(change("t1", 5, Status="Not Started"), last)


@pytest.mark.parametrize(
    "task, want, why",
    [
        (None, {"Status": "Completed", "Description": "b"}, "not there: all of it"),
        (held(4), {"Status": "Completed", "Description": "b"}, "a person's older edit"),
        (held(5), {"Status": "Completed", "Description": "b"}, "as old as the change"),
        (held(6), {}, "a person's newer edit wins the Task"),
        (held(6, by=INTEGRATION), {"Status": "Completed", "Description": "b"}, "our own"),
        (held(4, Description="b"), {"Status": "Completed"}, "held already: not sent"),
        (held(6, by=INTEGRATION, Status="Completed", Description="b"), {}, "all landed"),
    ],
)
def test_a_conditional_upsert_yields_to_a_newer_person_edit(
    task: dict[str, Any] | None, want: dict[str, Any], why: str
) -> None:
    write = change("t1", 5, Status="Completed", Description="b") | {"conditional": True}
    assert conditional(write, task, INTEGRATION) == want, why


def test_the_fields_naming_the_task_go_with_what_is_sent() -> None:
    write = change("t1", 5, Id="00T000000000001AAA", Status="Completed") | {"conditional": True}
    assert conditional(write, held(4), INTEGRATION) == {
        "Id": "00T000000000001AAA",
        "Status": "Completed",
    }
    assert conditional(write, held(4, Status="Completed"), INTEGRATION) == {}


def test_an_upsert_that_is_not_conditional_is_only_spared_what_is_held() -> None:
    write = change("t1", 5, Status="Completed", ActivityDate="2026-03-05")
    assert conditional(write, held(6), INTEGRATION) == {"Status": "Completed"}
