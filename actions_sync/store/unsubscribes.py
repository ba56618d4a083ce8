"""Unsubscribes held in the Actions store (SPEC S9, read by S10).

One row per person who unsubscribed, whatever the side it came from. Re-subscribes never
sync (S9), so a row is never removed by the sync: the table only grows. Per side, the row
says what was last synced: `pushed_at` (its opt-outs went to Salesforce; null while
`unsynced` says why not: sync_off, person_unknown, no_salesforce_id) and, for one that
came from Salesforce, the record it came from (`sfdc_id`).

`salesforce_optouts_held`: opt-outs set in Salesforce that the agent could not apply yet
(no person in the store has the record, or the sync was off), applied when that changes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Engine,
    Index,
    String,
    Table,
    and_,
    case,
    delete,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError

from actions_sync.errors import Retriable
from actions_sync.store.tables import metadata, persons

__all__ = [
    "HeldOptOut",
    "OptOutWrite",
    "drop_held",
    "held",
    "held_optouts",
    "hold_optouts",
    "mark_pushed",
    "optout_writes",
    "people_by_salesforce_id",
    "record_optout_writes",
    "store_unsubscribes",
    "to_push",
    "unsubscribed",
    "unsubscribed_in",
    "unsubscribes",
    "written_optouts",
    "written_since",
]

unsubscribes = Table(
    "unsubscribes",
    metadata,
    Column("marketo_id", BigInteger, primary_key=True, autoincrement=False),
    Column("email", String(255)),
    # The contract's enum: CLICKED_LINK, BOUNCE, MANUAL, SALESFORCE_SYNC.
    Column("source", String(32), nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("event_id", String(36)),  # the event that stored it
    Column("sfdc_id", String(18)),  # SALESFORCE_SYNC: the Lead or Contact it came from
    Column("pushed_at", DateTime(timezone=True)),  # its opt-outs were sent to Salesforce
    Column("unsynced", String(32)),  # why not (yet): sync_off, no_salesforce_id, ...
    # The catch-up reads the rows not pushed yet.
    Index("ix_unsubscribes_unpushed", "pushed_at"),
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
    # When the unsubscribe written happened: a redelivered or older one is not written
    # again; a newer one (the person unsubscribed again after an uncheck) is.
    Column("occurred_at", DateTime(timezone=True)),
)

held_optouts = Table(
    "salesforce_optouts_held",
    metadata,
    Column("sfdc_id", String(18), primary_key=True),
    Column("field", String(64), primary_key=True),
    Column("sobject", String(16), nullable=False),
    Column("email", String(255)),
    Column("event_id", String(36), nullable=False),
    Column("system_modstamp", DateTime(timezone=True), nullable=False),
    Column("reason", String(32), nullable=False),  # salesforce_record_unknown, sync_off
    Column("held_at", DateTime(timezone=True), nullable=False),
)

# A Salesforce opt-out finds its people by these (migration 0005).
Index("ix_persons_sfdc_lead_id", persons.c.sfdc_lead_id)
Index("ix_persons_sfdc_contact_id", persons.c.sfdc_contact_id)


@dataclass(frozen=True)
class OptOutWrite:
    sfdc_id: str
    field: str
    sobject: str
    marketo_id: int
    written_at: datetime
    occurred_at: datetime | None = None


def unsubscribed(engine: Engine, marketo_ids: Iterable[int]) -> set[int]:
    """Which of `marketo_ids` the store holds an unsubscribe for."""
    ids = list(set(marketo_ids))
    if not ids:
        return set()
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(unsubscribes.c.marketo_id).where(unsubscribes.c.marketo_id.in_(ids))
            )
            return {int(r[0]) for r in rows}
    except OperationalError as exc:
        raise Retriable(f"reading unsubscribes failed: {exc.orig}") from exc


def record_optout_writes(engine: Engine, writes: Sequence[OptOutWrite]) -> None:
    """Remember opt-outs the sync set (a second write of the same one is a no-op; a
    newer unsubscribe's write moves `occurred_at` forward)."""
    if not writes:
        return
    newest: dict[tuple[str, str], OptOutWrite] = {}
    for w in writes:  # PostgreSQL refuses to update one row twice in a statement
        held = newest.get((w.sfdc_id, w.field))
        if held is None or _later(w.occurred_at, held.occurred_at):
            newest[(w.sfdc_id, w.field)] = w
    insert = sqlite_insert if engine.dialect.name == "sqlite" else pg_insert
    stmt = insert(optout_writes)
    current, offered = optout_writes.c.occurred_at, stmt.excluded.occurred_at
    newer = or_(current.is_(None), and_(offered.is_not(None), offered > current))
    stmt = stmt.on_conflict_do_update(
        index_elements=["sfdc_id", "field"],
        set_={
            "occurred_at": case((newer, offered), else_=current),
            "written_at": case((newer, stmt.excluded.written_at), else_=optout_writes.c.written_at),
        },
    )
    try:
        with engine.begin() as conn:
            conn.execute(stmt, [vars(w) for w in newest.values()])
    except OperationalError as exc:
        raise Retriable(f"recording opt-out writes failed: {exc.orig}") from exc


def _later(a: datetime | None, b: datetime | None) -> bool:
    return b is None or (a is not None and a > b)


def written_since(
    engine: Engine, wanted: Sequence[tuple[str, str, datetime]]
) -> set[tuple[str, str]]:
    """Which (sfdc_id, field) of `wanted` (sfdc_id, field, occurred_at) the sync already
    wrote for an unsubscribe at least as recent: writing them again changes nothing."""
    if not wanted:
        return set()
    ids = {w[0] for w in wanted}
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(
                    optout_writes.c.sfdc_id, optout_writes.c.field, optout_writes.c.occurred_at
                ).where(optout_writes.c.sfdc_id.in_(ids))
            )
            held = {(r[0], r[1]): _aware(r[2]) for r in rows}
    except OperationalError as exc:
        raise Retriable(f"reading opt-out writes failed: {exc.orig}") from exc
    return {
        (i, f)
        for i, f, at in wanted
        if (i, f) in held and (held[(i, f)] is None or held[(i, f)] >= _aware(at))
    }


