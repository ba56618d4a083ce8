"""The activity log and its paging tokens.

Activities get ids from one sequence. They are kept in three families so that each read
endpoint scans only its own: lead changes (New Lead 12, Change Data Value 13), deleted
leads (Delete Lead 37) and the rest (custom activities). A paging token is an opaque
base32 string encoding "the next activity id to read"; `pagingtoken.json` turns a datetime
into one by *when the activity was logged* (logging times never go backwards).

A page scans at most `limit` log entries, so a page filtered by fields or lead ids may hold
fewer results than the batch size while `moreResult` is still true (as Marketo does).
Not thread-safe on its own: `MarketoState` holds the lock.
"""

from __future__ import annotations

import base64
import bisect
import heapq
import uuid
from array import array
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Any

__all__ = [
    "CHANGE_DATA_VALUE",
    "DELETE_LEAD",
    "NEW_LEAD",
    "STANDARD_TYPES",
    "Activity",
    "ActivityLog",
    "Family",
    "decode_token",
    "encode_token",
]

NEW_LEAD, CHANGE_DATA_VALUE, DELETE_LEAD = 12, 13, 37
STANDARD_TYPES = {
    NEW_LEAD: "New Lead",
    CHANGE_DATA_VALUE: "Change Data Value",
    DELETE_LEAD: "Delete Lead",
}
_TOKEN_PREFIX = "act:"


class Family(Enum):
    LEAD_CHANGES = "lead_changes"
    DELETED_LEADS = "deleted_leads"
    OTHER = "other"


def family_of(type_id: int) -> Family:
    if type_id in (NEW_LEAD, CHANGE_DATA_VALUE):
        return Family.LEAD_CHANGES
    return Family.DELETED_LEADS if type_id == DELETE_LEAD else Family.OTHER


@dataclass(frozen=True, slots=True)
class Activity:
    id: int
    logged_at: float  # epoch s, when the sandbox recorded it (orders paging tokens)
    type_id: int
    lead_id: int
    activity_date: float  # epoch s, the date the activity claims
    payload: Any  # lead changes: tuple of (field, old, new); custom: dict; delete: name

    @property
    def guid(self) -> str:
        """Marketo's `marketoGUID`: a UUID-shaped string, unique per activity."""
        return str(uuid.UUID(int=self.id))


def encode_token(next_id: int) -> str:
    return base64.b32encode(f"{_TOKEN_PREFIX}{next_id}".encode()).decode().rstrip("=")


def decode_token(token: str) -> int:
    """The next activity id a token points at; ValueError when it is not one of ours."""
    try:
        text = base64.b32decode(token + "=" * (-len(token) % 8)).decode()
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError("Invalid nextPageToken") from exc
    if not text.startswith(_TOKEN_PREFIX) or not text[len(_TOKEN_PREFIX) :].isdigit():
        raise ValueError("Invalid nextPageToken")
    return int(text[len(_TOKEN_PREFIX) :])


class _Entries:
    def __init__(self) -> None:
        self.ids = array("q")
        self.logged = array("d")
        self.items: list[Activity] = []

    def start(self, next_id: int) -> int:
        return bisect.bisect_left(self.ids, next_id)


class ActivityLog:
    def __init__(self) -> None:
        self._families = {f: _Entries() for f in Family}
        self._next_id = 1
        self._last_logged = 0.0

    @property
    def next_id(self) -> int:
        return self._next_id

    def count(self, family: Family) -> int:
        return len(self._families[family].items)

    def append(
        self, type_id: int, lead_id: int, activity_date: float, payload: Any, now: float
    ) -> Activity:
        self._last_logged = max(self._last_logged, now)
        activity = Activity(
            self._next_id, self._last_logged, type_id, lead_id, activity_date, payload
        )
        entries = self._families[family_of(type_id)]
        entries.ids.append(activity.id)
        entries.logged.append(activity.logged_at)
        entries.items.append(activity)
        self._next_id += 1
        return activity

    def token_since(self, since: float) -> str:
        """A token for the first activity logged at or after `since` (epoch s)."""
        firsts = [
            e.ids[i]
            for e in self._families.values()
            if (i := bisect.bisect_left(e.logged, since)) < len(e.ids)
        ]
        return encode_token(min(firsts, default=self._next_id))

    def page(
        self, families: Iterable[Family], next_id: int, limit: int
    ) -> tuple[list[Activity], int, bool]:
        """Scan up to `limit` activities of `families` from `next_id`.

        Returns (scanned activities in id order, the next id to read, more to read).
        """
        chosen = [self._families[f] for f in set(families)]
        runs = [e.items[e.start(next_id) : e.start(next_id) + limit] for e in chosen]
        scanned = list(heapq.merge(*runs, key=lambda a: a.id))[:limit]
        after = scanned[-1].id + 1 if scanned else next_id
        if len(scanned) == limit and any(e.start(after) < len(e.ids) for e in chosen):
            return scanned, after, True
        return scanned, max(self._next_id, next_id), False
