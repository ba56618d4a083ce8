"""The Marketo unsubscribe check of SPEC S10, as pure functions.

    check setting | store holds an unsubscribe | Marketo answers      | decision
    --------------|----------------------------|----------------------|--------------------------
    off           | any                        | (not asked)          | allowed, CHECK_DISABLED
    on            | yes                        | (not asked)          | blocked, UNSUBSCRIBED
    on            | no                         | a lead unsubscribed  | blocked, UNSUBSCRIBED
    on            | no                         | none unsubscribed    | allowed, OK
    on            | no                         | nothing in time      | blocked, CHECK_UNAVAILABLE

It fails closed: a check is never allowed unless Marketo answered (or the check is off).
A check already past its deadline when it is read (a backlog after a restart) is
CHECK_UNAVAILABLE at once: looking it up late would answer a seller who gave up waiting.
Marketo's unsubscribe is durable per email and one email may belong to several leads, so
"any lead with the email unsubscribed" is the safe reading (API_NOTES.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

__all__ = ["Decision", "Reason", "decide", "expired", "precheck", "unsubscribed_emails"]


class Reason(Enum):
    OK = "OK"
    UNSUBSCRIBED = "UNSUBSCRIBED"
    CHECK_DISABLED = "CHECK_DISABLED"
    CHECK_UNAVAILABLE = "CHECK_UNAVAILABLE"


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: Reason


DISABLED = Decision(True, Reason.CHECK_DISABLED)
OK = Decision(True, Reason.OK)
UNSUBSCRIBED = Decision(False, Reason.UNSUBSCRIBED)
UNAVAILABLE = Decision(False, Reason.CHECK_UNAVAILABLE)


def expired(requested_at: datetime, now: datetime, deadline_s: float) -> bool:
    """True once the check's deadline (from `requested_at`) has passed."""
    return now >= requested_at + timedelta(seconds=deadline_s)


def precheck(enabled: bool, held: bool, late: bool) -> Decision | None:
    """The decision that needs no Marketo call, or None: ask Marketo."""
    if not enabled:
        return DISABLED
    if held:
        return UNSUBSCRIBED
    if late:
        return UNAVAILABLE
    return None


def decide(enabled: bool, held: bool, marketo: bool | None) -> Decision:
    """The whole table: `marketo` is whether any lead with the email is unsubscribed,
    None when Marketo did not answer in time."""
    known = precheck(enabled, held, late=False)
    if known is not None:
        return known
    if marketo is None:
        return UNAVAILABLE
    return UNSUBSCRIBED if marketo else OK


def email_key(email: str) -> str:
    """Emails compare without case or surrounding blanks (as Marketo's lookup does)."""
    return email.strip().lower()


def unsubscribed_emails(leads: Iterable[Mapping[str, Any]]) -> set[str]:
    """The emails (keyed by `email_key`) of which any lead is unsubscribed."""
    return {
        email_key(str(lead["email"]))
        for lead in leads
        if lead.get("unsubscribed") is True and lead.get("email")
    }