def written_optouts(engine: Engine, field: str, sfdc_ids: Iterable[str]) -> set[str]:
    """Which of `sfdc_ids` (18-character) the sync itself set `field` true on."""
    ids = list(set(sfdc_ids))
    if not ids:
        return set()
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(optout_writes.c.sfdc_id)
                .where(optout_writes.c.field == field)
                .where(optout_writes.c.sfdc_id.in_(ids))
            )
            return {str(r[0]) for r in rows}
    except OperationalError as exc:
        raise Retriable(f"reading opt-out writes failed: {exc.orig}") from exc


def _aware(value: Any) -> Any:
    """SQLite hands back naive datetimes; everything stored is UTC."""
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _insert(engine: Engine) -> Any:
    return sqlite_insert if engine.dialect.name == "sqlite" else pg_insert


def store_unsubscribes(engine: Engine, rows: Sequence[Mapping[str, Any]]) -> set[int]:
    """Store unsubscribes (the first one of a person stays: the table only grows); the
    Marketo ids that were new."""
    if not rows:
        return set()
    first: dict[int, Mapping[str, Any]] = {}
    for row in rows:
        first.setdefault(int(row["marketo_id"]), row)
    columns = ("email", "source", "occurred_at", "event_id", "sfdc_id", "pushed_at", "unsynced")
    values = [{"marketo_id": mid, **{c: row.get(c) for c in columns}} for mid, row in first.items()]
    try:
        with engine.begin() as conn:
            before = unsubscribed_in(conn, first)
            conn.execute(
                _insert(engine)(unsubscribes).on_conflict_do_nothing(index_elements=["marketo_id"]),
                values,
            )
    except OperationalError as exc:
        raise Retriable(f"storing unsubscribes failed: {exc.orig}") from exc
    return set(first) - before


def unsubscribed_in(conn: Connection, marketo_ids: Iterable[int]) -> set[int]:
    ids = list(marketo_ids)
    if not ids:
        return set()
    rows = conn.execute(select(unsubscribes.c.marketo_id).where(unsubscribes.c.marketo_id.in_(ids)))
    return {int(r[0]) for r in rows}


def mark_pushed(engine: Engine, outcomes: Mapping[int, str | None], at: datetime) -> None:
    """Per Marketo id: pushed now (None), or why not (the reason is kept for the catch-up).
    A row pushed once stays pushed."""
    pushed = [mid for mid, reason in outcomes.items() if reason is None]
    held: dict[str, list[int]] = {}
    for mid, reason in outcomes.items():
        if reason is not None:
            held.setdefault(reason, []).append(mid)
    table = unsubscribes
    try:
        with engine.begin() as conn:
            if pushed:
                conn.execute(
                    update(table)
                    .where(table.c.marketo_id.in_(pushed))
                    .values(pushed_at=at, unsynced=None)
                )
            for reason, ids in held.items():
                conn.execute(
                    update(table)
                    .where(table.c.marketo_id.in_(ids))
                    .where(table.c.pushed_at.is_(None))
                    .values(unsynced=reason)
                )
    except OperationalError as exc:
        raise Retriable(f"marking unsubscribes pushed failed: {exc.orig}") from exc


