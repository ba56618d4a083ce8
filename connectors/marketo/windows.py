"""The bulk extract's date windows: pure, so the plan is fixed once and checkpointed.

Marketo's `createdAt` filter spans at most 31 days and includes both ends, so adjacent
windows end one second before the next starts (`createdAt` has second precision): no
lead is exported twice, none is missed.
"""

from __future__ import annotations

from datetime import datetime, timedelta

__all__ = ["WINDOW", "windows"]

WINDOW = timedelta(days=31)
_SECOND = timedelta(seconds=1)


def windows(
    since: datetime, until: datetime, span: timedelta = WINDOW
) -> list[tuple[datetime, datetime]]:
    """[(startAt, endAt)] covering `since..until` (both inclusive), in order."""
    start, until = since.replace(microsecond=0), until.replace(microsecond=0)
    out = []
    while start <= until:
        end = min(start + span - _SECOND, until)
        out.append((start, end))
        start = end + _SECOND
    return out
