"""A bulk-export CSV, row by row, from ranged byte chunks, with resumable byte offsets.

The file is never held whole: each chunk is cut after its last complete record, the
incomplete tail waits for the next chunk, and only complete records are decoded and
parsed. A record is complete at a line break when its double quotes are balanced (RFC
4180 escapes a quote as `""`), so a quoted field holding a line break never splits a row;
a line break is never inside a UTF-8 multi-byte sequence, so the complete part always
decodes on its own. `offset` is the byte where the next unread record starts: a
checkpoint of it resumes the download with `Range: bytes=offset-`.

Parsing: a line without a quote is split on commas directly (the same cells as `csv`, at
a third of the cost); only the records with a quote (a company "Acme, Inc.", a line break
in a cell) go through the csv module, and a chunk with mixed line ends wholly. Cells are
UTF-8 bytes (the chunk is still checked to be UTF-8): Avro strings are UTF-8, so an owned
row's cells reach the topic without a decode and an encode each.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from itertools import compress, count, repeat
from typing import overload

__all__ = ["CsvRows"]


class CsvRows:
    def __init__(self, offset: int = 0) -> None:
        self.offset = offset  # byte where the next unread record starts
        self._pending = b""  # an incomplete record carried to the next chunk

    def feed(self, chunk: bytes) -> Sequence[list[bytes]]:
        """The rows this chunk completes (blank lines dropped)."""
        data = self._pending + chunk
        cut = _complete_end(data)
        self._pending = data[cut:]
        return self._parse(data[:cut])

    def finish(self) -> Sequence[list[bytes]]:
        """The file ended: a last record without a line break is still a record."""
        data, self._pending = self._pending, b""
        return self._parse(data)

    def _parse(self, data: bytes) -> Sequence[list[bytes]]:
        self.offset += len(data)
        if not data:
            return []
        if (records := _records(data)) is not None:
            return records
        # Mixed line ends (the csv module reads a bare CR as one too): csv throughout.
        text = data.decode("utf-8")
        return [
            [cell.encode() for cell in row]
            for row in csv.reader(io.StringIO(text, newline=""))
            if row
        ]


def _records(data: bytes) -> _Records | None:
    """The records of `data` when its lines all end alike (LF, or CRLF), else None."""
    if not data.isascii():  # (ASCII is UTF-8; the check is ~10x faster than a decode)
        data.decode("utf-8")  # what is not UTF-8 fails here, as on the csv path
    carriage_returns = data.count(b"\r")
    end = b"\r\n" if carriage_returns else b"\n"
    lines = data.split(end)
    if carriage_returns and not len(lines) - 1 == carriage_returns == data.count(b"\n"):
        return None
    if b'"' in data:
        return _Records(_read_quoted(lines, end), parsed=True)
    return _Records(lines)


def _read_quoted(lines: list[bytes], end: bytes) -> list[bytes | list[bytes]]:
    """`lines`, where each record that holds a quote is replaced by its cells, read by the
    csv module from its first line on: the lines it spans are the ones csv reads."""
    records: list[bytes | list[bytes]] = []
    done = 0  # lines[:done] are in `records`
    for at in compress(count(), map(bytes.__contains__, lines, repeat(b'"'))):
        if at < done:
            continue  # a line of the quoted record just read
        records += lines[done:at]
        reader = csv.reader(_texts(lines, at, end))
        records.append([cell.encode() for cell in next(reader)])
        done = at + reader.line_num
    records += lines[done:]
    return records


def _texts(lines: list[bytes], start: int, end: bytes) -> Iterator[str]:
    """`lines[start:]` as `io.StringIO(text, newline="")` gives them to `csv.reader`: each
    with its line end, but the tail after the last one (empty when the data ends there)."""
    last = len(lines) - 1
    for at in range(start, last):
        yield (lines[at] + end).decode()
    if lines[last]:
        yield lines[last].decode()


def _cells(record: bytes | list[bytes]) -> list[bytes]:
    return record.split(b",") if isinstance(record, bytes) else record


class _Records(Sequence[list[bytes]]):
    """A chunk's records, lines split into their cells only as they are read.

    A chunk's ~40k rows never live all at once: as 40k lists they made the cyclic GC walk
    the whole heap a few times per chunk (~0.6 us a row), and they were built only to be
    read once."""

    def __init__(self, records: Iterable[bytes | list[bytes]], parsed: bool = False) -> None:
        # blank lines dropped
        self._records: list[bytes | list[bytes]] = list(filter(None, records))
        self._parsed = parsed  # some records are cells already (`_read_quoted`)

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[list[bytes]]:
        if self._parsed:
            return map(_cells, self._records)
        return map(bytes.split, self._records, repeat(b","))  # type: ignore[arg-type]

    @overload
    def __getitem__(self, index: int) -> list[bytes]: ...
    @overload
    def __getitem__(self, index: slice) -> _Records: ...
    def __getitem__(self, index: int | slice) -> list[bytes] | _Records:
        if isinstance(index, slice):
            return _Records(self._records[index], self._parsed)
        return _cells(self._records[index])


def _complete_end(data: bytes) -> int:
    """The length of the longest prefix of `data` made of complete records: the last line
    break with an even number of quotes before it (0 if none)."""
    cut = data.rfind(b"\n") + 1
    quotes = data.count(b'"', 0, cut)
    while quotes % 2:  # inside a quoted cell: back one line (the tail is short)
        start = data.rfind(b"\n", 0, cut - 1) + 1
        quotes -= data.count(b'"', start, cut)
        cut = start
    return cut
