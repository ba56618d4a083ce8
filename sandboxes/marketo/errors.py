"""Marketo's error codes and the one exception the sandbox raises to answer with one.

Marketo answers HTTP 200 with `success:false` and string codes (API_NOTES.md, Envelope).
Handlers raise `MarketoError(code)`; the guard middleware turns it into the envelope.
Record-level problems are not raised: they become `reasons` / `errors` of one record.
"""

from __future__ import annotations

__all__ = ["MESSAGES", "TRANSIENT_CODES", "MarketoError", "problem"]

MESSAGES: dict[str, str] = {
    "601": "Access token invalid",
    "602": "Access token expired",
    "604": "Request timed out",
    "606": "Max rate limit exceeded",  # replaced by the limit's own wording when raised
    "607": "Daily quota reached",
    "608": "API Temporarily Unavailable",
    "609": "Invalid JSON",
    "610": "Requested resource not found",
    "611": "System error",
    "612": "Invalid Content Type",
    "615": "Concurrent access limit reached",
    "713": "Transient Error",
    "1003": "Invalid data",
    "1004": "Lead not found",
    "1005": "Lead already exists",
    "1006": "Field not found",
    "1007": "Multiple lead match lookup criteria",
    "1029": "Too many jobs in queue",
}
# What the `error_rate` fault answers with: Marketo's retryable server-side codes.
TRANSIENT_CODES = ("611", "604", "608", "713")


class MarketoError(Exception):
    """A call-level failure: answered as `{"success":false,"errors":[{code,message}]}`."""

    def __init__(self, code: str, message: str | None = None) -> None:
        self.code = code
        self.message = message or MESSAGES[code]
        super().__init__(f"{code} {self.message}")

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}

    @property
    def counts(self) -> bool:
        """6xx errors do not count against the rate window nor the daily quota."""
        return not self.code.startswith("6")


def problem(code: str, message: str | None = None) -> dict[str, str]:
    """One record-level reason: `{"code": "1004", "message": "Lead not found"}`."""
    return {"code": code, "message": message or MESSAGES[code]}
