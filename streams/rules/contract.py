"""Checks the producer contract makes of every record keyed by person (README, "The
producer contract"): shared by the people and activity rules' `check`.

- The key is the Marketo ID, as UTF-8 text: a person's records share a partition and stay
  in order only so. A record without a key breaks that as much as one with another key.
- A record is not dated in the future beyond a clock skew: a `changed_at` in year 3000
  would outrank every real change of the person for ever (the version only grows).
- Every text field is at most 255 characters, in both topics: the store's columns, the
  Marketo attributes and the Salesforce fields the values go to hold no more. A longer
  value is the producer's bug, dead-lettered with the field's name rather than cut
  silently (a cut email address or URL is a wrong one). What the sync itself composes
  from valid fields (S8's templated Task subject, S7's subject with its suffix) is cut.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from actions_sync.errors import RuleViolation

__all__ = ["MAX_FIELD_CHARS", "check_key", "check_lengths", "check_not_after"]

MAX_FIELD_CHARS = 255  # the store's column width; Salesforce's and Marketo's for these fields


def check_key(key: bytes | None, marketo_id: int, what: str) -> None:
    """`RuleViolation` unless `key` is the Marketo ID (`what`: "changes", "activities")."""
    if key is None:
        raise RuleViolation(
            f"no key: the key must be the Marketo ID {marketo_id}, so that"
            f" {what} of one person share a partition and stay in order"
        )
    if key != str(marketo_id).encode():
        raise RuleViolation(
            f"key {key!r} is not the Marketo ID {marketo_id}: {what} of one"
            " person must share a key to stay in order"
        )


def check_not_after(field: str, at: datetime, latest: datetime) -> None:
    """`RuleViolation` if the record's `field` (a datetime) is after `latest` (the time
    it was read plus the allowed clock skew)."""
    if at > latest:
        raise RuleViolation(
            f"{field} {at.isoformat()} is in the future: later than"
            f" {latest.isoformat()}, the time it was read plus the allowed"
            " clock skew (ACTIONS_SYNC_FUTURE_SKEW_S)"
        )


def check_lengths(record: Mapping[str, Any], names: Iterable[str]) -> None:
    """`RuleViolation` if a text field among `names` is over `MAX_FIELD_CHARS`."""
    for name in names:
        value = record.get(name)
        if value is not None and len(value) > MAX_FIELD_CHARS:
            raise RuleViolation(f"{name} is {len(value)} characters, at most {MAX_FIELD_CHARS}")
