"""The Marketo source's pure pieces: extract windows, CSV rows from chunks, lead mapping."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.marketo.classify import classify
from connectors.marketo.csvrows import CsvRows, _complete_end
from connectors.marketo.incremental import changes_to_publish
from connectors.marketo.payloads import (
    API_FIELDS,
    FIELDS,
    deleted_change,
    person_change,
    row_reader,
)
from connectors.marketo.windows import windows
from connectors.resolution import Action

T0 = datetime(2026, 1, 1, tzinfo=UTC)
LEAD = {
    "id": "7",
    "updatedAt": "2026-03-01T12:00:00Z",
    "firstName": "Ada",
    "email": "a@x.io",
    "title": "",
    "sfdcLeadOwnerId": "005A",
    "sfdcContactOwnerId": None,
}


def test_windows_cover_the_range_without_overlap_and_span_at_most_31_days() -> None:
    plan = windows(T0, T0 + timedelta(days=365, hours=5))
    assert plan[0][0] == T0 and plan[-1][1] == T0 + timedelta(days=365, hours=5)
    assert all(end - start < timedelta(days=31) for start, end in plan)
    assert all(b[0] - a[1] == timedelta(seconds=1) for a, b in pairwise(plan))


def test_a_lead_maps_to_a_full_person_change_versioned_by_updated_at() -> None:
    change = person_change(LEAD)
    assert change["marketo_id"] == 7 and change["changed_at"] == datetime(
        2026, 3, 1, 12, tzinfo=UTC
    )
    assert change["title"] is None and change["sfdc_lead_owner_id"] == "005A"
    assert set(FIELDS) <= set(change) and set(FIELDS.values()) < set(API_FIELDS)
    assert change["event_id"] == person_change(dict(LEAD))["event_id"]  # stable on re-publish


def test_a_csv_row_maps_like_the_same_lead_and_unowned_rows_are_none() -> None:
    header = list(API_FIELDS)
    row = ["" if LEAD.get(name) is None else str(LEAD[name]) for name in header]
    read = row_reader(list(reversed(header)))
    assert read(list(reversed(row))) == person_change(LEAD)
    assert read(list(reversed([*row[:-3], "", "", row[-1]]))) is None  # no owner


def test_a_deleted_lead_is_versioned_by_its_activity_date() -> None:
    change = deleted_change({"leadId": 7, "activityDate": "2026-03-02T00:00:00Z"})
    assert change["deleted"] and change["changed_at"] == datetime(2026, 3, 2, tzinfo=UTC)


def test_an_unowned_lead_is_published_only_when_the_page_changed_an_owner() -> None:
    unowned = {**LEAD, "sfdcLeadOwnerId": None}
    lost = [{"leadId": 7, "fields": [{"name": "sfdcLeadOwnerId", "oldValue": "005A"}]}]
    edited = [{"leadId": 7, "fields": [{"name": "title", "newValue": "CTO"}]}]
    assert changes_to_publish(lost, [unowned])[1] == 0
    assert changes_to_publish(edited, [unowned]) == ([], 1)
    assert len(changes_to_publish(edited, [LEAD])[0]) == 1


rows_strategy = st.lists(
    st.lists(st.text(alphabet='ab,"\n\ré ', max_size=6), min_size=2, max_size=2),
    min_size=1,
    max_size=20,
)


@given(rows_strategy, st.integers(min_value=1, max_value=17))
def test_csv_rows_survive_any_chunking_and_resume_at_their_offset(
    rows: list[list[str]], size: int
) -> None:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    data = out.getvalue().encode()
    parser, got, offsets = CsvRows(), list[list[bytes]](), []
    for at in range(0, len(data), size):
        got += parser.feed(data[at : at + size])
        offsets.append(parser.offset)
    got += parser.finish()
    assert decoded(got) == rows
    middle = offsets[len(offsets) // 2]  # a checkpointed offset: always a record boundary
    resumed = CsvRows(middle)
    head = list(csv.reader(io.StringIO(data[:middle].decode(), newline="")))
    assert head + decoded([*resumed.feed(data[middle:]), *resumed.finish()]) == rows


@given(
    st.lists(
        st.lists(st.text(alphabet='ab,"\n\ré \x0b\x85\u2028', max_size=5), min_size=1, max_size=3),
        max_size=12,
    ),
    st.lists(st.sampled_from(["\r\n", "\n", "\r"]), min_size=1, max_size=12),
)
def test_csv_rows_are_what_the_csv_module_reads_for_any_line_ends(
    rows: list[list[str]], ends: list[str]
) -> None:
    """Quote-free chunks take a split fast path: same rows as `csv`, whatever the line
    ends (CRLF, LF, a mix, a bare CR) and characters other splitters break lines on."""
    out = io.StringIO()
    for n, row in enumerate(rows):
        csv.writer(out, lineterminator=ends[n % len(ends)]).writerow(row)
    data = out.getvalue().encode()
    expected = [r for r in csv.reader(io.StringIO(data.decode(), newline="")) if r]
    parser = CsvRows()
    assert decoded([*parser.feed(data), *parser.finish()]) == expected


@settings(max_examples=400)
@given(st.text(alphabet='ab,"\n\ré', max_size=40), st.sampled_from(["\r\n", "\n"]))
def test_csv_rows_of_malformed_quotes_are_what_the_csv_module_reads(text: str, end: str) -> None:
    """Stray quotes (`a"b`, an unclosed `"`): the records are still the csv module's,
    as when every chunk with a quote went through it whole."""
    data = text.replace("\r", "").replace("\n", end).encode()
    cut = _complete_end(data)
    expected = [
        r
        for part in (data[:cut], data[cut:])
        for r in csv.reader(io.StringIO(part.decode(), newline=""))
        if r
    ]
    parser = CsvRows()
    assert decoded([*parser.feed(data), *parser.finish()]) == expected
    assert parser.offset == len(data)


@given(st.lists(st.sampled_from([b'"', b"\n", b"\r", b"a"]), max_size=30).map(b"".join))
def test_a_chunk_is_cut_after_the_last_line_break_with_balanced_quotes(data: bytes) -> None:
    breaks = [
        at + 1
        for at, byte in enumerate(data)
        if byte == ord("\n") and data[:at].count(b'"') % 2 == 0
    ]
    assert _complete_end(data) == (breaks[-1] if breaks else 0)


def decoded(rows: list[list[bytes]]) -> list[list[str]]:
    """CsvRows' cells are UTF-8 bytes."""
    return [[cell.decode() for cell in row] for row in rows]


