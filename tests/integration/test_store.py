"""The Store API on SQLite and on PostgreSQL (a real server started by the tests)."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import pairwise
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import inspect

from actions_sync.store import PeopleWrite, Store, metadata
from actions_sync.store.store import SQLITE_CACHE_KIB, SQLITE_WAL_CHECKPOINT_PAGES
from streams.rules.people import person_row
from tests.factories import person_change
from tests.support.checks import present

T = TypeVar("T")


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    store = Store(database_url)
    store.migrate()
    yield store
    store.close()


def row(marketo_id: int, version: int, **fields: Any) -> dict[str, Any]:
    return person_row(person_change(marketo_id, version, **fields))


def test_migrations_build_exactly_the_declared_tables(store: Store) -> None:
    inspector = inspect(store.engine)
    for table in metadata.sorted_tables:
        columns = {c["name"] for c in inspector.get_columns(table.name)}
        assert columns == set(table.columns.keys())


def test_migrate_twice_is_harmless(store: Store) -> None:
    store.migrate()
    assert store.count_persons() == 0


def test_the_newest_revisions_are_alembics_heads_and_a_store_at_them_skips_alembic(
    database_url: str,
) -> None:
    """`migrate` reads the scripts' heads itself, to skip Alembic's import on a store
    already at them: they must be Alembic's own, or a new script would never run."""
    import subprocess
    import sys

    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from actions_sync.store.store import MIGRATIONS, _heads

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert _heads() == set(ScriptDirectory.from_config(config).get_heads())
    with Store(database_url) as store:
        store.migrate()
    again = (
        "import sys; from actions_sync.store import Store; s = Store(sys.argv[1]); s.migrate();"
        " print('alembic' in sys.modules, s.count_persons())"
    )
    out = subprocess.run(
        [sys.executable, "-c", again, database_url], capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["False", "0"]


def test_sqlite_connections_are_tuned_for_batches_of_scattered_people(store: Store) -> None:
    if not store.is_sqlite:
        pytest.skip("SQLite pragmas")
    with store.engine.connect() as conn:

        def pragma(name: str) -> Any:
            return conn.exec_driver_sql(f"PRAGMA {name}").scalar()

        assert pragma("journal_mode") == "wal"
        assert pragma("cache_size") == -SQLITE_CACHE_KIB
        assert pragma("wal_autocheckpoint") == SQLITE_WAL_CHECKPOINT_PAGES


def test_upsert_creates_then_updates_a_person(store: Store) -> None:
    store.apply_people([row(1, 1, title="CTO")], [])
    store.apply_people([row(1, 2, title="CEO")], [])
    assert present(store.person(1))["title"] == "CEO"
    assert store.count_persons() == 1


def test_older_change_never_overwrites_newer(store: Store) -> None:
    store.apply_people([row(1, 5, title="new")], [])
    store.apply_people([row(1, 3, title="old")], [])
    assert present(store.person(1))["title"] == "new"
    assert present(store.person(1))["changed_at"] == person_change(1, 5)["changed_at"]


def test_replayed_change_is_a_no_op(store: Store) -> None:
    store.apply_people([row(1, 5)], [])
    first = present(store.person(1))
    store.apply_people([row(1, 5, title="same version, ignored")], [])
    assert present(store.person(1))["title"] == first["title"]


def test_of_two_changes_in_one_second_the_later_in_the_log_wins(store: Store) -> None:
    store.apply_people([{**row(1, 5, title="first"), "log_position": 10}], [])
    store.apply_people([{**row(1, 5, title="second"), "log_position": 11}], [])
    store.apply_people([{**row(1, 5, title="first"), "log_position": 10}], [])  # redelivered
    person = present(store.person(1))
    assert person["title"] == "second" and person["log_position"] == 11


def test_a_removal_in_the_second_of_the_stored_upsert_and_after_it_removes(store: Store) -> None:
    store.apply_people([{**row(1, 5), "log_position": 10}], [])
    written = store.apply_people([], [{**row(1, 5, sfdc_lead_owner_id=None), "log_position": 11}])
    store.apply_people([{**row(1, 5), "log_position": 10}], [])  # the upsert redelivered
    assert written.removed == 1 and present(store.person(1))["removed_at"] is not None


def test_removal_soft_deletes_and_keeps_the_row(store: Store) -> None:
    store.apply_people([row(1, 1)], [])
    written = store.apply_people([], [row(1, 2, sfdc_lead_owner_id=None)])
    person = present(store.person(1))
    assert written.removed == 1
    assert person["removed_at"] == person_change(1, 2)["changed_at"]
    assert store.count_persons() == 0 and store.count_persons(present_only=False) == 1


def test_removal_of_someone_never_synced_writes_nothing(store: Store) -> None:
    written = store.apply_people([], [row(9, 1, sfdc_lead_owner_id=None)])
    assert written.removed == 0
    assert store.person(9) is None


def test_stale_removal_does_not_remove_a_newer_person(store: Store) -> None:
    store.apply_people([row(1, 5)], [])
    store.apply_people([], [row(1, 4, sfdc_lead_owner_id=None)])
    assert present(store.person(1))["removed_at"] is None


def test_owner_back_restores_the_person(store: Store) -> None:
    store.apply_people([row(1, 1)], [])
    store.apply_people([], [row(1, 2, sfdc_lead_owner_id=None)])
    store.apply_people([row(1, 3)], [])
    assert present(store.person(1))["removed_at"] is None


def test_batch_of_thousands_in_one_call(store: Store) -> None:
    store.apply_people([row(i, 1) for i in range(1, 5001)], [])
    assert store.count_persons() == 5000
    assert [p["marketo_id"] for p in store.iter_persons(batch=700)][:3] == [1, 2, 3]


def test_checkpoint_is_saved_replaced_and_read_back(store: Store) -> None:
    assert store.checkpoint("marketo-source") is None
    store.save_checkpoint("marketo-source", {"token": "A", "page": 1})
    store.save_checkpoint("marketo-source", {"token": "B", "page": 2})
    assert store.checkpoint("marketo-source") == {"token": "B", "page": 2}
    assert 0 <= present(store.checkpoint_age_s("marketo-source")) < 60


def test_batch_upserts_store_datetimes_as_sqlalchemy_does(store: Store) -> None:
    """The upsert bypasses SQLAlchemy's bind processing: a row it writes must read back,
    and compare (the version check), exactly like one SQLAlchemy wrote; a version given in
    another time zone is the same instant."""
    from datetime import timedelta, timezone

    from sqlalchemy import insert

    from actions_sync.store import persons

    at = person_change(1, 5)["changed_at"]
    by_sqlalchemy = {**row(2, 5), "removed_at": None, "synced_at": at}
    with store.engine.begin() as conn:
        conn.execute(insert(persons), [by_sqlalchemy])
    store.apply_people([row(1, 5)], [])
    with store.engine.connect() as conn:
        raw: dict[int, str] = dict(
            conn.exec_driver_sql("SELECT marketo_id, CAST(changed_at AS TEXT) FROM persons").all()
        )
    assert raw[1] == raw[2]  # same stored text (SQLite compares versions as text)
    assert present(store.person(1))["changed_at"] == present(store.person(2))["changed_at"] == at
    elsewhere = at.astimezone(timezone(timedelta(hours=-5)))
    store.apply_people(
        [{**row(1, 4, title="older"), "changed_at": elsewhere - timedelta(seconds=1)}], []
    )
    assert present(store.person(1))["title"] != "older"
    store.apply_people(
        [{**row(1, 6, title="newer"), "changed_at": elsewhere + timedelta(seconds=1)}], []
    )
    assert present(store.person(1))["title"] == "newer"
    assert present(store.person(1))["changed_at"] == at + timedelta(seconds=1)


def test_a_batch_of_removals_counts_each_person_removed(store: Store) -> None:
    store.apply_people([row(1, 1), row(2, 1), row(3, 5)], [])
    written = store.apply_people([], [row(n, 2, sfdc_lead_owner_id=None) for n in (1, 2, 3, 4)])
    assert written.removed == 2  # 3 is newer than the removal, 4 was never stored
    assert (
        present(store.person(1))["removed_at"]
        == present(store.person(1))["changed_at"]
        == person_change(1, 2)["changed_at"]
    )
    assert present(store.person(3))["removed_at"] is None and store.person(4) is None
    assert store.count_persons() == 1


def test_rows_of_one_person_in_one_call_apply_in_order(store: Store) -> None:
    # A batch `plan` made has one row per person (PostgreSQL upserts those through a
    # staging table in one statement); a caller passing several gets them in order.
    written = store.apply_people(
        [
            row(1, 5, title="new"),
            row(1, 3, title="old"),
            row(2, 1, title="first"),
            row(2, 1, title="second"),
        ],
        [],
    )
    assert written.upserted == 4
    assert present(store.person(1))["title"] == "new"
    assert present(store.person(2))["title"] == "first"
    written = store.apply_people(
        [], [row(1, 6, sfdc_lead_owner_id=None), row(1, 7, sfdc_lead_owner_id=None)]
    )
    assert written.removed == 2
    assert present(store.person(1))["removed_at"] == person_change(1, 6)["changed_at"]
    assert present(store.person(1))["changed_at"] == person_change(1, 7)["changed_at"]


def test_a_batch_of_upserts_and_removals_keeps_the_first_removal_time(store: Store) -> None:
    store.apply_people([row(n, 1) for n in range(1, 101)], [])
    written = store.apply_people(
        [{**row(1, 2), "removed_at": person_change(1, 2)["changed_at"]}],
        [row(n, 3, sfdc_lead_owner_id=None) for n in range(2, 102)],
    )
    assert written == PeopleWrite(upserted=1, removed=99)
    store.apply_people(
        [{**row(1, 4), "removed_at": person_change(1, 4)["changed_at"]}],
        [row(2, 4, sfdc_lead_owner_id=None)],
    )
    assert present(store.person(1))["removed_at"] == person_change(1, 2)["changed_at"]
    assert present(store.person(2))["removed_at"] == person_change(2, 3)["changed_at"]
    assert present(store.person(2))["changed_at"] == person_change(2, 4)["changed_at"]
    assert store.count_persons() == 0 and store.person(101) is None


# Text the COPY format must escape (PostgreSQL's batches are COPY text built in Python),
# the NULL marker as a value, and characters past ASCII.
AWKWARD = ("tab\there", "line\nbreak", "cr\rhere", "back\\slash", "\\N", "\\", "", "ünï ✓ 𝄞")


def test_any_text_is_stored_as_given(store: Store) -> None:
    from actions_sync.store import PERSON_FIELDS

    def values(n: int) -> dict[str, str]:
        return {f: AWKWARD[(n + i) % len(AWKWARD)] for i, f in enumerate(PERSON_FIELDS)}

    people = range(1, 2 * len(AWKWARD) + 1)
    store.apply_people([row(n, 1, **values(n)) for n in people], [])
    removals = [{**row(n, 2, **values(n + 1)), "marketo_id": n} for n in people[::2]]
    assert store.apply_people([], removals).removed == len(AWKWARD)
    for n in people:
        stored = present(store.person(n))
        assert {f: stored[f] for f in PERSON_FIELDS} == values(n + n % 2)
        assert (stored["removed_at"] is None) == (n % 2 == 0)


def test_a_nul_character_is_refused_as_the_records_fault_not_an_outage(store: Store) -> None:
    """PostgreSQL's text holds no NUL: the write fails with the row's error class, which
    the pipeline dead-letters (an outage, `OperationalError`, it would retry for ever)."""
    from sqlalchemy.exc import DBAPIError, OperationalError

    if store.is_sqlite:
        pytest.skip("SQLite stores a NUL in text")
    with pytest.raises(DBAPIError) as refused:
        store.apply_people([row(1, 1), row(2, 1, title="nul\x00here")], [])
    assert not isinstance(refused.value, OperationalError)
    assert store.person(1) is None  # the batch is one transaction


def test_sqlite_datetime_text_is_sqlalchemys_for_every_year() -> None:
    from datetime import UTC, datetime, timedelta, timezone

    from sqlalchemy.dialects.sqlite import DATETIME, dialect

    from actions_sync.person_rows import sqlite_datetime

    # SQLAlchemy leaves the SQLite DATETIME's __init__ unannotated
    theirs = present(DATETIME().bind_processor(dialect()))  # type: ignore[no-untyped-call]
    for at in (
        datetime(5, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
        datetime(2026, 3, 1, 12, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    ):
        assert sqlite_datetime(at) == theirs(at)
    east = datetime(2026, 3, 1, 12, tzinfo=timezone(timedelta(hours=2)))
    assert sqlite_datetime(east) == "2026-03-01 10:00:00.000000"


def _final_state(store: Store) -> dict[int, tuple[Any, ...]]:
    return {
        p["marketo_id"]: (p["title"], p["changed_at"], p["log_position"], p["removed_at"] is None)
        for p in store.iter_persons()
    }


@st.composite
def _stream(draw: st.DrawFn) -> list[tuple[int, int, bool, int]]:
    """Changes as a topic partition holds them: per person, versions in the order the
    source made them — often several in one second (Marketo's resolution), owners added
    and removed — and at-least-once replays of earlier changes anywhere after them (a
    republished page or chunk after a crash). (person, second, owned, position): the
    position is the record's offset, a replay's its own."""
    events: list[tuple[int, int, bool, int]] = []
    seconds: dict[int, int] = {}
    for position in range(draw(st.integers(0, 14))):
        if len(events) > 0 and draw(st.booleans()) and draw(st.booleans()):
            mid, second, owned, _ = events[draw(st.integers(0, len(events) - 1))]
            events.append((mid, second, owned, position))  # a replay
            continue
        mid = draw(st.integers(1, 4))
        seconds[mid] = seconds.get(mid, 0) + draw(st.integers(0, 1))  # 0: the same second
        events.append((mid, seconds[mid], draw(st.booleans()), position))
    return events


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(events=_stream(), cuts=st.lists(st.integers(0, 14), max_size=4))
def test_batches_leave_the_store_as_one_change_at_a_time_would(
    database_url: str, events: list[tuple[int, int, bool, int]], cuts: list[int]
) -> None:
    """SPEC S2 under batching: however a partition's changes (owners added and removed,
    several in one second, replays of older changes) are cut into batches, the store ends
    as if each change had been applied on its own: present exactly when the newest change
    qualifies — newest by `changed_at`, then by position in the log — and an older change
    never brings back someone a newer one removed."""
    from streams.rules.people import plan

    changes = [
        {
            **person_change(
                mid, second, title=f"v{position}", sfdc_lead_owner_id="005A" if owned else None
            ),
            "log_position": position,
        }
        for mid, second, owned, position in events
    ]
    states = []
    for batches in ([[c] for c in changes], _cut(changes, cuts)):
        store = Store(database_url)
        store.migrate()
        try:
            with store.engine.begin() as conn:
                conn.exec_driver_sql("DELETE FROM persons")
            for batch in batches:
                done = plan(batch)
                store.apply_people(done.upserts, done.removals)
            states.append(_final_state(store))
        finally:
            store.close()
    assert states[1] == states[0]
    newest: dict[int, tuple[int, int, bool]] = {}
    for mid, second, owned, position in events:
        newest[mid] = max(newest.get(mid, (second, position, owned)), (second, position, owned))
    present = {mid for mid, (*_, is_present) in states[0].items() if is_present}
    assert present == {mid for mid, (*_, owned) in newest.items() if owned}
    for mid, (title, changed_at, position, _) in states[0].items():
        second, newest_position, _ = newest[mid]  # the stored version is the newest one
        assert (changed_at, position) == (person_change(mid, second)["changed_at"], newest_position)
        assert title == f"v{newest_position}"


def _cut(items: list[T], cuts: list[int]) -> list[list[T]]:
    edges = sorted({0, len(items), *(c for c in cuts if c < len(items))})
    return [items[a:b] for a, b in pairwise(edges) if items[a:b]]


def test_unsubscribed_answers_which_people_hold_an_unsubscribe(store: Store) -> None:
    from datetime import UTC, datetime

    from actions_sync.store.unsubscribes import unsubscribed, unsubscribes

    with store.engine.begin() as conn:
        conn.execute(
            unsubscribes.insert(),
            [
                {
                    "marketo_id": 7,
                    "email": "a@example.com",
                    "source": "MANUAL",
                    "occurred_at": datetime(2026, 3, 1, tzinfo=UTC),
                }
            ],
        )
    assert unsubscribed(store.engine, [7, 8, 7]) == {7}
    assert unsubscribed(store.engine, []) == set()


def test_opt_outs_the_sync_wrote_are_remembered_once_per_record_and_field(store: Store) -> None:
    from datetime import UTC, datetime

    from actions_sync.store.unsubscribes import (
        OptOutWrite,
        record_optout_writes,
        written_optouts,
    )

    at = datetime(2026, 3, 1, tzinfo=UTC)
    write = OptOutWrite("00Q000000000001AAA", "HasOptedOutOfEmail", "Lead", 7, at)
    record_optout_writes(store.engine, [write, write])
    record_optout_writes(store.engine, [write])
    ids = ["00Q000000000001AAA", "003000000000002AAA"]
    assert written_optouts(store.engine, "HasOptedOutOfEmail", ids) == {"00Q000000000001AAA"}
    assert written_optouts(store.engine, "Other__c", ids) == set()


def test_a_newer_unsubscribe_is_written_again_a_redelivered_one_is_not(store: Store) -> None:
    from datetime import UTC, datetime, timedelta

    from actions_sync.store.unsubscribes import OptOutWrite, record_optout_writes, written_since

    at = datetime(2026, 3, 1, tzinfo=UTC)
    lead, field = "00Q000000000001AAA", "HasOptedOutOfEmail"
    record_optout_writes(store.engine, [OptOutWrite(lead, field, "Lead", 7, at, at)])
    later = at + timedelta(hours=1)
    assert written_since(store.engine, [(lead, field, at)]) == {(lead, field)}
    assert written_since(store.engine, [(lead, field, later)]) == set()
    assert written_since(store.engine, [(lead, "Other__c", at)]) == set()
    record_optout_writes(
        store.engine,
        [
            OptOutWrite(lead, field, "Lead", 7, later, later),
            OptOutWrite(lead, field, "Lead", 7, later, at),
        ],
    )
    assert written_since(store.engine, [(lead, field, later)]) == {(lead, field)}


def test_the_first_unsubscribe_of_a_person_stays(store: Store) -> None:
    from datetime import UTC, datetime, timedelta

    from actions_sync.store.unsubscribes import store_unsubscribes, unsubscribes

    at = datetime(2026, 3, 1, tzinfo=UTC)
    first = {"marketo_id": 7, "email": "a@example.com", "source": "MANUAL", "occurred_at": at}
    assert store_unsubscribes(store.engine, [first]) == {7}
    assert store_unsubscribes(
        store.engine,
        [
            {**first, "source": "SALESFORCE_SYNC", "occurred_at": at + timedelta(days=1)},
            {**first, "marketo_id": 8},
        ],
    ) == {8}
    with store.engine.connect() as conn:
        rows = {r.marketo_id: r.source for r in conn.execute(unsubscribes.select())}
    assert rows == {7: "MANUAL", 8: "MANUAL"}


def test_people_are_found_by_a_salesforce_id_stored_in_15_or_18_characters(store: Store) -> None:
    from actions_sync.store.unsubscribes import people_by_salesforce_id

    store.apply_people(
        [
            row(1, 1, sfdc_lead_id="00Q000000000001", sfdc_contact_id=None),
            row(2, 1, sfdc_lead_id=None, sfdc_contact_id="003000000000002AAA"),
            row(3, 1, sfdc_lead_id="00Q000000000001EAA", sfdc_contact_id=None),
            row(4, 1, sfdc_lead_id="00q000000000001", sfdc_contact_id=None),
        ],
        [],
    )
    found = people_by_salesforce_id(
        store.engine, ["00Q000000000001EAA", "003000000000002AAA", "003000000000009AAA"]
    )
    assert {k: sorted(p["marketo_id"] for p in v) for k, v in found.items()} == {
        "00Q000000000001EAA": [1, 3],
        "003000000000002AAA": [2],
    }  # 15 characters: case-sensitive
    # A stored 18-character id names one record, even where the first 15 are shared.
    store.apply_people([row(5, 1, sfdc_lead_id="00Q000000000001ZZZ", sfdc_contact_id=None)], [])
    found = people_by_salesforce_id(store.engine, ["00Q000000000001ZZZ"])
    assert sorted(p["marketo_id"] for p in found["00Q000000000001ZZZ"]) == [1, 5]


def test_held_opt_outs_are_kept_until_dropped(store: Store) -> None:
    from datetime import UTC, datetime

    from actions_sync.store.unsubscribes import HeldOptOut, drop_held, held, hold_optouts

    at = datetime(2026, 3, 1, tzinfo=UTC)
    one = HeldOptOut(
        "003000000000002AAA", "HasOptedOutOfEmail", "Contact", None, "e1", at, "sync_off", at
    )
    hold_optouts(store.engine, [one, HeldOptOut(**{**vars(one), "sfdc_id": "003000000000003AAA"})])
    hold_optouts(store.engine, [HeldOptOut(**{**vars(one), "reason": "salesforce_record_unknown"})])
    assert [(h.sfdc_id, h.reason) for h in held(store.engine, 10)] == [
        ("003000000000002AAA", "salesforce_record_unknown"),
        ("003000000000003AAA", "sync_off"),
    ]
    assert [h.sfdc_id for h in held(store.engine, 10, ("003000000000002AAA", "z"))] == [
        "003000000000003AAA"
    ]
    drop_held(store.engine, [("003000000000002AAA", "HasOptedOutOfEmail")])
    assert [h.sfdc_id for h in held(store.engine, 10)] == ["003000000000003AAA"]
