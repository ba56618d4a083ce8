"""The Marketo delivery ledger: which sales activities Marketo already holds.

Marketo custom activities are write-once and never de-duplicated: a batch sent twice is
written twice. So the sink writes down what it sends *before* sending (pending, under a
claim: the id of that one send attempt) and what Marketo accepted *after* (accepted,
with Marketo's activity id). A pending row after a crash or an unanswered call means
"maybe written": the sink reconciles it against Marketo before sending it again.

The primary key is the claim's lock: a row is inserted by exactly one sender (insert-if-
absent), so two workers that both hold a record during a rebalance never both send it.
Rows are only deleted under the claim they were read with, so a reconciliation never
drops a newer attempt's row.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Engine,
    Index,
    Integer,
    String,
    Table,
    and_,
    delete,
    select,
    tuple_,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import OperationalError

from actions_sync.errors import Retriable
from actions_sync.store.tables import metadata

__all__ = ["ACCEPTED", "PENDING", "Entry", "Ledger", "marketo_ledger"]

PENDING, ACCEPTED = "pending", "accepted"

marketo_ledger = Table(
    "marketo_ledger",
    metadata,
    Column("activity_id", String(64), primary_key=True),
    Column("state", String(16), nullable=False),  # pending | accepted
    Column("claim", String(32), nullable=False),  # the send attempt that wrote the row
    Column("lead_id", BigInteger, nullable=False),
    Column("type_id", Integer, nullable=False),
    Column("sent_at", DateTime(timezone=True), nullable=False),  # claimed, before the send
    Column("marketo_id", BigInteger),  # Marketo's activity id, once accepted
    Column("marketo_guid", String(64)),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_marketo_ledger_state_sent_at", "state", "sent_at"),
)


@dataclass(frozen=True)
class Entry:
    activity_id: str
    state: str
    claim: str
    lead_id: int
    type_id: int
    sent_at: datetime


@dataclass(frozen=True)
class Accepted:
    activity_id: str
    lead_id: int
    type_id: int
    marketo_id: int | None
    marketo_guid: str | None


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


class Ledger:
    """The ledger in the store behind `engine` (SQLite or PostgreSQL)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._insert = sqlite_insert if engine.dialect.name == "sqlite" else pg_insert

    def entries(self, activity_ids: Iterable[str]) -> dict[str, Entry]:
        ids = list(set(activity_ids))
        if not ids:
            return {}
        t = marketo_ledger
        query = select(
            t.c.activity_id, t.c.state, t.c.claim, t.c.lead_id, t.c.type_id, t.c.sent_at
        ).where(t.c.activity_id.in_(ids))
        with self._connect() as conn:
            return {
                row.activity_id: Entry(
                    row.activity_id,
                    row.state,
                    row.claim,
                    row.lead_id,
                    row.type_id,
                    _aware(row.sent_at),
                )
                for row in conn.execute(query)
            }

    def claim(self, rows: Sequence[tuple[str, int, int]], claim: str, now: datetime) -> set[str]:
        """Mark (activity_id, lead_id, type_id) rows pending under `claim`, durably, unless
        a row exists already; return the ids this claim now holds."""
        if not rows:
            return set()
        values = [
            {
                "activity_id": a,
                "state": PENDING,
                "claim": claim,
                "lead_id": lead,
                "type_id": type_id,
                "sent_at": now,
                "updated_at": now,
            }
            for a, lead, type_id in rows
        ]
        t = marketo_ledger
        with self._begin() as conn:
            conn.execute(self._insert(t).on_conflict_do_nothing(), values)
            held = conn.execute(
                select(t.c.activity_id).where(
                    t.c.claim == claim, t.c.activity_id.in_([r[0] for r in rows])
                )
            )
            return {row.activity_id for row in held}

    def accept(self, rows: Sequence[Accepted], now: datetime) -> None:
        """Marketo holds these activities (whoever's claim the rows were under)."""
        if not rows:
            return
        values = [
            {
                "activity_id": r.activity_id,
                "state": ACCEPTED,
                "claim": "",
                "lead_id": r.lead_id,
                "type_id": r.type_id,
                "sent_at": now,
                "marketo_id": r.marketo_id,
                "marketo_guid": r.marketo_guid,
                "updated_at": now,
            }
            for r in rows
        ]
        stmt = self._insert(marketo_ledger)
        stmt = stmt.on_conflict_do_update(
            index_elements=[marketo_ledger.c.activity_id],
            set_={
                c: stmt.excluded[c] for c in ("state", "marketo_id", "marketo_guid", "updated_at")
            },
        )
        with self._begin() as conn:
            conn.execute(stmt, values)

    def release(self, entries: Iterable[tuple[str, str]]) -> None:
        """Delete pending rows (activity_id, claim): not written, free to send again."""
        pairs = list(entries)
        if not pairs:
            return
        t = marketo_ledger
        with self._begin() as conn:
            conn.execute(
                delete(t).where(
                    and_(t.c.state == PENDING, tuple_(t.c.activity_id, t.c.claim).in_(pairs))
                )
            )

    def prune(self, accepted_before: datetime) -> int:
        """Forget activities Marketo accepted before then (the table would grow by one
        row per activity forever); return how many rows went."""
        t = marketo_ledger
        with self._begin() as conn:
            result = conn.execute(
                delete(t).where(and_(t.c.state == ACCEPTED, t.c.sent_at < accepted_before))
            )
        return max(int(result.rowcount), 0)

    def count(self, state: str | None = None) -> int:
        query = select(marketo_ledger.c.activity_id)
        if state:
            query = query.where(marketo_ledger.c.state == state)
        with self._connect() as conn:
            return len(conn.execute(query).all())

    def _connect(self) -> Any:
        return _Guard(self.engine.connect())

    def _begin(self) -> Any:
        return _Guard(self.engine.begin())


class _Guard:
    """A store that is down or locked is a transient failure (`Retriable`)."""

    def __init__(self, context: Any) -> None:
        self._context = context

    def __enter__(self) -> Any:
        try:
            return self._context.__enter__()
        except OperationalError as exc:
            raise Retriable(f"ledger: store unreachable: {exc.orig}") from exc

    def __exit__(self, *exc: Any) -> Any:
        try:
            return self._context.__exit__(*exc)
        except OperationalError as err:
            raise Retriable(f"ledger: write failed: {err.orig}") from err
