"""Bulk-export CSV: the fast rendering writes exactly the bytes `csv.writer` would.

The reference is the sandbox's first rendering: `csv.writer` (CRLF, minimal quoting) over
`csv_text` of every stored value, the header row first.
"""

from __future__ import annotations

import csv
import io
import threading
import time
from array import array
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sandboxes.marketo.export_file import ChunkCache, ExportFile, csv_rows
from sandboxes.marketo.fields import BY_NAME, FIELDS, Field, csv_text, iso
from sandboxes.marketo.leads import LeadTable
from sandboxes.marketo.state import MarketoState

# what csv.writer quotes, and what it does not but a fast path might get wrong
SPECIAL = [",", '"', "\r", "\n", "\r\n"]
PLAIN = st.text(
    st.sampled_from(["a", "Z", "0", " ", "é", "😀", "\x00", "\u2028", "'", "\t"]), max_size=6
)
TEXT = st.lists(st.one_of(st.sampled_from(SPECIAL), PLAIN), max_size=4).map("".join)
STRINGS = st.one_of(st.none(), PLAIN, PLAIN, TEXT, st.integers())  # stored: str, rarely not
CELLS = st.one_of(STRINGS, st.booleans(), st.floats(allow_nan=True, allow_infinity=True))
EPOCHS = st.floats(
    min_value=datetime(1, 1, 1, tzinfo=UTC).timestamp(),
    max_value=datetime(9999, 12, 31, tzinfo=UTC).timestamp(),
)


def reference(rows: Sequence[Sequence[Any]]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    return out.getvalue()


def stored(field: Field) -> st.SearchStrategy[Any]:
    """Any value a lead may hold in `field` (datetimes: epoch seconds in `array('d')`)."""
    if field.data_type == "datetime":
        return EPOCHS
    if field.data_type == "boolean":
        return st.one_of(st.none(), st.booleans())
    return STRINGS


LEADS = st.lists(
    st.fixed_dictionaries({f.name: stored(f) for f in FIELDS if f.name != "id"}), max_size=12
)
NAMES = st.lists(st.sampled_from(list(BY_NAME)), min_size=1, max_size=6)


def live(leads: LeadTable) -> list[int]:
    return [r for r in range(leads.next_id - 1) if leads.row_of(r + 1) is not None]


def export(leads: LeadTable, names: list[str], headers: list[str]) -> ExportFile:
    """A snapshot of every live lead, as `MarketoState.snapshot` takes it."""
    file = ExportFile(
        leads, threading.RLock(), array("q", live(leads)), names, headers, ChunkCache(10**6)
    )
    leads.watchers.append(file)
    return file


def expected(leads: LeadTable, names: list[str], headers: list[str]) -> bytes:
    fields = [BY_NAME[n] for n in names]
    rows = [
        [csv_text(f, v) for f, v in zip(fields, leads.get(r, names), strict=True)]
        for r in live(leads)
    ]
    return reference([headers, *rows]).encode()


def whole(file: ExportFile) -> bytes:
    return b"".join(file.chunk(i) for i in range(file.chunks))


def table(cells: st.SearchStrategy[Any]) -> st.SearchStrategy[list[list[Any]]]:
    return st.integers(1, 4).flatmap(
        lambda width: st.lists(st.lists(cells, min_size=width, max_size=width), max_size=8)
    )


@pytest.mark.parametrize("cell", [*SPECIAL, "", "a,b", 'say "hi"', "one\ntwo", "é😀\x00"])
@pytest.mark.parametrize("width", [1, 3])
def test_a_cell_is_quoted_only_where_csv_writer_quotes_it(cell: str, width: int) -> None:
    rows = [["x"] * width, [cell] * width, ["y"] * width]

    assert csv_rows([list(column) for column in zip(*rows, strict=True)]) == reference(rows)


@settings(max_examples=300)
@given(st.one_of(table(st.one_of(PLAIN, TEXT)), table(CELLS)))  # text only: the fast path
def test_rows_are_what_csv_writer_writes(rows: list[list[Any]]) -> None:
    columns = [[row[c] for row in rows] for c in range(len(rows[0]) if rows else 1)]

    assert csv_rows(columns) == reference(rows)


@settings(max_examples=200, deadline=None)
@given(
    LEADS,
    NAMES,
    st.lists(st.one_of(PLAIN, TEXT), min_size=6, max_size=6),
    st.sets(st.integers(0, 11)),
)
def test_export_file_is_csv_text_of_every_value(
    values: list[dict[str, Any]], names: list[str], headers: list[str], dead: set[int]
) -> None:
    leads = LeadTable()
    for lead in values:
        leads.append(lead, 0.0)
    for row in dead & set(range(len(values))):
        leads.delete(row)
    want = expected(leads, names, headers[: len(names)])

    file = export(leads, names, headers[: len(names)])
    for row in live(leads):  # changed after the snapshot: the file keeps the old values
        leads.update(row, {"firstName": 'changed, "later"', "unsubscribed": True})
    got = whole(file)

    assert got == want


def test_seeded_export_across_chunks_and_blocks_is_csv_text_of_every_value() -> None:
    state = MarketoState()
    state.seed(4_321, seed=3)
    state.sync_leads([{"email": "person7@example.com", "title": 'VP, "Sales"\r\nEMEA'}])
    names = [f.name for f in FIELDS]
    want = expected(state.leads, names, names)

    file = export(state.leads, names, names)
    state.sync_leads(
        [
            {"email": f"person{n}@example.com", "phone": None, "title": "CFO"}
            for n in range(1, 4_321, 97)
        ]
    )  # in every block, after the snapshot

    assert whole(file) == want


@given(EPOCHS)
def test_iso_is_utc_to_the_second_with_z(epoch_s: float) -> None:
    assert iso(epoch_s) == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(epoch_s)))
