"""The CSV file of one bulk lead export, streamed from a stable snapshot of the leads.

A snapshot is the list of rows that matched the job's filter plus, for rows changed or
deleted since, their values at snapshot time (copy-on-write: the lead table calls
`preserve(row)` before it changes a row). The file is never held whole in memory: it is
cut in chunks (chunk 0 is the header, then `CHUNK_ROWS` rows each) that are rendered on
demand, and `measure()` records each chunk's byte offset so that `Range: bytes=a-b` starts
at the right chunk instead of at byte 0. Rendering is deterministic, so the bytes served
are the bytes measured (size and sha256 announced by the status call).
"""

from __future__ import annotations

import bisect
import csv
import hashlib
import io
import itertools
import threading
from array import array
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import Any

from sandboxes.marketo.fields import BY_NAME, csv_column
from sandboxes.marketo.leads import LeadTable

__all__ = ["CHUNK_ROWS", "ChunkCache", "ExportFile", "csv_rows"]

CHUNK_ROWS = 2000
_BLOCK_ROWS = 500
_file_keys = itertools.count(1)


class ChunkCache:
    """Rendered chunks, least recently used first out, within `budget` bytes.

    Measuring a file renders every chunk and the download usually follows soon after:
    keeping the chunks halves the CPU an export costs, without holding files unbounded.
    Thread-safe.
    """

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.size = 0
        self._items: OrderedDict[tuple[int, int], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[int, int]) -> bytes | None:
        with self._lock:
            data = self._items.get(key)
            if data is not None:
                self._items.move_to_end(key)
            return data

    def put(self, key: tuple[int, int], data: bytes) -> None:
        if len(data) > self.budget:
            return
        with self._lock:
            self.size += len(data) - len(self._items.pop(key, b""))
            self._items[key] = data
            while self.size > self.budget:
                self.size -= len(self._items.popitem(last=False)[1])

    def drop(self, file_key: int) -> None:
        with self._lock:
            for key in [k for k in self._items if k[0] == file_key]:
                self.size -= len(self._items.pop(key))


class ExportFile:
    def __init__(
        self,
        leads: LeadTable,
        lock: threading.RLock,
        rows: array[int],
        names: Sequence[str],
        headers: Sequence[str],
        cache: ChunkCache,
    ) -> None:
        self._key = next(_file_keys)
        self._cache = cache
        self._leads = leads
        self._lock = lock
        self._rows = rows
        self._names = list(names)
        self._fields = [BY_NAME[n] for n in names]
        self._headers = list(headers)
        self._overlay: dict[int, list[Any]] = {}
        self.offsets: list[int] = []  # byte offset where each chunk starts, then the size
        self.checksum = ""

    @property
    def records(self) -> int:
        return len(self._rows)

    @property
    def size(self) -> int:
        return self.offsets[-1] if self.offsets else 0

    @property
    def chunks(self) -> int:
        return 1 + -(-len(self._rows) // CHUNK_ROWS)

    def preserve(self, row: int) -> None:
        """Keep `row`'s values as they are now (called under the state lock)."""
        if row not in self._overlay and self._covers(row):
            self._overlay[row] = self._leads.get(row, self._names)

    def release(self) -> None:
        with self._lock:
            if self in self._leads.watchers:
                self._leads.watchers.remove(self)
            self._overlay.clear()
        self._cache.drop(self._key)

    def chunk(self, index: int) -> bytes:
        """The bytes of chunk `index` (0 is the header row)."""
        data = self._cache.get((self._key, index))
        if data is None:
            data = self._render(index)
            self._cache.put((self._key, index), data)
        return data

    def _render(self, index: int) -> bytes:
        if index == 0:  # one row: as csv.writer writes it
            out = io.StringIO()
            csv.writer(out, lineterminator="\r\n").writerow(self._headers)
            return out.getvalue().encode()
        rows = self._rows[(index - 1) * CHUNK_ROWS : index * CHUNK_ROWS]
        # by blocks: a block's values are still in the CPU cache when joined (~20% faster)
        return "".join(
            self._text(rows[at : at + _BLOCK_ROWS]) for at in range(0, len(rows), _BLOCK_ROWS)
        ).encode()

    def _text(self, rows: Sequence[int]) -> str:
        with self._lock:  # read column by column: far faster than row by row
            columns = self._leads.columns(self._names, rows)
            for at, row in enumerate(rows) if self._overlay else ():
                old = self._overlay.get(row)
                if old is not None:
                    for column, value in zip(columns, old, strict=True):
                        column[at] = value
        return csv_rows([csv_column(f, c) for f, c in zip(self._fields, columns, strict=True)])

    def measure(self) -> None:
        """Render every chunk once to learn the offsets, the size and the sha256."""
        digest, offsets, position = hashlib.sha256(), [], 0
        for index in range(self.chunks):
            data = self.chunk(index)
            offsets.append(position)
            position += len(data)
            digest.update(data)
        offsets.append(position)
        self.offsets, self.checksum = offsets, f"sha256:{digest.hexdigest()}"

    def pieces(self, start: int, end: int) -> Iterator[tuple[int, int, int]]:
        """(chunk index, slice start, slice end) covering bytes `start..end` inclusive."""
        index = bisect.bisect_right(self.offsets, start) - 1
        while index < self.chunks and self.offsets[index] <= end:
            base = self.offsets[index]
            yield index, max(start - base, 0), min(end, self.offsets[index + 1] - 1) - base + 1
            index += 1

    def _covers(self, row: int) -> bool:
        at = bisect.bisect_left(self._rows, row)
        return at < len(self._rows) and self._rows[at] == row


def csv_rows(columns: Sequence[Sequence[Any]]) -> str:
    """The rows of `columns` as `csv.writer` writes them: RFC 4180, CRLF, minimal quoting."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")  # the reference, and the fallback
    try:
        lines = list(map(",".join, zip(*columns, strict=True)))
    except TypeError:  # a cell that is not a str: csv.writer writes str() of it
        writer.writerows(zip(*columns, strict=True))
        return out.getvalue()
    text = "\r\n".join([*lines, ""])  # every row ends with CRLF; no rows, no text
    if _as_written(text, lines, len(columns)):
        return text
    # some cells need quotes (say, a comma in a company name): csv.writer writes their rows
    for line, row in zip(lines, zip(*columns, strict=True), strict=True):
        if _as_written(line + "\r\n", [line], len(columns)):
            out.write(line + "\r\n")
        else:
            writer.writerow(row)
    return out.getvalue()


def _as_written(text: str, lines: Sequence[str], width: int) -> bool:
    """Whether `text` (`lines`: rows of `width` cells joined by `,`, each ended by CRLF)
    is what `csv.writer` writes for those cells.

    It writes a cell as it is unless the cell holds `,` `"` CR or LF, or is the empty only
    cell of a row. Joining, then counting those characters, takes a fifth of its time.
    """
    return (
        '"' not in text
        and text.count(",") == len(lines) * (width - 1)
        and text.count("\r") == len(lines) == text.count("\n")
        and (width > 1 or all(lines))
    )
