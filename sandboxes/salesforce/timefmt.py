"""Salesforce's date and datetime wire formats.

Datetimes are stored and answered in one canonical UTC form with milliseconds,
`2026-11-23T18:00:00.000+0000`. Because every stored value has that exact shape, comparing
the strings compares the instants, which keeps SOQL filters on ~100k records cheap.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

__all__ = ["format_datetime", "parse_date", "parse_datetime"]

_DATETIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:?\d{2})"
)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def format_datetime(moment: datetime) -> str:
    """`2026-11-23T18:00:00.000+0000` (UTC, milliseconds)."""
    utc = moment.astimezone(UTC)
    return f"{utc:%Y-%m-%dT%H:%M:%S}.{utc.microsecond // 1000:03d}+0000"


def parse_datetime(text: str) -> datetime | None:
    """An ISO-8601 datetime with an explicit zone (`Z`, `+0000`, `-08:00`), else None."""
    match = _DATETIME.fullmatch(text)
    if not match:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        moment = datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            int(second),
            int((fraction or "0").ljust(6, "0")[:6]),
            tzinfo=UTC,
        )
    except ValueError:
        return None
    if zone != "Z":
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        moment -= sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    return moment


def parse_date(text: str) -> date | None:
    """A `YYYY-MM-DD` date, else None."""
    if not _DATE.fullmatch(text):
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None
