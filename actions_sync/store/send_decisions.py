"""Send-check decisions already given, by check id (SPEC S10: one decision per check).

A check is answered at least once (the offset is committed after the broker acknowledged
the decision); a replay after a crash or a rebalance must answer it the *same* way, not
anew: by then its deadline has passed and a fresh decision would be CHECK_UNAVAILABLE
where the seller was already told OK. So every decision is written here before it is
published (insert-if-absent: the first writer wins, also when two workers hold a check
during a rebalance) and what is published is what this table holds. Rows are only needed
for the uncommitted tail of the topic: they are pruned after a day.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Boolean, Column, DateTime, Engine, Index, String, Table, delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import OperationalError

from actions_sync.errors import Retriable
from actions_sync.store.tables import metadata

__all__ = ["Given", "given", "prune", "record", "send_decisions"]

send_decisions = Table(
    "send_decisions",
    metadata,
    Column("check_id", String(255), primary_key=True),
    Column("allowed", Boolean, nullable=False),
    Column("reason", String(32), nullable=False),  # the SendDecision reason symbol
    Column("decided_at", DateTime(timezone=True), nullable=False),
    Index("ix_send_decisions_decided_at", "decided_at"),
)


@dataclass(frozen=True, slots=True)
class Given:
    check_id: str
    allowed: bool
    reason: str
    decided_at: datetime


def given(engine: Engine, check_ids: Iterable[str]) -> dict[str, Given]:
    """The decisions already given for any of `check_ids`."""
    ids = list(set(check_ids))
    if not ids:
        return {}
    t = send_decisions
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(t.c.check_id, t.c.allowed, t.c.reason, t.c.decided_at).where(
                    t.c.check_id.in_(ids)
                )
            ).all()
    except OperationalError as exc:
        raise Retriable(f"reading send decisions failed: {exc.orig}") from exc
    return {r[0]: Given(r[0], bool(r[1]), str(r[2]), r[3]) for r in rows}


def record(engine: Engine, decisions: Sequence[Given]) -> dict[str, Given]:
    """Write decisions not given before; answer what the table holds for each (an
    earlier decision of the same check wins over the new one)."""
    if not decisions:
        return {}
    insert = sqlite_insert if engine.dialect.name == "sqlite" else pg_insert
    stmt = insert(send_decisions).on_conflict_do_nothing(index_elements=["check_id"])
    try:
        with engine.begin() as conn:
            conn.execute(
                stmt,
                [
                    {
                        "check_id": d.check_id,
                        "allowed": d.allowed,
                        "reason": d.reason,
                        "decided_at": d.decided_at,
                    }
                    for d in decisions
                ],
            )
    except OperationalError as exc:
        raise Retriable(f"recording send decisions failed: {exc.orig}") from exc
    return given(engine, (d.check_id for d in decisions))


def prune(engine: Engine, before: datetime) -> int:
    """Forget decisions given before then; return how many rows went."""
    try:
        with engine.begin() as conn:
            result = conn.execute(
                delete(send_decisions).where(send_decisions.c.decided_at < before)
            )
    except OperationalError as exc:
        raise Retriable(f"pruning send decisions failed: {exc.orig}") from exc
    return max(int(result.rowcount), 0)
