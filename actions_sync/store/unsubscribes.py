"""Unsubscribes held in the Actions store (SPEC S9, read by S10).

One row per person who unsubscribed, whatever the side it came from. Re-subscribes never
sync (S9), so a row is never removed by the sync: the table only grows.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import BigInteger, Column, DateTime, Engine, String, Table, select
from sqlalchemy.exc import OperationalError

from actions_sync.errors import Retriable
from actions_sync.store.tables import metadata

__all__ = ["unsubscribed", "unsubscribes"]

unsubscribes = Table(
    "unsubscribes",
    metadata,
    Column("marketo_id", BigInteger, primary_key=True, autoincrement=False),
    Column("email", String(255)),
    # The contract's enum: CLICKED_LINK, BOUNCE, MANUAL, SALESFORCE_SYNC.
    Column("source", String(32), nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
)


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
