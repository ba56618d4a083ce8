"""JSON lines -> Avro records of the producer contract (`actions-sync produce`).

Each line is one record with the contract's snake_case fields. Timestamps may be given
as epoch milliseconds or ISO-8601 strings, dates as `YYYY-MM-DD`. A bad line yields one
clear error naming the line and the field; good lines are still published.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import fastavro
from fastavro.validation import ValidationError

import schemas

__all__ = ["KEY_FIELD", "LineError", "parse_lines"]

# The field whose value keys a record on its topic (DESIGN.md: keys and partitions).
KEY_FIELD = {
    "PersonChange": "marketo_id",
    "SalesActivity": "marketo_id",
    "Unsubscribe": "marketo_id",
    "ReminderTask": "task_id",
    "SendCheck": "marketo_id",
    "SendDecision": "check_id",
}


@dataclass(frozen=True)
class LineError:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


def _logical_types(record: str) -> dict[str, str]:
    """Field name -> logical type, for top-level fields (plain or nullable)."""
    out = {}
    for f in schemas.load(record)["fields"]:
        for branch in f["type"] if isinstance(f["type"], list) else [f["type"]]:
            if isinstance(branch, dict) and "logicalType" in branch:
                out[f["name"]] = branch["logicalType"]
    return out


def _coerce(value: Any, logical: str) -> Any:
    if isinstance(value, str) and logical.startswith("timestamp"):
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    if isinstance(value, str) and logical == "date":
        return date.fromisoformat(value)
    return value


def parse_lines(
    record: str, lines: Iterable[str]
) -> Iterator[tuple[str, dict[str, Any]] | LineError]:
    """Yield (key, record) for each valid line and a `LineError` for each bad one."""
    parsed = schemas.parsed(record)
    logical = _logical_types(record)
    for number, text in enumerate(lines, 1):
        if not text.strip():
            continue
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise ValueError("expected a JSON object")
            data = {k: _coerce(v, logical[k]) if k in logical else v for k, v in data.items()}
            fastavro.validate(data, parsed, raise_errors=True)
        except json.JSONDecodeError as exc:
            yield LineError(number, f"not JSON: {exc.msg} at column {exc.colno}")
        except ValidationError as exc:
            yield LineError(number, f"does not match {record}: {'; '.join(map(str, exc.errors))}")
        except ValueError as exc:
            yield LineError(number, f"bad value: {exc}")
        else:
            yield str(data[KEY_FIELD[record]]), data
