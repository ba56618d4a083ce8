"""The Marketo delivery ledger on SQLite and PostgreSQL: claims are exclusive, accepted
rows stay accepted, and a release only drops the rows of the claim it names."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from actions_sync.store import Store
from actions_sync.store.ledger import ACCEPTED, PENDING, Accepted, Ledger

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)


def test_one_claim_wins_and_release_only_drops_its_own_rows(database_url: str) -> None:
    with Store(database_url) as store:
        store.migrate()
        ledger = Ledger(store.engine)
        assert ledger.claim([("a", 1, 100001), ("b", 2, 100001)], "first", NOW) == {"a", "b"}
        assert ledger.claim([("b", 2, 100001), ("c", 3, 100002)], "second", NOW) == {"c"}
        ledger.release([("b", "second"), ("c", "second")])  # b is not second's: kept
        entries = ledger.entries(["a", "b", "c"])
        assert set(entries) == {"a", "b"} and entries["b"].claim == "first"
        assert entries["a"].sent_at == NOW and entries["a"].state == PENDING


def test_accepted_rows_record_marketos_id_and_survive_a_release(database_url: str) -> None:
    with Store(database_url) as store:
        store.migrate()
        ledger = Ledger(store.engine)
        ledger.claim([("a", 1, 100001)], "c1", NOW)
        ledger.accept(
            [Accepted("a", 1, 100001, 42, "guid-42"), Accepted("z", 9, 100003, 43, None)], NOW
        )
        ledger.release([("a", "c1")])
        assert ledger.count(ACCEPTED) == 2 and ledger.count(PENDING) == 0
        assert ledger.entries(["a"])["a"].state == ACCEPTED


def test_accepted_rows_older_than_the_retention_are_pruned_and_pending_ones_never(
    database_url: str,
) -> None:
    with Store(database_url) as store:
        store.migrate()
        ledger = Ledger(store.engine)
        ledger.accept([Accepted("old", 1, 100001, 42, None)], NOW - timedelta(days=31))
        ledger.accept([Accepted("new", 1, 100001, 43, None)], NOW - timedelta(days=29))
        ledger.claim([("unsure", 1, 100001)], "c1", NOW - timedelta(days=40))
        assert ledger.prune(NOW - timedelta(days=30)) == 1
        assert set(ledger.entries(["old", "new", "unsure"])) == {"new", "unsure"}


def test_the_marketo_sink_prunes_its_ledger_hourly(database_url: str) -> None:
    import asyncio

    from connectors.marketo.sink import ActivitySink, Timing
    from tests.fakes import FakeClock

    clock = FakeClock()
    with Store(database_url) as store:
        store.migrate()
        ledger = Ledger(store.engine)
        sink = ActivitySink(None, ledger, Timing(retention_s=86400.0), clock)  # type: ignore[arg-type]
        ledger.accept([Accepted("a", 1, 100001, 42, None)], clock.now() - timedelta(hours=23.5))
        asyncio.run(sink.deliver([]))
        assert ledger.count(ACCEPTED) == 1  # 23.5 h old, kept a day
        clock.t += 1800
        ledger.accept([Accepted("b", 1, 100001, 43, None)], clock.now() - timedelta(days=2))
        asyncio.run(sink.deliver([]))
        assert ledger.count(ACCEPTED) == 2  # within the hour since the last prune
        clock.t += 1800
        asyncio.run(sink.deliver([]))
        assert ledger.count(ACCEPTED) == 0  # both older than a day by now