def to_push(
    engine: Engine, id_columns: Sequence[str], after: int, limit: int
) -> list[dict[str, Any]]:
    """Unsubscribes captured in Actions and never pushed, whose person now has one of the
    Salesforce ids `id_columns` (of `persons`), in Marketo id order after `after`: the
    catch-up's work."""
    u, p = unsubscribes, persons
    query = (
        select(u.c.marketo_id, u.c.email, u.c.source, u.c.occurred_at, u.c.event_id)
        .join(p, p.c.marketo_id == u.c.marketo_id)
        .where(
            u.c.pushed_at.is_(None),
            u.c.source != "SALESFORCE_SYNC",
            u.c.marketo_id > after,
            or_(*(p.c[c].is_not(None) for c in id_columns)),
        )
        .order_by(u.c.marketo_id)
        .limit(limit)
    )
    try:
        with engine.connect() as conn:
            return [{k: _aware(v) for k, v in r._mapping.items()} for r in conn.execute(query)]
    except OperationalError as exc:
        raise Retriable(f"reading unsubscribes failed: {exc.orig}") from exc


def people_by_salesforce_id(
    engine: Engine, sfdc_ids: Iterable[str]
) -> dict[str, list[dict[str, Any]]]:
    """18-character id -> the persons whose Lead or Contact id it is: stored in that
    18-character form, or in its 15-character form (the first 15, case-sensitive).
    Duplicates in Marketo make several people share one record (SPEC S5)."""
    ids = set(sfdc_ids)
    if not ids:
        return {}
    by_form = {i: i for i in ids} | {i[:15]: i for i in ids}
    p = persons
    query = select(p).where(
        or_(p.c.sfdc_lead_id.in_(sorted(by_form)), p.c.sfdc_contact_id.in_(sorted(by_form)))
    )
    out: dict[str, list[dict[str, Any]]] = {}
    try:
        with engine.connect() as conn:
            for row in conn.execute(query):
                person = {k: _aware(v) for k, v in row._mapping.items()}
                for column in ("sfdc_lead_id", "sfdc_contact_id"):
                    key = by_form.get(person[column] or "")
                    if key is not None and person not in out.get(key, []):
                        out.setdefault(key, []).append(person)
    except OperationalError as exc:
        raise Retriable(f"reading persons failed: {exc.orig}") from exc
    return out


@dataclass(frozen=True)
class HeldOptOut:
    sfdc_id: str
    field: str
    sobject: str
    email: str | None
    event_id: str
    system_modstamp: datetime
    reason: str
    held_at: datetime

    def as_optout(self) -> dict[str, Any]:
        """The `SalesforceOptOut` fields the rules read."""
        return {
            "event_id": self.event_id,
            "sobject": self.sobject,
            "sfdc_id": self.sfdc_id,
            "email": self.email,
            "field": self.field,
            "system_modstamp": self.system_modstamp,
        }


def hold_optouts(engine: Engine, held: Sequence[HeldOptOut]) -> None:
    """Keep opt-outs to apply later (the newest reason wins)."""
    if not held:
        return
    rows = {(h.sfdc_id, h.field): vars(h) for h in held}
    stmt = _insert(engine)(held_optouts)
    stmt = stmt.on_conflict_do_update(
        index_elements=["sfdc_id", "field"], set_={"reason": stmt.excluded.reason}
    )
    try:
        with engine.begin() as conn:
            conn.execute(stmt, list(rows.values()))
    except OperationalError as exc:
        raise Retriable(f"holding opt-outs failed: {exc.orig}") from exc


def held(engine: Engine, limit: int, after: tuple[str, str] = ("", "")) -> list[HeldOptOut]:
    """Held opt-outs in (sfdc_id, field) order after `after`."""
    h = held_optouts
    query = (
        select(h)
        .where(or_(h.c.sfdc_id > after[0], and_(h.c.sfdc_id == after[0], h.c.field > after[1])))
        .order_by(h.c.sfdc_id, h.c.field)
        .limit(limit)
    )
    try:
        with engine.connect() as conn:
            return [
                HeldOptOut(**{k: _aware(v) for k, v in r._mapping.items()})
                for r in conn.execute(query)
            ]
    except OperationalError as exc:
        raise Retriable(f"reading held opt-outs failed: {exc.orig}") from exc


def drop_held(engine: Engine, keys: Iterable[tuple[str, str]]) -> None:
    keys = list(keys)
    if not keys:
        return
    h = held_optouts
    try:
        with engine.begin() as conn:
            for sfdc_id, field in keys:
                conn.execute(delete(h).where(h.c.sfdc_id == sfdc_id, h.c.field == field))
    except OperationalError as exc:
        raise Retriable(f"dropping held opt-outs failed: {exc.orig}") from exc
