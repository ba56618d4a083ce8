"""`dlq list|replay` selections: --since parsing and what a Selection takes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from actions_sync.dead_letter_admin import Selection, parse_since
from actions_sync.errors import ConfigError

NOW = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)
LETTER = {
    "key": "42",
    "error.class": "RuleViolation",
    "error.message": "key is not 41",
    "dead_lettered_at": "2026-12-02T07:30:00+00:00",
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("45m", datetime(2026, 12, 2, 7, 15, tzinfo=UTC)),
        ("2h", datetime(2026, 12, 2, 6, 0, tzinfo=UTC)),
        ("1d", datetime(2026, 12, 1, 8, 0, tzinfo=UTC)),
        ("2026-12-01T10:00:00", datetime(2026, 12, 1, 10, 0, tzinfo=UTC)),
        ("2026-12-01T10:00:00Z", datetime(2026, 12, 1, 10, 0, tzinfo=UTC)),
        ("2026-12-01T11:00:00+01:00", datetime(2026, 12, 1, 10, 0, tzinfo=UTC)),
    ],
)
def test_since_takes_an_age_or_an_iso_time(text: str, expected: datetime) -> None:
    assert parse_since(text, now=NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "10 minutes", "-1h", ""])
def test_a_bad_since_is_a_one_line_config_error(text: str) -> None:
    with pytest.raises(ConfigError, match=r"ISO 8601 time .* or an age"):
        parse_since(text, now=NOW)


@pytest.mark.parametrize(
    ("selection", "taken"),
    [
        (Selection(), True),
        (Selection(reason="ruleviolation"), True),
        (Selection(reason="IS NOT 41"), True),
        (Selection(reason="Undecodable"), False),
        (Selection(key="42"), True),
        (Selection(key="4"), False),
        (Selection(since=datetime(2026, 12, 2, 7, 30, tzinfo=UTC)), True),
        (Selection(since=datetime(2026, 12, 2, 7, 31, tzinfo=UTC)), False),
        (Selection(reason="rule", key="41"), False),
    ],
)
def test_a_selection_takes_letters_by_reason_key_and_time(
    selection: Selection, taken: bool
) -> None:
    assert selection(LETTER) is taken
