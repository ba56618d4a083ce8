"""PostgreSQL's COPY text format, built in plain Python (no driver).

Why. The people worker's helper process turns a batch into the store's rows; shipped to
the worker as tuples of Python objects, they cost the worker an unpickle of ~18 objects a
row and psycopg's `write_row` (a quarter of the worker's busy samples on PostgreSQL,
bench/RESULTS.md, issue 15). Built here as one `bytes` per batch, in the helper, they
cost the worker one `copy.write`. No psycopg: the helper imports none (`streams.helper`).

The format (PostgreSQL docs, "COPY", text format): one line per row, columns separated by
a tab, NULL as `\\N`; a backslash, tab, newline or carriage return in a value is written
as `\\\\`, `\\t`, `\\n`, `\\r`. A NUL character cannot be stored in a text column at all:
the server refuses the batch (as it refuses the row from any client), and the pipeline
finds and dead-letters the record (`streams.pipeline`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

__all__ = ["NULL", "copy_line", "copy_text", "timestamp"]

NULL = "\\N"
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def timestamp(value: datetime) -> str:
    """A `timestamptz` value; a naive datetime is UTC (the store holds only UTC)."""
    text = value.isoformat()
    return text if value.tzinfo is not None else text + "+00:00"


def copy_line(values: Sequence[str | None]) -> str:
    """One row: `values` already text (numbers and times formatted), None for NULL."""
    line = "\t".join([NULL if v is None else v for v in values])
    # Nearly every row needs no escape: one look at the whole line instead of each value
    # (its backslashes are those of the NULLs, its tabs the separators).
    if (
        line.count("\\") == values.count(None)
        and line.count("\t") == len(values) - 1
        and "\n" not in line
        and "\r" not in line
    ):
        return line + "\n"
    return "\t".join([NULL if v is None else v.translate(_ESCAPES) for v in values]) + "\n"


def copy_text(lines: Iterable[str]) -> bytes:
    """The COPY data of `copy_line`s, encoded once (the server's encoding is UTF-8)."""
    return "".join(lines).encode()