def test_a_chunk_of_rows_is_a_sequence_of_cells() -> None:
    rows = CsvRows().feed(b"id,name\r\n1,Ada\r\n\r\n2,\r\n")
    assert len(rows) == 3 and rows[0] == [b"id", b"name"] and rows[-1] == [b"2", b""]
    assert list(rows[1:]) == [[b"1", b"Ada"], [b"2", b""]]


def test_an_enveloped_error_on_a_bulk_file_is_not_read_as_csv() -> None:
    request = httpx.Request("GET", "http://marketo/bulk/v1/leads/export/x/file.json")
    refused = httpx.Response(
        200, json={"success": False, "errors": [{"code": "602"}]}, request=request
    )
    assert classify(refused).action is Action.REFRESH_AUTH
    csv_bytes = httpx.Response(
        206, text="id\r\n1\r\n", request=request, headers={"content-type": "text/csv"}
    )
    assert classify(csv_bytes).action is Action.SUCCESS


def test_event_ids_are_pinned_across_versions() -> None:
    """A change re-published by a newer release (a sync resumed after an upgrade) keeps
    its id: the derivation must never change silently."""
    from connectors.marketo.payloads import _event_id

    at = datetime(2026, 3, 1, 12, 0, 0, 123000, tzinfo=UTC)
    assert _event_id(42, at, False) == "e1493efd-e798-86f6-8a7c-051514dacd50"
    assert _event_id(42, at, True) == "0723a128-73b4-8979-ae41-f30062a64e9c"


@given(
    st.datetimes(
        min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
    ),
    st.booleans(),
    st.booleans(),
)
def test_event_ids_derive_from_the_version_text_as_they_always_did(
    at: datetime, to_ms: bool, deleted: bool
) -> None:
    import hashlib

    from connectors.marketo.payloads import _event_id

    if to_ms:  # Marketo's versions: whole seconds or milliseconds
        at = at.replace(microsecond=at.microsecond // 1000 * 1000)
    name = f"42:{at.timestamp():.3f}:{deleted:d}".encode()
    h = hashlib.blake2b(name, digest_size=16).hexdigest()
    assert (
        _event_id(42, at, deleted)
        == f"{h[:8]}-{h[8:12]}-8{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"
    )
