"""The producer contract: one Avro record per `.avsc` file, loaded and parsed once.

`previous/` holds the last released version of each file; a test asserts every change
is BACKWARD-compatible with it (new readers read old data). Release = copy the file there.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import fastavro

__all__ = ["HERE", "RECORDS", "load", "parsed", "previous", "schema_text"]

HERE = Path(__file__).parent
RECORDS = tuple(sorted(p.stem for p in HERE.glob("*.avsc")))


@cache
def load(name: str) -> dict[str, Any]:
    """The schema of record `name` as JSON (a fresh parse of the file, cached)."""
    path = HERE / f"{name}.avsc"
    if not path.is_file():
        raise KeyError(f"no schema named {name!r}; known: {', '.join(RECORDS)}")
    return json.loads(path.read_text())  # type: ignore[no-any-return]


@cache
def parsed(name: str) -> Any:
    """fastavro's parsed form of record `name`, for fast (de)serialization."""
    return fastavro.parse_schema(load(name))


@cache
def schema_text(name: str) -> str:
    """Compact JSON text of the schema, as registered with a schema registry."""
    return json.dumps(load(name), separators=(",", ":"))


def previous(name: str) -> dict[str, Any] | None:
    """The last released version of record `name`, or None for a new record."""
    path = HERE / "previous" / f"{name}.avsc"
    return json.loads(path.read_text()) if path.is_file() else None
