"""The last Task upsert the Salesforce Task sink delivered, by external id (SPEC S11).

A reminder worker killed between publishing a Task write and saving its row resolves the
redelivered change to the same write again (same fields, same `occurred_at`): the sink
sends it only if its digest differs from the one kept here for that Task
(`connectors.salesforce.payloads.delivered_before`). The digest is saved once the call
that delivered the upsert has answered, before the runner commits the offsets: a sink
killed in between sends the write once more, and that second upsert finds its fields
already in Salesforce (compare-before-write) and writes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from sqlalchemy import Column, DateTime, Engine, String, Table, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import OperationalError

from actions_sync.errors import Retriable
from actions_sync.store.tables import metadata

__all__ = ["digests", "record", "task_deliveries"]

task_deliveries = Table(
    "task_deliveries",
    metadata,
    Column("external_id", String(255), primary_key=True),  # ActionsSync_Id__c, case-folded
    Column("digest", String(64), nullable=False),  # sha256 of the last delivered upsert
    Column("delivered_at", DateTime(timezone=True), nullable=False),
)


def digests(engine: Engine, external_ids: Iterable[str]) -> dict[str, str]:
    """The digest of the last upsert delivered for any of `external_ids` (case-folded)."""
    ids = sorted({i.casefold() for i in external_ids})
    if not ids:
        return {}
    t = task_deliveries
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(t.c.external_id, t.c.digest).where(t.c.external_id.in_(ids)))
            return {str(r[0]): str(r[1]) for r in rows}
    except OperationalError as exc:
        raise Retriable(f"reading Task deliveries failed: {exc.orig}") from exc


def record(engine: Engine, delivered: Mapping[str, str], now: datetime) -> None:
    """Keep `delivered` (external id -> digest) as each Task's last delivered upsert."""
    if not delivered:
        return
    insert = sqlite_insert if engine.dialect.name == "sqlite" else pg_insert
    stmt = insert(task_deliveries)
    stmt = stmt.on_conflict_do_update(
        index_elements=["external_id"],
        set_={"digest": stmt.excluded.digest, "delivered_at": stmt.excluded.delivered_at},
    )
    rows = [
        {"external_id": k.casefold(), "digest": v, "delivered_at": now}
        for k, v in delivered.items()
    ]
    try:
        with engine.begin() as conn:
            conn.execute(stmt, rows)
    except OperationalError as exc:
        raise Retriable(f"recording Task deliveries failed: {exc.orig}") from exc
