"""Unsubscribes held in the Actions store (SPEC S9, read by S10).

One row per person who unsubscribed, whatever the side it came from. Re-subscribes never
sync (S9), so a row is never removed by the sync: the table only grows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import BigInteger, Column, DateTime, Engine, String, Table, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import OperationalError

from actions_sync.errors import Retriable
from actions_sync.store.tables import metadata

__all__ = [
    "OptOutWrite",
    "optout_writes",
    "record_optout_writes",
    "unsubscribed",
    "unsubscribes",
    "written_optouts",
]

unsubscribes = Table(
    "unsubscribes",
    metadata,
    Column("marketo_id", BigInteger, primary_key=True, autoincrement=False),
    Column("email", String(255)),
    # The contract's enum: CLICKED_LINK, BOUNCE, MANUAL, SALESFORCE_SYNC.
    Column("source", String(32), nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
)

# What the sync itself set to true in Salesforce, once the API accepted it: the Salesforce
# source drops an opt-out equal to what the sync last wrote (DESIGN: no echo loops).
optout_writes = Table(
    "salesforce_optout_writes",
    metadata,
    Column("sfdc_id", String(18), primary_key=True),  # always the 18-character form
    Column("field", String(64), primary_key=True),  # HasOptedOutOfEmail or a custom __c
    Column("sobject", String(16), nullable=False),
    Column("marketo_id", BigInteger, nullable=False),
    Column("written_at", DateTime(timezone=True), nullable=False),
)


@dataclass(frozen=True)
class OptOutWrite:
    sfdc_id: str
    field: str
    sobject: str
    marketo_id: int
    written_at: datetime


def unsubscribed(engine: Engine, marketo_ids: Iterable[int]) -> set[int]:
    """Which of `marketo_ids` the store holds an unsubscribe for."""
    ids = list(set(marketo_ids))
    if not ids:
        return set()
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(unsubscribes.c.marketo_id)
                                .where(unsubscribes.c.marketo_id.in_(ids)))
            return {int(r[0]) for r in rows}
    except OperationalError as exc:
        raise Retriable(f"reading unsubscribes failed: {exc.orig}") from exc


def record_optout_writes(engine: Engine, writes: Sequence[OptOutWrite]) -> None:
    """Remember opt-outs the sync set (a second write of the same one is a no-op)."""
    if not writes:
        return
    insert = sqlite_insert if engine.dialect.name == "sqlite" else pg_insert
    stmt = insert(optout_writes).on_conflict_do_nothing(index_elements=["sfdc_id", "field"])
    try:
        with engine.begin() as conn:
            conn.execute(stmt, [vars(w) for w in writes])
    except OperationalError as exc:
        raise Retriable(f"recording opt-out writes failed: {exc.orig}") from exc


def written_optouts(engine: Engine, field: str, sfdc_ids: Iterable[str]) -> set[str]:
    """Which of `sfdc_ids` (18-character) the sync itself set `field` true on."""
    ids = list(set(sfdc_ids))
    if not ids:
        return set()
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(optout_writes.c.sfdc_id)
                                .where(optout_writes.c.field == field)
                                .where(optout_writes.c.sfdc_id.in_(ids)))
            return {str(r[0]) for r in rows}
    except OperationalError as exc:
        raise Retriable(f"reading opt-out writes failed: {exc.orig}") from exc
