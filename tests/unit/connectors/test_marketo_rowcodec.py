"""The initial sync's row encoder publishes what `row_reader` + `Serializer` published:
the same key and value bytes for every row, or the same exception."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta, timezone
from functools import cache
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actions_sync.serialization import Serializer
from connectors.marketo.csvrows import CsvRows
from connectors.marketo.payloads import API_FIELDS, OWNER_API_FIELDS, row_reader
from connectors.marketo.rowcodec import RowEncoder, row_encoder

TOPIC = "marketo.person.changes"
Outcome = tuple[bytes, bytes] | None | type[Exception]


class Registry:
    def register(self, subject: str, schema_text: str) -> int:
        return 300  # more than a byte: the 4-byte id is framed big-endian


class CountingSerializer(Serializer):
    """Counts records encoded through it: the encoder's reference path."""

    calls = 0

    def __call__(self, record: dict[str, Any]) -> bytes:
        self.calls += 1
        return super().__call__(record)


def serializer() -> CountingSerializer:
    return CountingSerializer(Registry(), TOPIC, "PersonChange")  # type: ignore[arg-type]


SERIALIZER = serializer()


def before(header: list[str], row: list[str]) -> Outcome:
    """What the initial sync published for `row` before the row encoder (or raised)."""
    try:
        change = row_reader(header)(row)
        if change is None:
            return None
        return str(change["marketo_id"]).encode(), SERIALIZER(change)
    except Exception as exc:  # the type is the contract
        return type(exc)


@cache
def encoder(header: tuple[str, ...], serialize: Serializer = SERIALIZER) -> RowEncoder:
    return row_encoder(header, serialize)  # one per header, as in the initial sync


def now(header: list[str], row: list[str], serialize: Serializer = SERIALIZER) -> Outcome:
    try:
        return encoder(tuple(header), serialize)([c.encode() for c in row])
    except Exception as exc:
        return type(exc)


def canonical(moment: datetime) -> str:
    """Marketo's `updatedAt` text (strftime pads no year under 1000)."""
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T"
        f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}Z"
    )


moments = st.datetimes(datetime(1, 1, 2), datetime(9999, 12, 30), timezones=st.just(UTC))
offsets = st.timezones() | st.builds(
    timezone, st.integers(-23 * 60, 23 * 60).map(lambda m: timedelta(minutes=m))
)
plain_ids = st.integers(1, 10**18 - 1).map(str)
updated_at = st.one_of(
    moments.map(canonical),
    # other ISO-8601 forms parse_time reads: fractions, offsets, naive, a space, no seconds
    moments.map(lambda m: m.isoformat()),
    moments.map(lambda m: m.replace(tzinfo=None).isoformat(sep=" ")),
    st.datetimes(datetime(1, 1, 2), datetime(9999, 12, 30), timezones=offsets).map(
        lambda m: m.isoformat(timespec="milliseconds")
    ),
    moments.map(lambda m: canonical(m)[:16] + "Z"),
    moments.map(lambda m: canonical(m).replace("Z", "+00:00")),
    moments.map(lambda m: canonical(m).lower()),
    moments.map(lambda m: f" {canonical(m)} "),
    # canonical in shape only, or not a time at all
    st.sampled_from(
        [
            "2026-02-30T10:00:00Z",
            "2026-13-01T10:00:00Z",
            "2026-03-01T24:00:00Z",
            "2026-03-01T10:60:00Z",
            "2026-03-01T10:00:60Z",
            "0000-01-01T00:00:00Z",
            "2026-03-01",
            "2026-W09-7T10:00:00Z",
            "20260301T100000Z",
            "",
            "soon",
            "\uff12\uff10\uff12\uff16-03-01T10:00:00Z",  # fullwidth digits
            "2026-03-01T10:00:00ZZ",
            "2026-03-01T10:00:00.5Z",
            "2026-03-01T10:00:00,5Z",
        ]
    ),
)
ids = st.one_of(
    plain_ids,
    st.integers(0, 2**70).map(str),  # past a long: the Serializer refuses it
    st.integers(-(2**63), 2**63).map(str),
    st.sampled_from(["0", "007", " 7", "7 ", "+7", "1_000", "٣", "7.0", "", "x", "0x1F"]),
)
cells = st.one_of(
    st.just(""),
    st.text(max_size=20),
    st.text('aé€😀 ,"\n', min_size=60, max_size=200),  # lengths past one varint byte
    st.text("😀é", min_size=300, max_size=600),  # past 1 KiB: the reference path's
)
owners = st.one_of(st.just(""), st.just("005000000000000001"), st.text(max_size=3))


