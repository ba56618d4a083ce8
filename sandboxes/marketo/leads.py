"""Columnar lead storage, light enough for 1.5M people (SPEC S6's cap per instance).

Row `r` holds lead id `r + 1`: ids are handed out in order and never reused, so no id
index is needed; a deleted lead keeps its row, marked dead. Text columns are lists (values
with few distinct strings are interned), datetimes are `array('d')` of epoch seconds.
Lookup indexes (email, Salesforce ids) are built on first use and then kept up to date.
Watchers (bulk-export snapshots) are told before a row changes, so they can keep the old
values. Not thread-safe on its own: `MarketoState` holds the lock.
"""

from __future__ import annotations

import bisect
import sys
from array import array
from collections.abc import Callable, Iterable, Mapping, Sequence
from operator import itemgetter
from typing import Any, Protocol

from sandboxes.marketo.fields import BY_NAME, FIELDS, Field

__all__ = ["Change", "LeadTable", "RowWatcher"]

Change = tuple[Field, Any, Any]  # (field, old value, new value)
_STORED = tuple(f for f in FIELDS if f.name != "id")


class RowWatcher(Protocol):
    def preserve(self, row: int) -> None:
        """Called before row `row` changes or dies."""


class LeadTable:
    def __init__(self) -> None:
        self._columns: dict[str, Any] = {
            f.name: array("d") if f.data_type == "datetime" else [] for f in _STORED
        }
        self._alive = bytearray()
        self._dead = 0
        # value -> row, or a sorted list of rows when several leads share it (few do: a
        # list per lead would cost 1.5M objects for the GC to walk)
        self._indexes: dict[str, dict[Any, int | list[int]]] = {}
        self.watchers: list[RowWatcher] = []

    def __len__(self) -> int:
        return len(self._alive) - self._dead

    @property
    def deleted(self) -> int:
        return self._dead

    @property
    def next_id(self) -> int:
        return len(self._alive) + 1

    def row_of(self, lead_id: int) -> int | None:
        row = lead_id - 1
        return row if 0 <= row < len(self._alive) and self._alive[row] else None

    def get(self, row: int, names: Sequence[str]) -> list[Any]:
        """Stored values of `names` for one row (`id` included)."""
        cols = self._columns
        return [row + 1 if name == "id" else cols[name][row] for name in names]

    def append(self, values: Mapping[str, Any], now: float) -> int:
        """Add one lead from stored-form values by API name; returns its row."""
        row = len(self._alive)
        for f in _STORED:
            default = (
                now if f.data_type == "datetime" else (False if f.name == "unsubscribed" else None)
            )
            self._columns[f.name].append(values.get(f.name, default))
        self._alive.append(1)
        for name, index in self._indexes.items():
            _index_add(index, self._columns[name][row], row)
        return row

    def extend_people(self, people: Sequence[Mapping[str, Any]]) -> int:
        """Bulk-append `sandboxes.population` people (snake_case), column by column."""
        if not people:
            return 0
        first = people[0]["marketo_id"]
        if first != len(self._alive) + 1 or people[-1]["marketo_id"] != first + len(people) - 1:
            raise ValueError(f"people must continue at id {len(self._alive) + 1}")
        intern = sys.intern
        for f in _STORED:
            column, key = self._columns[f.name], f.source
            if key is None:
                column.extend([False if f.name == "unsubscribed" else None] * len(people))
            elif f.data_type == "datetime":
                column.extend([p[key].timestamp() for p in people])
            elif f.shared:
                column.extend([None if p[key] is None else intern(p[key]) for p in people])
            else:
                column.extend([p[key] for p in people])
        self._alive.extend(b"\x01" * len(people))
        for name, index in self._indexes.items():
            column = self._columns[name]
            for row in range(first - 1, first - 1 + len(people)):
                _index_add(index, column[row], row)
        return len(people)

    def columns(self, names: Sequence[str], rows: Sequence[int]) -> list[list[Any]]:
        """Stored values of each of `names` for `rows` (fast path of the bulk export)."""
        pick = _picker(rows)
        return [
            [r + 1 for r in rows] if name == "id" else list(pick(self._columns[name]))
            for name in names
        ]

    def update(self, row: int, changes: Mapping[str, Any]) -> list[Change]:
        """Apply stored-form `changes`; returns the fields whose value actually changed."""
        cols = self._columns
        changed = [(BY_NAME[n], cols[n][row], v) for n, v in changes.items() if cols[n][row] != v]
        if not changed:
            return []
        self._notify(row)
        for field, old, new in changed:
            cols[field.name][row] = new
            index = self._indexes.get(field.name)
            if index is not None:
                _index_remove(index, old, row)
                _index_add(index, new, row)
        return changed

    def delete(self, row: int) -> None:
        self._notify(row)
        for name, index in self._indexes.items():
            _index_remove(index, self._columns[name][row], row)
        self._alive[row] = 0
        self._dead += 1

    def find(self, name: str, values: Iterable[Any]) -> list[int]:
        """Rows of live leads whose `name` equals one of `values`, in id order."""
        if name == "id":
            by_id = {self.row_of(int(v)) for v in values}
            return sorted(r for r in by_id if r is not None)
        index = self._index(name)
        found: set[int] = set()
        for value in values:
            rows = index.get(value)
            if isinstance(rows, int):
                found.add(rows)
            elif rows:
                found.update(rows)
        return sorted(found)

    def select(self, name: str, start: float, end: float) -> array[int]:
        """Rows of live leads with `start <= name <= end` (a datetime column), in id order."""
        alive = self._alive  # looked up only for rows in range: 1.6x faster than a zip
        return array(
            "q", [r for r, v in enumerate(self._columns[name]) if start <= v <= end and alive[r]]
        )

    def ensure_index(self, name: str) -> None:
        """Build the lookup index of `name` now rather than on the first lookup."""
        self._index(name)

    def _notify(self, row: int) -> None:
        for watcher in self.watchers:
            watcher.preserve(row)

    def _index(self, name: str) -> dict[Any, int | list[int]]:
        index = self._indexes.get(name)
        if index is None:
            index = {}
            alive = self._alive
            for row, value in enumerate(self._columns[name]):
                if alive[row]:
                    _index_add(index, value, row)
            self._indexes[name] = index
        return index


def _picker(rows: Sequence[int]) -> Callable[[Sequence[Any]], Iterable[Any]]:
    """What picks `rows` out of a column: one itemgetter for every column, in C, twice as
    fast as a loop; but it answers a bare value, not a tuple, for a single row."""
    if len(rows) > 1:
        return itemgetter(*rows)
    return lambda column: [column[r] for r in rows]


def _index_add(index: dict[Any, int | list[int]], value: Any, row: int) -> None:
    if value is None:
        return
    rows = index.setdefault(value, row)
    if isinstance(rows, int) and rows != row:
        index[value] = sorted((rows, row))
    elif isinstance(rows, list) and row not in rows:
        bisect.insort(rows, row)


def _index_remove(index: dict[Any, int | list[int]], value: Any, row: int) -> None:
    rows = index.get(value)
    if rows == row:
        del index[value]
    elif isinstance(rows, list) and row in rows:
        rows.remove(row)
        if len(rows) == 1:
            index[value] = rows[0]
