"""Salesforce record ids: the 15-character form and the 18-character form.

A 15-character id is case-sensitive; the 18-character form appends a 3-character checksum
of the letter case of the first 15, so it survives case-insensitive tools (spreadsheets,
Marketo's own sync) unchanged. Both name the same record, and the first 15 characters of
the 18 are the 15: that prefix is what two ids are compared by.
"""

from __future__ import annotations

__all__ = ["id15", "to18"]

_SUFFIX = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"


def to18(record_id: str) -> str:
    """The 18-character form of a 15- or 18-character id (ValueError for anything else)."""
    if len(record_id) == 18 and record_id.isalnum() and record_id.isascii():
        return record_id
    if len(record_id) != 15 or not record_id.isalnum() or not record_id.isascii():
        raise ValueError(f"not a Salesforce id: {record_id!r}")
    suffix = ""
    for start in (0, 5, 10):
        bits = sum(1 << i for i, c in enumerate(record_id[start : start + 5]) if "A" <= c <= "Z")
        suffix += _SUFFIX[bits]
    return record_id + suffix


def id15(record_id: str) -> str:
    """The case-sensitive 15-character form (the key two ids are compared by)."""
    return to18(record_id)[:15]
