"""The Salesforce polling cursor: pure rules, one object at a time (API_NOTES.md, Reads).

A poll reads, in `(SystemModstamp, Id)` order, every row of the object changed since the
cursor, and re-reads a lookback window before it: a long transaction's rows become
visible after rows with a later SystemModstamp ("late commits"), so a cursor that only
moved forward would skip them for good. What the window re-reads was mostly processed
already; `seen` (Id -> SystemModstamp, within the window) drops it again, so each version
of a row is handed on once. Timestamps are not unique, hence the Id in the cursor; with
no lookback the keyset condition `SystemModstamp > :ts OR (SystemModstamp = :ts AND
Id > :id)` alone resumes exactly after the last row.

The position saved is the highest `(SystemModstamp, Id)` processed, never the wall clock
(the two clocks differ), except once: the first position of a new cursor is "now".

    stream = Stream("salesforce.optouts.Lead", "Lead", ("Email", "HasOptedOutOfEmail"),
                    where="HasOptedOutOfEmail = true", include_deleted=True)
    soql(stream, position, lookback)        -> the query of one poll
    fresh(rows, position)                   -> the rows not handed on yet
    advance(position, rows, lookback)       -> the position after a page
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = [
    "BASE_FIELDS",
    "Position",
    "Stream",
    "advance",
    "fresh",
    "parse_stamp",
    "soql",
    "soql_datetime",
]

# Read on every stream: the cursor, echo prevention and deletions need them.
BASE_FIELDS = ("Id", "SystemModstamp", "LastModifiedById", "IsDeleted")
Row = Mapping[str, Any]


@dataclass(frozen=True)
class Stream:
    """One object's changes: `name` is its checkpoint, `fields` what the mapping reads,
    `where` a SOQL condition narrowing the rows (the cursor stays correct: any change of
    a row moves its SystemModstamp), `include_deleted` reads through `queryAll`, so a row
    deleted before the poll is still seen (`IsDeleted` true), `first_back` how far before
    "now" its first position is."""

    name: str
    sobject: str
    fields: tuple[str, ...] = ()
    where: str = ""
    include_deleted: bool = False
    first_back: timedelta = timedelta(0)  # a stream never polled starts this long before now

    def selected(self) -> list[str]:
        return list(dict.fromkeys((*BASE_FIELDS, *self.fields)))


@dataclass(frozen=True)
class Position:
    """The last row processed, `(stamp, id)`, and the rows of the lookback window already
    processed (`seen`: Id -> stamp, ISO-8601 UTC with milliseconds, comparable as text)."""

    stamp: str
    id: str = ""
    seen: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def start(cls, now: datetime) -> Position:
        return cls(_iso(now))

    @classmethod
    def load(cls, saved: Mapping[str, Any]) -> Position:
        return cls(
            str(saved["stamp"]),
            str(saved.get("id", "")),
            {str(k): str(v) for k, v in dict(saved.get("seen", {})).items()},
        )

    def dump(self) -> dict[str, Any]:
        return {"stamp": self.stamp, "id": self.id, "seen": dict(self.seen)}


def parse_stamp(text: str) -> datetime:
    """Salesforce's `2026-11-23T18:00:00.000+0000` (or any ISO-8601 with a zone) -> UTC."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def soql_datetime(moment: datetime) -> str:
    """A SOQL datetime literal: `2026-11-23T18:00:00.000Z`."""
    utc = moment.astimezone(UTC)
    return f"{utc:%Y-%m-%dT%H:%M:%S}.{utc.microsecond // 1000:03d}Z"


def soql(stream: Stream, position: Position, lookback: timedelta) -> str:
    """The query of one poll: rows from the lookback window's start on, in cursor order."""
    at = parse_stamp(position.stamp)
    if lookback > timedelta(0):
        since = f"SystemModstamp >= {soql_datetime(at - lookback)}"
    elif position.id:
        literal = soql_datetime(at)
        since = (
            f"(SystemModstamp > {literal} OR (SystemModstamp = {literal} AND Id > '{position.id}'))"
        )
    else:
        since = f"SystemModstamp >= {soql_datetime(at)}"
    where = f"{since} AND ({stream.where})" if stream.where else since
    return (
        f"SELECT {', '.join(stream.selected())} FROM {stream.sobject} WHERE {where} "
        "ORDER BY SystemModstamp, Id"
    )


def fresh(rows: Sequence[Row], position: Position) -> list[Row]:
    """The rows whose version (Id, SystemModstamp) was not processed yet."""
    seen = position.seen
    out = []
    for row in rows:
        held = seen.get(str(row["Id"]))
        if held is None or held < _iso(parse_stamp(str(row["SystemModstamp"]))):
            out.append(row)
    return out


def advance(position: Position, rows: Sequence[Row], lookback: timedelta) -> Position:
    """The position once `rows` (a page, in cursor order) are processed: the highest
    `(stamp, id)`, and `seen` holding what the next lookback window will re-read."""
    if not rows:
        return position
    seen = dict(position.seen)
    last = (position.stamp, position.id)
    for row in rows:
        key = (_iso(parse_stamp(str(row["SystemModstamp"]))), str(row["Id"]))
        seen[key[1]] = max(seen.get(key[1], ""), key[0])
        last = max(last, key)
    horizon = _iso(parse_stamp(last[0]) - lookback)
    kept = {i: s for i, s in seen.items() if s >= horizon} if lookback else {}
    return replace(position, stamp=last[0], id=last[1], seen=kept)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")
