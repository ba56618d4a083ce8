"""The reminder-task rules against SPEC S11: maps, what does not sync, conflicts, windows."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actions_sync.admin.model import AdminSettings
from actions_sync.errors import RuleViolation
from streams.rules.reminders import (
    Change,
    Side,
    Stamp,
    TaskState,
    actions_value,
    catch_up,
    check_reminder,
    check_salesforce_task,
    delete_reaches,
    held,
    imported_on_first_enable,
    outcome_of,
    pushed_after_enable,
    resolve,
    salesforce_change,
    salesforce_value,
    task_out,
)
from tests.factories import T0

TASK = {
    "subject": "Call Ada",
    "status": "OPEN",
    "priority": "NORMAL",
    "due_date": date(2026, 3, 5),
    "details": "about the engine",
    "deleted": False,
}
IN_SF = {
    "Subject": "Call Ada",
    "Status": "Not Started",
    "Priority": "Normal",
    "ActivityDate": "2026-03-05",
    "Description": "about the engine",
}


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def synced(version: int = 0) -> TaskState:
    """A task both sides agree on, last changed in Actions at `version`."""
    return TaskState(dict(TASK), {n: Stamp(at(version), "ACTIONS") for n in TASK}, dict(IN_SF))


def actions(seconds: float, **edits: Any) -> Change:
    return Change("ACTIONS", at(seconds), TASK | edits)


def salesforce(seconds: float, **edits: Any) -> Change:
    return Change("SALESFORCE", at(seconds), IN_SF | edits)


# -- maps ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, actions_, sf",
    [
        ("status", "OPEN", "Not Started"),
        ("status", "COMPLETE", "Completed"),
        ("priority", "NORMAL", "Normal"),
        ("priority", "HIGH", "High"),
        ("due_date", date(2026, 12, 31), "2026-12-31"),
        ("due_date", None, None),
        ("details", "notes", "notes"),
    ],
)
def test_the_s11_maps_hold_both_ways(
    name: str, actions_: str | date | None, sf: str | None
) -> None:
    sf_name = {
        "status": "Status",
        "priority": "Priority",
        "due_date": "ActivityDate",
        "details": "Description",
    }[name]
    assert salesforce_value(name, actions_) == sf
    assert actions_value(sf_name, sf) == (name, actions_)


@pytest.mark.parametrize(
    "sf_name, value",
    [
        ("Status", "In Progress"),
        ("Status", "Waiting on someone else"),
        ("Status", "Deferred"),
        ("Priority", "Low"),
        ("OwnerId", "005000000000001AAA"),
    ],
)
def test_other_statuses_low_and_other_fields_do_not_sync(sf_name: str, value: str) -> None:
    assert actions_value(sf_name, value) is None


def test_an_activity_date_is_a_date_never_shifted_by_a_time_zone() -> None:
    assert actions_value("ActivityDate", "2026-03-05T00:00:00.000+0000") == (
        "due_date",
        date(2026, 3, 5),
    )


@given(
    st.sampled_from(["OPEN", "COMPLETE"]),
    st.sampled_from(["NORMAL", "HIGH"]),
    st.none() | st.dates(),
    st.none() | st.text(max_size=50),
)
def test_every_actions_value_survives_a_round_trip(
    status: str, priority: str, due: date | None, details: str | None
) -> None:
    for name, value in (
        ("status", status),
        ("priority", priority),
        ("due_date", due),
        ("details", details),
    ):
        sf_name = {
            "status": "Status",
            "priority": "Priority",
            "due_date": "ActivityDate",
            "details": "Description",
        }[name]
        assert actions_value(sf_name, salesforce_value(name, value)) == (name, value)


# -- Actions -> Salesforce ---------------------------------------------------------------


def test_a_new_actions_task_is_written_whole_to_salesforce() -> None:
    out = resolve(None, actions(1))
    assert out.write == IN_SF
    assert out.state.values == TASK and not out.delete


def test_an_actions_edit_writes_only_what_changed() -> None:
    out = resolve(synced(), actions(5, status="COMPLETE", details="done"))
    assert out.write == {"Status": "Completed", "Description": "done"}
    assert out.applied == {"status", "details"}


def test_an_actions_delete_deletes_in_salesforce() -> None:
    out = resolve(synced(), actions(5, deleted=True))
    assert out.delete and out.write == {} and out.state.deleted


def test_an_actions_edit_leaves_a_low_priority_alone_unless_it_changes_priority() -> None:
    low = TaskState(dict(TASK), synced().stamps, IN_SF | {"Priority": "Low"})
    assert resolve(low, actions(5, details="x")).write == {"Description": "x"}
    assert resolve(low, actions(5, priority="HIGH")).write == {"Priority": "High"}


# -- Salesforce -> Actions ---------------------------------------------------------------


def test_a_salesforce_completion_reaches_actions_and_writes_nothing_back() -> None:
    out = resolve(synced(), salesforce(5, Status="Completed"))
    assert out.state.values["status"] == "COMPLETE"
    assert out.applied == {"status"} and out.write == {} and not out.delete


@pytest.mark.parametrize(
    "edit", [{"Status": "In Progress"}, {"Priority": "Low"}, {"Subject": "renamed in Salesforce"}]
)
def test_what_does_not_sync_changes_nothing(edit: dict[str, str]) -> None:
    out = resolve(synced(), salesforce(5, **edit))
    assert out.applied == frozenset() and out.state.values == TASK


def test_the_rest_of_a_change_still_syncs_beside_a_low_priority() -> None:
    out = resolve(synced(), salesforce(5, Priority="Low", Description="new"))
    assert out.applied == {"details"} and out.state.values["priority"] == "NORMAL"


def test_a_task_born_in_salesforce_brings_its_subject_and_defaults_what_does_not_map() -> None:
    out = resolve(None, salesforce(5, Status="Deferred", Priority="Low"))
    assert out.state.values == TASK | {"status": "OPEN", "priority": "NORMAL"}
    assert out.write == {}


def test_a_salesforce_delete_deletes_in_actions_and_nothing_revives_it() -> None:
    out = resolve(synced(), salesforce(5, IsDeleted=True))
    assert out.state.deleted and not out.delete
    assert resolve(out.state, actions(9, status="COMPLETE")).applied == frozenset()


# -- conflicts ---------------------------------------------------------------------------

COMPLETED = TaskState(
    TASK | {"status": "COMPLETE"},
    {n: Stamp(at(0), "ACTIONS") for n in TASK},
    IN_SF | {"Status": "Completed"},
)


@pytest.mark.parametrize(
    "first, second, want",
    [
        (actions(5, status="OPEN"), salesforce(9, Status="Not Started"), "OPEN"),
        (actions(9, status="OPEN"), salesforce(5, Status="Not Started"), "OPEN"),
        (actions(5, details="a"), salesforce(9, Description="b"), "b"),
        (salesforce(9, Description="b"), actions(5, details="a"), "b"),
        (actions(9, details="a"), salesforce(5, Description="b"), "a"),
        (salesforce(5, Description="b"), actions(9, details="a"), "a"),
        (actions(5, details="a"), salesforce(5, Description="b"), "a"),
        (salesforce(5, Description="b"), actions(5, details="a"), "a"),
    ],
)
def test_the_newer_change_wins_and_a_tie_goes_to_actions(
    first: Change, second: Change, want: str
) -> None:
    end = resolve(resolve(COMPLETED, first).state, second).state
    name = "status" if want in ("OPEN", "COMPLETE") else "details"
    assert end.values[name] == want


def test_fields_resolve_one_by_one() -> None:
    state = resolve(synced(), actions(5, details="from Actions")).state
    end = resolve(
        state, Change("SALESFORCE", at(9), {**state.salesforce, "Status": "Completed"})
    ).state
    assert end.values["details"] == "from Actions" and end.values["status"] == "COMPLETE"


def test_an_equal_state_is_a_no_op() -> None:
    out = resolve(synced(), actions(5))
    assert out.applied == frozenset() and out.write == {}
    assert out.state.stamps == synced().stamps


def test_the_syncs_own_write_never_comes_back() -> None:
    out = resolve(synced(), actions(5, status="COMPLETE", due_date=date(2027, 1, 1)))
    echo = salesforce(6, **out.write)
    back = resolve(out.state, echo)
    assert back.applied == frozenset() and back.state.values == out.state.values


def test_a_salesforce_record_read_before_the_syncs_write_landed_claims_nothing_it_wrote() -> None:
    """Edited at 4 in Salesforce from a form still showing the old details, while the
    write of an Actions edit made at 5 was on its way: that write lands (the Task sink
    writes over an edit older than its change), so Actions keeps its value, and the
    status edited beside it still syncs."""
    state = resolve(synced(), actions(5, details="from Actions")).state
    out = resolve(state, salesforce(4, Status="Completed"))
    assert out.state.values["details"] == "from Actions"
    assert out.applied == {"status"}


def test_a_person_edit_newer_than_the_syncs_pending_write_wins_the_task() -> None:
    """Edited at 7 in Salesforce while the write of an Actions edit made at 5 was on its
    way: the Task sink does not make that write (a person changed the Task after 5,
    `payloads.conditional`), so the person's record is what Salesforce keeps, and Actions
    takes it: both sides end at it."""
    state = resolve(synced(), actions(5, details="from Actions")).state
    out = resolve(state, salesforce(7, Status="Completed"))
    assert out.state.values["details"] == TASK["details"]
    assert out.state.values["status"] == "COMPLETE"
    assert out.applied == {"status", "details"}


def test_an_actions_change_older_than_a_salesforce_record_already_read_loses() -> None:
    """A person's record of 7 read first (here changing only what does not sync), then an
    Actions edit made at 6: the Task sink would not write it over the newer edit, so it
    loses, and Actions keeps what Salesforce holds; an Actions edit made at 8 goes."""
    state = resolve(synced(), salesforce(7, Priority="Low")).state
    out = resolve(state, actions(6, status="COMPLETE"))
    assert out.write == {} and out.lost == {"status"}
    assert out.state.values["status"] == "OPEN"
    assert resolve(state, actions(8, status="COMPLETE")).write == {"Status": "Completed"}


def test_the_write_time_is_the_changes_in_milliseconds_as_its_record_carries_it() -> None:
    change = actions(5.0125, details="from Actions")
    state = resolve(synced(), change).state
    assert state.written_at == at(5.012)
    record = task_out("t1", resolve(synced(), change), change.at)
    assert record is not None and record["conditional"]


def test_an_older_salesforce_edit_does_not_override_a_newer_actions_one() -> None:
    state = resolve(synced(), actions(9, details="newer")).state
    out = resolve(state, salesforce(5, Description="older"))
    assert out.state.values["details"] == "newer" and out.applied == frozenset()


FLIP = {"OPEN": "COMPLETE", "COMPLETE": "OPEN"}


def _sf(status: str) -> dict[str, Any]:
    return IN_SF | {"Status": salesforce_value("status", status)}


@given(
    st.lists(
        st.sampled_from(
            ["edit ACTIONS", "edit SALESFORCE", "deliver ACTIONS", "deliver SALESFORCE"]
        ),
        max_size=30,
    ),
    st.permutations(["ACTIONS", "SALESFORCE"]),
)
def test_both_sides_converge_and_the_sync_writes_at_most_once_per_edit(
    steps: list[str], drain: list[Side]
) -> None:
    """A model of the two sides around the rules: each edit flips the status its side
    shows; each side's changes reach the agent in order, whenever; the sync's writes land
    in Salesforce at once, unless a person edited the Task after the Actions change the
    write carries (the Task sink's compare-before-write). After every change is delivered,
    both sides show the same status, and the sync wrote to Salesforce no more often than
    Actions was edited."""
    state, sf_status, clock = synced(), "OPEN", 0
    pending: dict[Side, list[Change]] = {"ACTIONS": [], "SALESFORCE": []}
    edits = {"ACTIONS": 0, "SALESFORCE": 0}
    writes = 0
    person_edited: datetime | None = None  # the Task's modstamp, when a person's

    def deliver(side: Side) -> None:
        nonlocal state, sf_status, writes, person_edited
        change = pending[side].pop(0)
        out = resolve(state, change)
        state = out.state
        if out.write and not (person_edited is not None and person_edited > change.at):
            writes += 1
            person_edited = None
            sf_status = {
                v: k for k, v in {"OPEN": "Not Started", "COMPLETE": "Completed"}.items()
            }.get(out.write.get("Status", salesforce_value("status", sf_status)), sf_status)

    for step in [*steps, *(f"deliver {s}" for s in drain for _ in range(40))]:
        clock += 1
        verb, named = step.split()
        side = cast(Side, named)
        if verb == "deliver":
            if pending[side]:
                deliver(side)
            continue
        edits[side] += 1
        if side == "SALESFORCE":
            sf_status = FLIP[sf_status]
            person_edited = at(clock)
            pending[side].append(Change(side, at(clock), _sf(sf_status)))
        else:
            shown = pending[side][-1].values["status"] if pending[side] else state.values["status"]
            pending[side].append(actions(clock, status=FLIP[shown]))
    assert state.values["status"] == sf_status
    assert writes <= edits["ACTIONS"]


@given(st.lists(st.sampled_from(["ACTIONS", "SALESFORCE"]), min_size=1, max_size=10))
def test_one_edit_at_a_time_the_last_edit_wins(sides: list[Side]) -> None:
    """Edits each made after the previous one reached both sides: the last one stands."""
    state, status = synced(), "OPEN"
    for i, side in enumerate(sides, start=1):
        status = FLIP[status]
        change = (
            actions(i, status=status)
            if side == "ACTIONS"
            else Change(side, at(i), {**state.salesforce, **_sf(status)})
        )
        state = resolve(state, change).state
        assert state.values["status"] == status
        assert state.salesforce["Status"] == salesforce_value("status", status)


@given(
    st.sampled_from(["OPEN", "COMPLETE"]),
    st.sampled_from(["NORMAL", "HIGH"]),
    st.none() | st.dates(),
    st.none() | st.text(max_size=20),
    st.integers(1, 10**6),
)
def test_no_actions_change_comes_back_as_a_salesforce_change(
    status: str, priority: str, due: date | None, details: str | None, seconds: int
) -> None:
    out = resolve(
        synced(), actions(seconds, status=status, priority=priority, due_date=due, details=details)
    )
    back = resolve(out.state, Change("SALESFORCE", at(seconds + 1), out.state.salesforce))
    assert back.applied == frozenset() and back.write == {}


# -- settings, first enable, delete horizon ----------------------------------------------


@pytest.mark.parametrize(
    "sync, log, want",
    [
        (True, True, None),
        (False, True, "sync_off"),
        (True, False, "logging_off"),
        (False, False, "sync_off"),
    ],
)
def test_nothing_flows_unless_both_settings_are_on(sync: bool, log: bool, want: str | None) -> None:
    settings = AdminSettings(reminder_task_sync=sync, salesforce_log_reminder_tasks=log)
    assert held(settings) == want


@pytest.mark.parametrize(
    "age, want",
    [(timedelta(hours=23), True), (timedelta(hours=24), True), (timedelta(hours=25), False)],
)
def test_first_enable_imports_salesforce_tasks_of_the_last_24_hours(
    age: timedelta, want: bool
) -> None:
    assert imported_on_first_enable(T0 - age, T0) is want


def test_first_enable_does_not_push_existing_actions_tasks() -> None:
    assert not pushed_after_enable(T0 - timedelta(seconds=1), T0)
    assert pushed_after_enable(T0, T0)


@pytest.mark.parametrize(
    "age, want",
    [(timedelta(days=14), True), (timedelta(days=15), True), (timedelta(days=16), False)],
)
def test_salesforce_deletes_reach_actions_within_15_days(age: timedelta, want: bool) -> None:
    assert delete_reaches(T0 - age, T0) is want


# -- records -----------------------------------------------------------------------------


def test_a_task_salesforce_never_had_is_written_whole_on_its_first_push() -> None:
    unsent = TaskState(dict(TASK), synced().stamps, {})  # stored before the first enable
    assert resolve(unsent, actions(5, details="x")).write == IN_SF | {"Description": "x"}


def test_the_catch_up_sends_what_salesforce_lacks_or_the_delete() -> None:
    behind = TaskState(TASK | {"status": "COMPLETE"}, synced().stamps, dict(IN_SF))
    assert catch_up(behind, at(9)).write == {"Status": "Completed"}
    assert catch_up(synced(), at(9)).write == {}
    gone = TaskState(TASK | {"deleted": True}, synced().stamps, dict(IN_SF))
    assert catch_up(gone, at(9)).delete


def test_outcomes_become_task_upserts_and_deletes_by_external_id() -> None:
    out = resolve(synced(), actions(5, status="COMPLETE"))
    record = task_out("t1", out, at(5), {"WhoId": "003000000000001AAA", "WhatId": None})
    assert record == {
        "external_id": "t1",
        "operation": "UPSERT",
        "occurred_at": at(5),
        "fields": {"Status": "Completed", "WhoId": "003000000000001AAA"},
        "conditional": True,
        "origin": "reminder:t1",
    }
    gone = task_out("t1", resolve(synced(), actions(6, deleted=True)), at(6))
    assert gone is not None and gone["operation"] == "DELETE" and gone["fields"] == {}
    assert task_out("t1", resolve(synced(), actions(7)), at(7)) is None


def test_a_salesforce_task_record_is_a_change_in_salesforce_terms() -> None:
    change = salesforce_change(
        {
            "subject": "S",
            "status": "Completed",
            "priority": "Low",
            "activity_date": date(2026, 12, 24),
            "description": None,
            "is_deleted": False,
            "system_modstamp": at(3),
        }
    )
    assert change == Change(
        "SALESFORCE",
        at(3),
        {
            "Subject": "S",
            "Status": "Completed",
            "Priority": "Low",
            "ActivityDate": "2026-12-24",
            "Description": None,
            "IsDeleted": False,
        },
    )


@pytest.mark.parametrize(
    "key, task_id, subject",
    [(b"t2", "t1", "s"), (None, "t1", "s"), (b"", "", "s"), (b"t1", "t1", "x" * 256)],
)
def test_a_reminder_breaking_the_contract_is_refused(
    key: bytes | None, task_id: str, subject: str
) -> None:
    with pytest.raises(RuleViolation):
        check_reminder(key, {"task_id": task_id, "subject": subject})


@pytest.mark.parametrize(
    "key, sfdc_id", [(b"00T000000000001", "not an id"), (b"00T000000000002", "00T000000000001")]
)
def test_a_salesforce_task_with_a_bad_id_or_key_is_refused(key: bytes, sfdc_id: str) -> None:
    with pytest.raises(RuleViolation):
        check_salesforce_task(key, {"sfdc_id": sfdc_id})
    check_reminder(b"t1", {"task_id": "t1", "subject": "s"})


# -- outcomes (the labels of actions_sync_reminder_tasks_synced_total) -------------------


@pytest.mark.parametrize(
    "before, change, want",
    [
        (None, actions(1), "created"),
        ("synced", actions(1, details="new"), "updated"),
        ("synced", actions(1, status="COMPLETE"), "completed"),
        ("synced", actions(1, deleted=True), "deleted"),
        ("synced", actions(1), "no_op"),
        ("sf_newer", actions(1, details="older in Actions"), "conflict_lost"),
        ("synced", salesforce(1, Description="new"), "updated"),
        ("synced", salesforce(1, Status="Completed"), "completed"),
        ("synced", salesforce(1, IsDeleted=True), "deleted"),
        ("synced", salesforce(1, Status="Deferred"), "ignored_status"),
        ("synced", salesforce(1, Priority="Low"), "ignored_priority"),
        ("synced", salesforce(1, Status="Deferred", Description="still syncs"), "updated"),
        ("synced", salesforce(1, Subject="renamed"), "no_op"),
        ("synced", salesforce(1), "no_op"),
        ("actions_newer", salesforce(3, Description="older in Salesforce"), "conflict_lost"),
        (None, salesforce(1), "created"),
    ],
)
def test_each_change_has_one_outcome(before: str | None, change: Change, want: str) -> None:
    state = {
        None: None,
        "synced": synced(0),
        "sf_newer": resolve(synced(0), salesforce(5, Description="newer")).state,
        # a later write (of the subject) carries no Description: a record of 3 claims it
        "actions_newer": resolve(
            resolve(synced(0), actions(5, details="newer")).state,
            actions(6, details="newer", subject="renamed"),
        ).state,
    }[before]
    out = resolve(state, change)
    assert outcome_of(state, out, change.side) == want


def test_a_lost_conflict_names_the_field_the_other_side_won() -> None:
    state = resolve(synced(0), actions(5, details="newer", priority="HIGH")).state
    state = resolve(state, actions(6, details="newer", priority="HIGH", subject="renamed")).state
    out = resolve(state, salesforce(3, Description="older", Priority="High", Status="Completed"))
    assert out.lost == {"details"}  # priority: the same value; status: newer than 0
    assert out.applied == {"status"}
