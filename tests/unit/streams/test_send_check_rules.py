"""The send-check rules of SPEC S10 as a table: every setting x store x Marketo answer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.rules.send_check import (
    Decision,
    Reason,
    decide,
    expired,
    precheck,
    unsubscribed_emails,
)

T0 = datetime(2026, 12, 2, 9, tzinfo=UTC)
BLOCKED_UNSUB = Decision(False, Reason.UNSUBSCRIBED)
BLOCKED_UNAVAILABLE = Decision(False, Reason.CHECK_UNAVAILABLE)
ALLOWED_OK = Decision(True, Reason.OK)
ALLOWED_DISABLED = Decision(True, Reason.CHECK_DISABLED)

# (check setting on, store holds an unsubscribe, Marketo: True unsub / False not / None no answer)
TABLE = [
    (False, False, None, ALLOWED_DISABLED),
    (False, False, False, ALLOWED_DISABLED),
    (False, False, True, ALLOWED_DISABLED),
    (False, True, None, ALLOWED_DISABLED),
    (False, True, False, ALLOWED_DISABLED),
    (False, True, True, ALLOWED_DISABLED),
    (True, True, None, BLOCKED_UNSUB),
    (True, True, False, BLOCKED_UNSUB),
    (True, True, True, BLOCKED_UNSUB),
    (True, False, True, BLOCKED_UNSUB),
    (True, False, False, ALLOWED_OK),
    (True, False, None, BLOCKED_UNAVAILABLE),
]


@pytest.mark.parametrize(("enabled", "held", "marketo", "expected"), TABLE)
def test_decision_table(
    enabled: bool, held: bool, marketo: bool | None, expected: Decision
) -> None:
    assert decide(enabled, held, marketo) == expected


@pytest.mark.parametrize(
    ("enabled", "held", "late", "expected"),
    [
        (False, True, True, ALLOWED_DISABLED),
        (True, True, True, BLOCKED_UNSUB),
        (True, False, True, BLOCKED_UNAVAILABLE),
        (True, False, False, None),  # ask Marketo
    ],
)
def test_precheck_answers_without_a_call_or_asks_marketo(
    enabled: bool, held: bool, late: bool, expected: Decision | None
) -> None:
    assert precheck(enabled, held, late) == expected


@given(st.booleans(), st.booleans(), st.sampled_from([None, False, True]))
def test_never_allowed_unless_marketo_answered_or_the_check_is_off(
    enabled: bool, held: bool, marketo: bool | None
) -> None:
    decision = decide(enabled, held, marketo)
    assert not decision.allowed or not enabled or (not held and marketo is False)


def test_a_check_expires_at_its_deadline_from_requested_at() -> None:
    assert not expired(T0, T0 + timedelta(seconds=1.999), 2.0)
    assert expired(T0, T0 + timedelta(seconds=2), 2.0)


def test_any_lead_with_the_email_unsubscribed_blocks_the_email() -> None:
    leads: list[dict[str, Any]] = [
        {"id": 1, "email": "Ann@Example.com ", "unsubscribed": False},
        {"id": 2, "email": "ann@example.com", "unsubscribed": True},
        {"id": 3, "email": "bob@example.com", "unsubscribed": False},
        {"id": 4, "email": None, "unsubscribed": True},
    ]

    assert unsubscribed_emails(leads) == {"ann@example.com"}
