"""Salesforce record ids: 15 case-sensitive characters, or 18 (the 15 plus a checksum).

The 3-character suffix encodes which of the 15 characters are upper case, five at a time
(bit i set when character i of the chunk is A-Z), each chunk's value picking a letter of
`A..Z0..5`. So `001000000000001` and `001000000000001AAA` name the same record, while
`00Q...` and `00q...` are different ids. The API accepts either form as input and always
answers with the 18-character one.
"""

from __future__ import annotations

__all__ = ["checksum", "full_id", "is_id"]

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"


def checksum(id15: str) -> str:
    """The 3-character suffix of a 15-character id."""
    out = ""
    for start in (0, 5, 10):
        chunk = id15[start : start + 5]
        out += _ALPHABET[sum(1 << i for i, char in enumerate(chunk) if "A" <= char <= "Z")]
    return out


def is_id(value: object) -> bool:
    """A 15- or 18-character alphanumeric (ASCII) id."""
    return isinstance(value, str) and len(value) in (15, 18) and value.isalnum() and value.isascii()


def full_id(value: str) -> str:
    """The 18-character form of an id (an 18-character one is returned as it is)."""
    return value + checksum(value) if len(value) == 15 else value
