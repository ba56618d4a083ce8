"""Small checks the tests share."""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T")


def present(value: T | None) -> T:
    """`value`, which the test expects to be there (a stored row, a checkpoint): a clear
    failure where it is missing, and no Optional left for the lines that read it."""
    assert value is not None, "expected a value, found None"
    return value
