"""The send-decision ledger on SQLite and PostgreSQL: the first decision of a check wins."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from actions_sync.store import Store
from actions_sync.store.send_decisions import Given, given, prune, record

T0 = datetime(2026, 12, 2, 9, tzinfo=UTC)


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    store = Store(database_url)
    store.migrate()
    yield store
    store.close()


def test_a_replayed_check_keeps_its_first_decision(store: Store) -> None:
    first = record(
        store.engine, [Given("c1", True, "OK", T0), Given("c2", False, "UNSUBSCRIBED", T0)]
    )
    again = record(
        store.engine,
        [
            Given("c1", False, "CHECK_UNAVAILABLE", T0 + timedelta(1)),
            Given("c3", True, "CHECK_DISABLED", T0),
        ],
    )

    assert (first["c1"].allowed, first["c1"].reason) == (True, "OK")
    assert (again["c1"].allowed, again["c1"].reason) == (True, "OK")
    decided = again["c1"].decided_at  # SQLite hands it back without its zone (UTC)
    assert (decided if decided.tzinfo else decided.replace(tzinfo=UTC)) == T0
    assert set(given(store.engine, ["c1", "c2", "c3", "c4"])) == {"c1", "c2", "c3"}


def test_decisions_older_than_the_retention_are_pruned(store: Store) -> None:
    record(
        store.engine,
        [Given("old", True, "OK", T0), Given("new", True, "OK", T0 + timedelta(days=2))],
    )

    assert prune(store.engine, T0 + timedelta(days=1)) == 1
    assert set(given(store.engine, ["old", "new"])) == {"new"}