headers = st.sampled_from([[], ["createdAt"]]).flatmap(
    lambda more: st.permutations([*API_FIELDS, *more])
)  # any order, maybe a column more


@st.composite
def rows(
    draw: Any,
    header: list[str],
    ids: Any = ids,
    updated_at: Any = updated_at,
    owners: Any = owners,
    cells: Any = cells,
) -> list[str]:
    values = {name: draw(cells) for name in header}
    values.update({"id": draw(ids), "updatedAt": draw(updated_at)})
    values.update({name: draw(owners) for name in OWNER_API_FIELDS})
    return [values[name] for name in header]


def exports(**strategies: Any) -> st.SearchStrategy[tuple[list[str], list[str]]]:
    """A header and one row of it."""
    return headers.flatmap(lambda header: st.tuples(st.just(header), rows(header, **strategies)))


@settings(max_examples=800, deadline=None)
@given(exports())
def test_any_row_encodes_to_the_bytes_the_serializer_wrote_or_fails_alike(
    export: tuple[list[str], list[str]],
) -> None:
    header, row = export
    assert now(header, row) == before(header, row)


@settings(max_examples=300, deadline=None)
@given(
    exports(
        ids=plain_ids,
        updated_at=moments.map(canonical),
        owners=st.just("005000000000000001"),
        cells=st.text(max_size=255),
    )
)
def test_marketo_rows_are_encoded_without_the_reference_path(
    export: tuple[list[str], list[str]],
) -> None:
    header, row = export
    counting = serializer()
    assert now(header, row, counting) == before(header, row)
    assert counting.calls == 0


@settings(max_examples=200, deadline=None)
@given(
    headers.flatmap(lambda h: st.tuples(st.just(h), st.lists(rows(h), max_size=8))),
    st.integers(1, 300),
)
def test_an_export_file_publishes_what_it_published_before(
    export: tuple[list[str], list[list[str]]], chunk: int
) -> None:
    """Bytes to records through CsvRows too: quoted cells, CRLF, any chunking."""
    header, lines = export
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows([header, *lines])
    data, parser, read = out.getvalue().encode(), CsvRows(), list[list[bytes]]()
    for at in range(0, len(data), chunk):
        read += parser.feed(data[at : at + chunk])
    read += parser.finish()
    encode = encoder(tuple(cell.decode() for cell in read[0]))
    for cells, row in zip(read[1:], lines, strict=True):
        try:
            got: Outcome = encode(cells)
        except Exception as exc:
            got = type(exc)
        assert got == before(header, row)


def test_an_unowned_row_is_none_and_a_known_row_has_its_pinned_bytes() -> None:
    header = list(API_FIELDS)
    row = dict.fromkeys(header, "")
    row.update(id="42", updatedAt="2026-03-01T12:00:00Z", firstName="Ada")
    assert now(header, list(row.values())) is None
    row["sfdcLeadOwnerId"] = "005A"
    key, value = now(header, list(row.values()))  # type: ignore[misc]
    assert key == b"42"
    assert value.startswith(b"\x00\x00\x00\x01\x2c" + b"\x48")  # schema 300, a 36-byte uuid
    assert value[6:42] == b"6ec57cab-ef1a-87e6-8584-7b87f950cf25"  # as released


@pytest.mark.parametrize("schema_change", ["micros", "new field"])
def test_a_schema_the_encoder_does_not_know_is_written_by_the_serializer(
    monkeypatch: pytest.MonkeyPatch, schema_change: str
) -> None:
    import schemas

    parsed = dict(schemas.parsed("PersonChange"))
    fields = [dict(f) for f in parsed["fields"]]
    if schema_change == "micros":
        fields[2]["type"] = {"type": "long", "logicalType": "timestamp-micros"}
    else:
        fields.append({"name": "nickname", "type": ["null", "string"], "default": None})
    monkeypatch.setattr(schemas, "parsed", lambda name: {**parsed, "fields": fields})
    header = list(API_FIELDS)
    row = dict.fromkeys(header, "x")
    row.update(id="42", updatedAt="2026-03-01T12:00:00Z")
    counting = serializer()
    row_encoder(header, counting)([cell.encode() for cell in row.values()])
    assert counting.calls == 1
