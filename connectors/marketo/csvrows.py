"""A bulk-export CSV, row by row, from ranged byte chunks, with resumable byte offsets.

The file is never held whole: each chunk is cut after its last complete record, the
incomplete tail waits for the next chunk, and only complete records are decoded and
parsed (`csv` at C speed). A record is complete at a line break when its double quotes
are balanced (RFC 4180 escapes a quote as `""`), so a quoted field holding a line break
never splits a row; a line break is never inside a UTF-8 multi-byte sequence, so the
complete part always decodes on its own. `offset` is the byte where the next unread
record starts: a checkpoint of it resumes the download with `Range: bytes=offset-`.
A chunk without quotes (the common case) is split on line breaks and commas directly:
the same rows as `csv`, at a third of the cost.
"""

from __future__ import annotations

import csv
import io

__all__ = ["CsvRows"]


class CsvRows:
    def __init__(self, offset: int = 0) -> None:
        self.offset = offset  # byte where the next unread record starts
        self._pending = b""  # an incomplete record carried to the next chunk

    def feed(self, chunk: bytes) -> list[list[str]]:
        """The rows this chunk completes (blank lines dropped)."""
        data = self._pending + chunk
        cut = _complete_end(data)
        self._pending = data[cut:]
        return self._parse(data[:cut])

    def finish(self) -> list[list[str]]:
        """The file ended: a last record without a line break is still a record."""
        data, self._pending = self._pending, b""
        return self._parse(data)

    def _parse(self, data: bytes) -> list[list[str]]:
        self.offset += len(data)
        if not data:
            return []
        text = data.decode("utf-8")
        if b'"' not in data:  # nothing quoted: a line is a record, a comma a separator
            carriage_returns = data.count(b"\r")
            if not carriage_returns:
                return [line.split(",") for line in text.split("\n") if line]
            if carriage_returns == data.count(b"\r\n") == data.count(b"\n"):
                return [line.split(",") for line in text.split("\r\n") if line]
        # Quoted fields (commas, quotes, line breaks inside), or mixed line ends: the
        # csv module, at C speed too but ~3x slower than splitting.
        return [row for row in csv.reader(io.StringIO(text, newline="")) if row]


def _complete_end(data: bytes) -> int:
    """The length of the longest prefix of `data` made of complete records."""
    end = data.rfind(b"\n") + 1
    if b'"' not in data[:end]:  # the common case: nothing quoted, every line a record
        return end
    balanced, start, cut = True, 0, 0
    while (newline := data.find(b"\n", start, end)) >= 0:
        balanced ^= data.count(b'"', start, newline) % 2 == 1
        start = newline + 1
        if balanced:
            cut = start
    return cut
