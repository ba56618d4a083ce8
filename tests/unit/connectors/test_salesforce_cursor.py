"""The Salesforce cursor and the S9 opt-out rules as pure functions: the query of a poll,
what a page hands on, where the cursor moves, and a simulated org (equal SystemModstamps
across page boundaries, late commits inside the lookback, restarts) in which no row
version is missed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.salesforce.cursor import Position, Stream, advance, fresh, soql
from connectors.salesforce.optouts import optout_record, optout_stream, optouts

T0 = datetime(2026, 11, 23, 18, 0, tzinfo=UTC)
TEN_MIN = timedelta(minutes=10)
INTEGRATION = "0050000000000INTEG"
PERSON = "005000000000042AAA"


def sf_stamp(moment: datetime) -> str:
    """SystemModstamp as Salesforce answers it."""
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}+0000"


def row(record_id: str, at: datetime, **fields: Any) -> dict[str, Any]:
    return {
        "Id": record_id,
        "SystemModstamp": sf_stamp(at),
        "LastModifiedById": PERSON,
        "IsDeleted": False,
        **fields,
    }


# -- the query -------------------------------------------------------------------------------


def test_a_poll_reads_from_the_lookback_window_in_cursor_order() -> None:
    stream = optout_stream("Lead", "HasOptedOutOfEmail")
    position = Position.start(T0)

    assert soql(stream, position, TEN_MIN) == (
        "SELECT Id, SystemModstamp, LastModifiedById, IsDeleted, Email, HasOptedOutOfEmail "
        "FROM Lead WHERE SystemModstamp >= 2026-11-23T17:50:00.000Z AND "
        "(HasOptedOutOfEmail = true) ORDER BY SystemModstamp, Id"
    )


def test_without_lookback_the_keyset_resumes_after_the_last_row() -> None:
    position = Position(Position.start(T0).stamp, "00Q000000000001EAA")

    assert soql(Stream("c", "Task"), position, timedelta(0)) == (
        "SELECT Id, SystemModstamp, LastModifiedById, IsDeleted FROM Task WHERE "
        "(SystemModstamp > 2026-11-23T18:00:00.000Z OR (SystemModstamp = "
        "2026-11-23T18:00:00.000Z AND Id > '00Q000000000001EAA')) ORDER BY SystemModstamp, Id"
    )


# -- pages -----------------------------------------------------------------------------------


def test_equal_stamps_across_a_page_boundary_are_each_handed_on_once() -> None:
    at = T0 + timedelta(seconds=1)
    page1, page2 = [row("a", at), row("b", at)], [row("c", at), row("d", at)]

    position = advance(Position.start(T0), page1, TEN_MIN)
    again = fresh([*page1, *page2], position)  # the next poll re-reads the window

    assert (position.id, [r["Id"] for r in again]) == ("b", ["c", "d"])


def test_a_late_commit_inside_the_lookback_is_handed_on() -> None:
    position = advance(Position.start(T0), [row("a", T0 + timedelta(seconds=30))], TEN_MIN)
    late = row("z", T0 + timedelta(seconds=20))  # visible now, stamped before "a"

    assert fresh([late, row("a", T0 + timedelta(seconds=30))], position) == [late]
    assert advance(position, [late], TEN_MIN).id == "a"  # the cursor never moves back


def test_a_new_version_of_a_row_already_seen_is_handed_on() -> None:
    position = advance(Position.start(T0), [row("a", T0)], TEN_MIN)

    assert fresh([row("a", T0 + timedelta(seconds=1))], position) != []


def test_seen_keeps_only_what_the_window_re_reads() -> None:
    old, new = row("a", T0), row("b", T0 + timedelta(minutes=11))

    position = advance(advance(Position.start(T0), [old], TEN_MIN), [new], TEN_MIN)

    assert set(position.seen) == {"b"}
    assert Position.load(position.dump()) == position


versions = st.lists(
    st.tuples(st.sampled_from("abcdefgh"), st.integers(0, 3), st.booleans()),
    min_size=1,
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(versions, min_size=1, max_size=6),
    page=st.integers(1, 5),
    crash_after=st.one_of(st.none(), st.integers(0, 8)),
)
def test_no_row_version_is_missed(
    steps: list[list[tuple[str, int, bool]]], page: int, crash_after: int | None
) -> None:
    """A simulated org: each step commits versions (some share a stamp, some are late:
    stamped up to 3 s before the step's time, inside the lookback), then the source polls
    in pages of `page`, saving after each. One crash may lose the unsaved position."""
    visible: dict[str, dict[str, Any]] = {}
    saved, handed, pages_done = Position.start(T0), [], 0
    for n, step in enumerate(steps):
        now = T0 + timedelta(seconds=10 * (n + 1))
        for record_id, ms, late in step:
            visible[record_id] = row(
                record_id, now - timedelta(seconds=3 if late else 0, milliseconds=ms)
            )
        position = saved
        since = datetime.fromisoformat(position.stamp) - TEN_MIN
        rows = sorted(
            (r for r in visible.values() if r["SystemModstamp"] >= sf_stamp(since)),
            key=lambda r: (r["SystemModstamp"], r["Id"]),
        )
        for at in range(0, len(rows), page):
            chunk = rows[at : at + page]
            handed += [(r["Id"], r["SystemModstamp"]) for r in fresh(chunk, position)]
            position = advance(position, chunk, TEN_MIN)
            pages_done += 1
            if pages_done != crash_after:  # a crash between publishing and saving
                saved = position
            else:
                break  # the process died: the next poll starts from what was saved
    final = {(r["Id"], r["SystemModstamp"]) for r in visible.values()}
    # one more poll after the last change: catches what a crash left
    position = saved
    rows = sorted(visible.values(), key=lambda r: (r["SystemModstamp"], r["Id"]))
    handed += [(r["Id"], r["SystemModstamp"]) for r in fresh(rows, position)]
    assert final <= set(handed)
    if crash_after is None:
        assert len(handed) == len(set(handed))  # no crash: each version once


# -- the S9 rules -----------------------------------------------------------------------------


def test_only_a_persons_opt_out_is_published() -> None:
    rows = [
        row("a", T0, HasOptedOutOfEmail=True, Email="a@example.com"),
        row("b", T0, HasOptedOutOfEmail=False),  # unchecked: a re-subscribe
        {**row("c", T0, HasOptedOutOfEmail=True), "LastModifiedById": INTEGRATION},
        row("d", T0, HasOptedOutOfEmail=True),
    ]  # the sync wrote this one

    records, skipped = optouts("Lead", "HasOptedOutOfEmail", rows, INTEGRATION, {"d"})

    assert [r["sfdc_id"] for r in records] == ["a"]
    assert skipped == {"echo": 2, "not_opted_out": 1}


def test_the_custom_field_is_the_one_read() -> None:
    rows = [
        row("a", T0, HasOptedOutOfEmail=True, Optout__c=False),
        row("b", T0, HasOptedOutOfEmail=False, Optout__c=True),
    ]

    records, _ = optouts("Contact", "Optout__c", rows, INTEGRATION, set())

    assert [(r["sfdc_id"], r["field"], r["sobject"]) for r in records] == [
        ("b", "Optout__c", "Contact")
    ]


def test_a_row_version_always_makes_the_same_record() -> None:
    one = row("a", T0, HasOptedOutOfEmail=True, Email="a@example.com")

    first, second = (optout_record("Lead", "HasOptedOutOfEmail", one) for _ in range(2))
    later = optout_record("Lead", "HasOptedOutOfEmail", row("a", T0 + timedelta(seconds=1)))

    assert first == second and first["event_id"] != later["event_id"]
    assert first["system_modstamp"] == T0 and first["last_modified_by_id"] == PERSON
