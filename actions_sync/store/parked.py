"""Parked records: input records waiting for something that has not arrived yet.

The activity router parks a sales activity whose person is not (yet) in the store, and
retries it until the person arrives or the parking time runs out. The original record
(key, value and position) is kept, so that it can be routed, or dead-lettered with its
true origin, by whichever worker picks it up later — and it survives a restart.

`next_try_at` doubles as a lease: a worker claims a due row by moving it forward, so two
workers never retry the same row at once, and a worker that dies mid-retry only delays
it by one interval.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Engine,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import OperationalError

from actions_sync.errors import Retriable
from actions_sync.store.tables import metadata

__all__ = ["Parked", "claim_due", "count", "park", "parked_activities", "remove"]

parked_activities = Table(
    "parked_activities",
    metadata,
    Column("activity_id", String(64), primary_key=True),
    Column("marketo_id", BigInteger, nullable=False),
    Column("source_topic", String(255), nullable=False),
    Column("source_partition", Integer, nullable=False),
    Column("source_offset", BigInteger, nullable=False),
    Column("key", LargeBinary),
    Column("value", LargeBinary),
    Column("parked_at", DateTime(timezone=True), nullable=False),
    Column("next_try_at", DateTime(timezone=True), nullable=False),
    Column("attempts", Integer, nullable=False),
    Index("ix_parked_activities_next_try_at", "next_try_at"),
)


@dataclass(frozen=True)
class Parked:
    activity_id: str
    marketo_id: int
    source_topic: str
    source_partition: int
    source_offset: int
    key: bytes | None
    value: bytes | None
    parked_at: datetime


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def park(engine: Engine, records: Sequence[Parked], retry_s: float) -> int:
    """Park records (a record parked already keeps its first parking time)."""
    if not records:
        return 0
    insert = sqlite_insert if engine.dialect.name == "sqlite" else pg_insert
    stmt = insert(parked_activities).on_conflict_do_nothing(index_elements=["activity_id"])
    rows = [
        {**vars(r), "next_try_at": r.parked_at + timedelta(seconds=retry_s), "attempts": 0}
        for r in records
    ]
    try:
        with engine.begin() as conn:
            conn.execute(stmt, rows)
    except OperationalError as exc:
        raise Retriable(f"parking failed: {exc.orig}") from exc
    return len(rows)


def claim_due(engine: Engine, now: datetime, lease_s: float, limit: int = 500) -> list[Parked]:
    """Claim up to `limit` rows due by `now` until `now + lease_s`; oldest first."""
    until = now + timedelta(seconds=lease_s)
    claimed: list[Parked] = []
    try:
        with engine.begin() as conn:
            due = conn.execute(
                select(parked_activities)
                .where(parked_activities.c.next_try_at <= now)
                .order_by(parked_activities.c.parked_at)
                .limit(limit)
            ).all()
            for row in due:
                won = conn.execute(
                    update(parked_activities)
                    .where(parked_activities.c.activity_id == row.activity_id)
                    .where(parked_activities.c.next_try_at <= now)
                    .values(next_try_at=until, attempts=parked_activities.c.attempts + 1)
                )
                if won.rowcount == 1:
                    claimed.append(
                        Parked(
                            row.activity_id,
                            row.marketo_id,
                            row.source_topic,
                            row.source_partition,
                            row.source_offset,
                            row.key,
                            row.value,
                            _aware(row.parked_at),
                        )
                    )
    except OperationalError as exc:
        raise Retriable(f"claiming parked records failed: {exc.orig}") from exc
    return claimed


def remove(engine: Engine, activity_ids: Sequence[str]) -> None:
    """Forget records that were routed or dead-lettered."""
    if not activity_ids:
        return
    with engine.begin() as conn:
        conn.execute(
            delete(parked_activities).where(parked_activities.c.activity_id.in_(list(activity_ids)))
        )


def count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(parked_activities)).scalar_one())
