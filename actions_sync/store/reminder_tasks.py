"""Reminder tasks held in the Actions store (SPEC S11), read by the Actions app.

One row per task, whichever side created it: the Actions side's values (task id, person,
subject, status, priority, due date, details, deleted), the Salesforce Task id once
known, and what the sync needs to resolve the next change (`streams.rules.reminders`):
per side the version last applied (`actions_version`, `salesforce_version`) and the
values last synced (the Actions side's are the row's own; Salesforce's, in Salesforce
terms, in `salesforce_synced`), per field the side and time of its last change
(`stamps`), and the sync's last write to Salesforce (`written_at`, `written`).
`unpushed`: stored while the sync was off, pushed by the catch-up when it is on again.

Writes are compare-and-set on `revision`: two workers (or a worker's two inputs) holding
the same task cannot overwrite each other's resolution; the loser reads and resolves again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Engine,
    Index,
    Integer,
    String,
    Table,
    Text,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError, OperationalError

from actions_sync.errors import Retriable
from actions_sync.store.admin_settings import settings_audit
from actions_sync.store.tables import metadata

__all__ = [
    "by_salesforce_id",
    "first_enabled",
    "load",
    "record_task_ids",
    "reminder_tasks",
    "save",
    "synced",
    "unpushed",
]

reminder_tasks = Table(
    "reminder_tasks",
    metadata,
    Column("task_id", String(64), primary_key=True),
    Column("marketo_id", BigInteger),  # the person
    Column("subject", String(255), nullable=False),
    Column("status", String(16), nullable=False),  # OPEN, COMPLETE
    Column("priority", String(16), nullable=False),  # NORMAL, HIGH
    Column("due_date", Date),
    Column("details", Text),
    Column("deleted", Boolean, nullable=False),
    Column("sfdc_task_id", String(18)),  # always the 18-character form
    Column("actions_version", DateTime(timezone=True)),
    Column("salesforce_version", DateTime(timezone=True)),
    Column("salesforce_synced", JSON, nullable=False),  # Task field -> value last synced
    Column("stamps", JSON, nullable=False),  # field -> [ISO time, side]
    Column("written_at", DateTime(timezone=True)),
    Column("written", JSON, nullable=False),  # Task fields of the last write
    Column("unpushed", Boolean, nullable=False),
    Column("revision", Integer, nullable=False),  # compare-and-set
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_reminder_tasks_sfdc_task_id", "sfdc_task_id"),
    Index("ix_reminder_tasks_unpushed", "unpushed"),
)

Row = dict[str, Any]


def _aware(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _rows(engine: Engine, query: Any) -> list[Row]:
    try:
        with engine.connect() as conn:
            return [{k: _aware(v) for k, v in r._mapping.items()} for r in conn.execute(query)]
    except OperationalError as exc:
        raise Retriable(f"reading reminder tasks failed: {exc.orig}") from exc


def load(engine: Engine, task_ids: Iterable[str]) -> dict[str, Row]:
    """The stored rows of `task_ids` (absent: not known yet)."""
    ids = sorted(set(task_ids))
    if not ids:
        return {}
    t = reminder_tasks
    return {r["task_id"]: r for r in _rows(engine, select(t).where(t.c.task_id.in_(ids)))}


def by_salesforce_id(engine: Engine, sfdc_ids: Iterable[str]) -> dict[str, Row]:
    """18-character Task id -> its stored row."""
    ids = sorted(set(sfdc_ids))
    if not ids:
        return {}
    t = reminder_tasks
    return {r["sfdc_task_id"]: r for r in _rows(engine, select(t).where(t.c.sfdc_task_id.in_(ids)))}


def unpushed(engine: Engine, after: str, limit: int) -> list[Row]:
    """Rows stored while the sync was off, in task-id order after `after`."""
    t = reminder_tasks
    return _rows(
        engine,
        select(t)
        .where(t.c.unpushed.is_(True), t.c.task_id > after)
        .order_by(t.c.task_id)
        .limit(limit),
    )


def record_task_ids(engine: Engine, ids: Mapping[str, str], now: datetime) -> int:
    """Set the Salesforce Task id (18 characters) of tasks that lack it, by task id; how
    many were set. The revision moves on, so a resolution holding the row without it is
    done again (compare-and-set) rather than saving the id away."""
    t = reminder_tasks
    set_ = 0
    try:
        with engine.begin() as conn:
            for task_id, sfdc_id in ids.items():
                set_ += conn.execute(
                    update(t)
                    .where(t.c.task_id == task_id, t.c.sfdc_task_id.is_(None))
                    .values(sfdc_task_id=sfdc_id, revision=t.c.revision + 1, updated_at=now)
                ).rowcount
    except OperationalError as exc:
        raise Retriable(f"recording Task ids failed: {exc.orig}") from exc
    return set_


def save(engine: Engine, rows: Sequence[Mapping[str, Any]], now: datetime) -> set[str]:
    """Write each row if its `revision` is still the stored one (0: a new task); the
    task ids that lost the race (resolve them again from what is stored now)."""
    lost: set[str] = set()
    t = reminder_tasks
    try:
        with engine.begin() as conn:
            for row in rows:
                held = row["revision"]
                values = {**row, "revision": held + 1, "updated_at": now}
                if held == 0:
                    try:
                        with conn.begin_nested():
                            conn.execute(insert(t).values(values))
                    except IntegrityError:
                        lost.add(row["task_id"])
                    continue
                done = conn.execute(
                    update(t)
                    .where(t.c.task_id == row["task_id"], t.c.revision == held)
                    .values(values)
                )
                if done.rowcount != 1:
                    lost.add(row["task_id"])
    except OperationalError as exc:
        raise Retriable(f"writing reminder tasks failed: {exc.orig}") from exc
    return lost


def first_enabled(engine: Engine, key: str = "reminder_task_sync") -> datetime | None:
    """When the admin first turned `key` on (the audit's oldest change to true), if ever."""
    a = settings_audit
    rows = _rows(
        engine,
        select(a.c.changed_at)
        .where(a.c.key == key, a.c.new_value == "true")
        .order_by(a.c.id)
        .limit(1),
    )
    return rows[0]["changed_at"] if rows else None


def synced(
    engine: Engine, task_ids: Iterable[str], sfdc_ids: Iterable[str]
) -> dict[str, dict[str, Any]]:
    """The Task fields last synced, by task id and by 18-character Task id (the Salesforce
    source's compare-before-write), with the Task's `Id` as the store knows it (None: not
    yet)."""
    rows = list(load(engine, [i for i in task_ids if i]).values())
    rows += by_salesforce_id(engine, [i for i in sfdc_ids if len(i) == 18]).values()
    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        out[row["task_id"]] = dict(row["salesforce_synced"]) | {"Id": row["sfdc_task_id"]}
        if row["sfdc_task_id"]:
            out[row["sfdc_task_id"]] = out[row["task_id"]]
    return out
