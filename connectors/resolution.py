"""What a caller does with an API's answer: a closed set of actions.

Each vendor's `classify(response) -> Resolution` is a pure function (a table of codes),
and `connectors.http.ApiClient` is the one place that acts on it. A new error code is a
table row and a test, never a new branch in a loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

__all__ = ["Action", "Resolution", "Scope", "ok"]


class Action(Enum):
    SUCCESS = "success"  # use the answer
    RETRY = "retry"  # transient: same call again after backoff with jitter
    RATE_LIMITED = "rate_limited"  # too fast: wait (retry_after, or backoff), then again
    REFRESH_AUTH = "refresh_auth"  # token invalid/expired: refresh once and replay
    QUOTA_EXHAUSTED = "quota_exhausted"  # daily budget gone: stop calling until reset
    REJECTED = "rejected"  # this request's records are invalid: dead-letter them
    FATAL = "fatal"  # configuration or contract broken: stop the worker


class Scope(Enum):
    """What a refusal (`Action.REJECTED`) is about, so the caller knows whom it concerns."""

    CALL = "call"  # the call itself (auth, configuration, a field every record carries)
    RECORD = "record"  # some of the call's records: split the call to find them
    SIZE = "size"  # the request is too large: halves fit better


@dataclass(frozen=True)
class Resolution:
    action: Action
    code: str | None = None  # the vendor's error code, for metrics and dead letters
    message: str = ""
    retry_after: float | None = None  # seconds, when the answer says how long
    scope: Scope = Scope.CALL  # whom a refusal concerns (read for REJECTED only)

    @property
    def label(self) -> str:
        """Bounded metric label: the vendor code, or the action."""
        return self.code or self.action.value


def ok() -> Resolution:
    return Resolution(Action.SUCCESS)
