"""Parked activities in the store (SQLite and PostgreSQL): they survive a new Store (a
restarted worker), a due row is claimed by one worker only, and its lease is the retry
interval."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import Engine

from actions_sync.store import Store
from actions_sync.store import parked as parking
from tests.factories import T0


def item(activity_id: str, marketo_id: int = 7) -> parking.Parked:
    return parking.Parked(
        activity_id, marketo_id, "actions.sales.activities", 3, 41, b"7", b"\x00raw", T0
    )


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    with Store(database_url) as store:
        store.migrate()
        yield store.engine


def test_parked_activities_survive_a_restart_and_keep_their_origin(
    engine: Engine, database_url: str
) -> None:
    parking.park(engine, [item("a"), item("b")], retry_s=5)
    parking.park(engine, [item("a")], retry_s=5)  # a retried batch parks again: no-op
    with Store(database_url) as restarted:
        due = parking.claim_due(restarted.engine, T0 + timedelta(seconds=5), lease_s=5)
    assert sorted(p.activity_id for p in due) == ["a", "b"]
    assert due[0].parked_at == T0 and (due[0].key, due[0].value) == (b"7", b"\x00raw")
    assert (due[0].source_partition, due[0].source_offset) == (3, 41)


def test_a_due_row_is_claimed_once_until_its_lease_ends(engine: Engine) -> None:
    parking.park(engine, [item("a")], retry_s=1)
    now = T0 + timedelta(seconds=1)
    assert [p.activity_id for p in parking.claim_due(engine, now, lease_s=10)] == ["a"]
    assert parking.claim_due(engine, now, lease_s=10) == []  # another worker: nothing
    assert parking.claim_due(engine, now + timedelta(seconds=9), lease_s=10) == []
    assert len(parking.claim_due(engine, now + timedelta(seconds=10), lease_s=10)) == 1


def test_not_due_before_the_retry_interval_and_gone_once_removed(engine: Engine) -> None:
    parking.park(engine, [item("a"), item("b")], retry_s=5)
    assert parking.claim_due(engine, T0 + timedelta(seconds=4), lease_s=5) == []
    parking.remove(engine, ["a"])
    assert parking.count(engine) == 1
