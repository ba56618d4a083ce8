"""Admin settings in the store (SPEC S12): the current values and the audit of every change.

`settings` holds one row per setting that an admin has changed (a missing row means the
default); `settings_audit` one row per change. A change writes both in one transaction,
so there is never a change without its audit row, nor the reverse. Values are JSON; the
store does not know what they mean (`actions_sync.admin` validates them).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Engine,
    Integer,
    String,
    Table,
    Text,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import OperationalError

from actions_sync.errors import Retriable
from actions_sync.store.tables import metadata

__all__ = ["AuditEntry", "Snapshot", "audit_log", "read", "settings", "settings_audit", "write"]

settings = Table(
    "settings",
    metadata,
    Column("key", String(100), primary_key=True),
    Column("value", Text, nullable=False),  # JSON
    Column("version", Integer, nullable=False),  # 1 on the first change, +1 on each
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("updated_by", String(255), nullable=False),
)

settings_audit = Table(
    "settings_audit",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("changed_at", DateTime(timezone=True), nullable=False),
    Column("changed_by", String(255), nullable=False),
    Column("key", String(100), nullable=False),
    Column("old_value", Text),  # JSON; null when the setting had its default
    Column("new_value", Text, nullable=False),  # JSON
)


@dataclass(frozen=True)
class Snapshot:
    """Every changed setting (key -> value) and the revision: the newest audit id."""

    values: dict[str, Any]
    revision: int


@dataclass(frozen=True)
class AuditEntry:
    id: int
    changed_at: datetime
    changed_by: str
    key: str
    old_value: Any
    new_value: Any

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "changed_at": self.changed_at.isoformat(),
            "changed_by": self.changed_by,
            "key": self.key,
            "old_value": self.old_value,
            "new_value": self.new_value,
        }


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def read(engine: Engine) -> Snapshot:
    """The stored settings and their revision, read in one transaction."""
    try:
        with engine.begin() as conn:
            rows = conn.execute(select(settings.c.key, settings.c.value)).all()
            revision = conn.execute(select(func.max(settings_audit.c.id))).scalar_one()
    except OperationalError as exc:
        raise Retriable(f"settings read failed: {exc.orig}") from exc
    return Snapshot({key: json.loads(value) for key, value in rows}, int(revision or 0))


def write(engine: Engine, key: str, value: Any, who: str, default: Any = None) -> AuditEntry:
    """Set `key` to `value` and audit it, in one transaction; returns the audit entry.

    The audit's old value is the stored one, or `default` when the setting had none.
    """
    now = datetime.now(UTC)
    new = json.dumps(value)
    try:
        with engine.begin() as conn:
            # FOR UPDATE serialises two admins changing the same key (PostgreSQL; SQLite
            # serialises all writers anyway), so old_value is the value actually replaced.
            old = conn.execute(
                select(settings.c.value, settings.c.version)
                .where(settings.c.key == key)
                .with_for_update()
            ).first()
            if old is None:
                conn.execute(
                    insert(settings).values(
                        key=key, value=new, version=1, updated_at=now, updated_by=who
                    )
                )
            else:
                conn.execute(
                    update(settings)
                    .where(settings.c.key == key)
                    .values(value=new, version=old.version + 1, updated_at=now, updated_by=who)
                )
            audit_id = conn.execute(
                insert(settings_audit).values(
                    changed_at=now,
                    changed_by=who,
                    key=key,
                    old_value=old.value if old else json.dumps(default),
                    new_value=new,
                )
            ).inserted_primary_key
    except OperationalError as exc:
        raise Retriable(f"settings write failed: {exc.orig}") from exc
    assert audit_id is not None
    return AuditEntry(
        int(audit_id[0]), now, who, key, json.loads(old.value) if old else default, value
    )


def audit_log(engine: Engine, limit: int = 100) -> list[AuditEntry]:
    """The newest `limit` changes, newest first."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(settings_audit).order_by(settings_audit.c.id.desc()).limit(limit)
        ).all()
    return [
        AuditEntry(
            r.id,
            _aware(r.changed_at),
            r.changed_by,
            r.key,
            json.loads(r.old_value) if r.old_value is not None else None,
            json.loads(r.new_value),
        )
        for r in rows
    ]
