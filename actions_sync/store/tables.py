"""The Actions store's tables (SQLAlchemy Core). The Actions app reads them: names are fixed.

Schema changes go through an Alembic migration in `migrations/versions/`; a test asserts
the migrations produce exactly these tables.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, DateTime, Index, MetaData, String, Table, Text

from actions_sync.person_rows import PERSON_FIELDS

__all__ = ["PERSON_FIELDS", "checkpoints", "metadata", "persons"]

metadata = MetaData()

persons = Table(
    "persons",
    metadata,
    Column("marketo_id", BigInteger, primary_key=True, autoincrement=False),
    *(Column(name, String(255)) for name in PERSON_FIELDS),
    # The source version applied: an older change never overwrites a newer one.
    Column("changed_at", DateTime(timezone=True), nullable=False),
    # Null while the person is in Actions; set when the owner is removed or the lead deleted.
    Column("removed_at", DateTime(timezone=True)),
    # When the sync wrote the row (for latency measurement and audit).
    Column("synced_at", DateTime(timezone=True), nullable=False),
    # Ties of `changed_at` (Marketo's one-second resolution): the change's offset on its
    # partition, so that of two changes with one `changed_at` the later in the log wins.
    # -1 for rows written without one (before migration 0006, or by `Store.apply_people`
    # callers that give none).
    Column("log_position", BigInteger, nullable=False, server_default="-1"),
    Index("ix_persons_email", "email"),
)

# Where a source connector is in its source (an export job and window, a paging token),
# as JSON, so that a restarted connector resumes instead of starting over.
checkpoints = Table(
    "checkpoints",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("value", Text, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
