"""Errors of the connectors, by what the caller does (see `actions_sync.errors`)."""

from __future__ import annotations

from actions_sync.errors import Backpressure, Fatal, Skippable
from connectors.resolution import Scope

__all__ = ["ApiFatal", "QuotaExhausted", "Rejected"]


class QuotaExhausted(Backpressure):
    """A daily quota is used up (Marketo 607, Salesforce REQUEST_LIMIT_EXCEEDED).

    Not retried by the client: the caller pauses its work for `retry_after` seconds
    (checkpointing first), instead of spinning against the quota.
    """


class Rejected(Skippable):
    """The API refused this request's content (a bug or bad records): dead-letter them.

    `scope` says whom: every record of the call (`CALL`), or some of them, found by
    splitting the call (`RECORD`, `SIZE`; see `connectors.outcome.fan_out`).
    """

    stage = "deliver"

    def __init__(self, message: str, code: str | None = None, scope: Scope = Scope.RECORD) -> None:
        super().__init__(message)
        self.code = code
        self.scope = scope


class ApiFatal(Fatal):
    """Credentials, permissions or the API contract are wrong; retrying cannot help."""
