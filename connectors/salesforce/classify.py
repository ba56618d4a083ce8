"""Salesforce's answers -> what to do (API_NOTES.md, Salesforce errors). Pure tables.

Call level (`classify`): an HTTP status and a JSON array `[{"message","errorCode"}]`.
Record level (`record_outcome`): items of an sObject Collections answer, HTTP 200, with
`errors:[{"statusCode","message","fields"}]`, one per input record in input order.
No `Retry-After` is ever sent, so waits come from our own constants.
"""

from __future__ import annotations

from typing import Any, Literal

import httpx

from actions_sync.errors import Retriable
from connectors.errors import Rejected
from connectors.outcome import Outcome, accepted, rejected, retry
from connectors.resolution import Action, Resolution, Scope, ok

__all__ = ["CODES", "DELETE_DONE", "RECORD_CODES", "classify", "record_outcome"]

CONCURRENT_RETRY_S = 20.0  # 25 long-running (>= 20 s) requests at once: wait one out
QUOTA_PAUSE_S = 900.0  # daily budget gone: the rolling 24 h frees calls hour by hour

# Call-level errorCode -> (action, scope), whatever the HTTP status. A 400 refuses the
# whole request for one record's content too (a value it cannot parse, a column only that
# record carries): those codes are record-scoped, and the call is split to find them.
CODES: dict[str, tuple[Action, Scope]] = {
    "INVALID_SESSION_ID": (Action.REFRESH_AUTH, Scope.CALL),  # 401: session expired or revoked
    "UNABLE_TO_LOCK_ROW": (Action.RETRY, Scope.CALL),  # another transaction holds the record
    "SERVER_UNAVAILABLE": (Action.RETRY, Scope.CALL),  # 503
    "QUERY_TIMEOUT": (Action.RETRY, Scope.CALL),
    "REQUEST_RUNNING_TOO_LONG": (Action.RETRY, Scope.CALL),
    "API_DISABLED_FOR_ORG": (Action.FATAL, Scope.CALL),  # the org or the user lacks API access
    "API_CURRENTLY_DISABLED": (Action.FATAL, Scope.CALL),
    "INSUFFICIENT_ACCESS": (Action.FATAL, Scope.CALL),
    "INVALID_AUTH_HEADER": (Action.FATAL, Scope.CALL),
    "NOT_FOUND": (Action.FATAL, Scope.CALL),  # 404: wrong API version or path: a contract problem
    "METHOD_NOT_ALLOWED": (Action.FATAL, Scope.CALL),
    "MALFORMED_QUERY": (Action.REJECTED, Scope.CALL),  # our SOQL, whatever the records
    "JSON_PARSER_ERROR": (Action.REJECTED, Scope.RECORD),  # a value that does not parse
    "INVALID_FIELD": (Action.REJECTED, Scope.RECORD),  # a column only some records carry
    "INVALID_TYPE_ON_FIELD_IN_RECORD": (Action.REJECTED, Scope.RECORD),
    "STRING_TOO_LONG": (Action.REJECTED, Scope.RECORD),
    "MALFORMED_ID": (Action.REJECTED, Scope.RECORD),  # a WhoId/WhatId of one record
    # /deleted/ and /updated/: the window starts before what the org keeps (15 days of
    # recycle bin, 30 of updates) or holds > 600,000 ids; the caller re-reads otherwise.
    "INVALID_REPLICATION_DATE": (Action.REJECTED, Scope.CALL),
    "EXCEEDED_ID_LIMIT": (Action.REJECTED, Scope.CALL),
    "INVALID_QUERY_LOCATOR": (Action.REJECTED, Scope.CALL),  # a query cursor expired: query again
}

Op = Literal["upsert", "delete"]
RecordAction = Literal["retry", "reject"]

# Record-level statusCode -> retry or dead-letter. Unknown codes are dead-lettered with
# their reason (an unknown record problem must not block the partition).
RECORD_CODES: dict[str, RecordAction] = {
    "UNABLE_TO_LOCK_ROW": "retry",  # row lock contention: succeeds a moment later
    "SERVER_UNAVAILABLE": "retry",
    "QUERY_TIMEOUT": "retry",
    "REQUEST_RUNNING_TOO_LONG": "retry",
    "ALL_OR_NONE_OPERATION_ROLLED_BACK": "retry",  # rolled back because of another record
    "REQUIRED_FIELD_MISSING": "reject",
    "INVALID_FIELD": "reject",
    "INVALID_FIELD_FOR_INSERT_UPDATE": "reject",
    "INVALID_TYPE_ON_FIELD_IN_RECORD": "reject",
    "FIELD_CUSTOM_VALIDATION_EXCEPTION": "reject",  # a customer's validation rule
    "FIELD_INTEGRITY_EXCEPTION": "reject",  # e.g. a Lead's task related to an account
    "CANNOT_UPDATE_CONVERTED_LEAD": "reject",
    "ENTITY_IS_DELETED": "reject",  # WhoId/WhatId points at a deleted record
    "INVALID_CROSS_REFERENCE_KEY": "reject",
    "MALFORMED_ID": "reject",
    "INSUFFICIENT_ACCESS_OR_READONLY": "reject",
    "INSUFFICIENT_ACCESS_ON_CROSS_REFERENCE_ENTITY": "reject",
    "DUPLICATES_DETECTED": "reject",  # a duplicate rule blocks the write
    "DUPLICATE_VALUE": "reject",  # unique external id held by another record
    "DUPLICATE_EXTERNAL_ID": "reject",  # the external id matches several Tasks
    "STRING_TOO_LONG": "reject",
    "INVALID_TYPE": "reject",
    "MISSING_ARGUMENT": "reject",
}
# Deleting what is already gone is the effect we wanted (replays, deletes done by hand).
DELETE_DONE = frozenset({"ENTITY_IS_DELETED", "INVALID_CROSS_REFERENCE_KEY", "NOT_FOUND"})


def _first_error(response: httpx.Response) -> tuple[str, str]:
    try:
        body: Any = response.json()
    except ValueError:
        return str(response.status_code), response.text[:200]
    item = body[0] if isinstance(body, list) and body and isinstance(body[0], dict) else {}
    if isinstance(body, dict):  # OAuth errors: {"error","error_description"}
        item = {"errorCode": body.get("error"), "message": body.get("error_description")}
    return str(item.get("errorCode") or response.status_code), str(item.get("message") or "")


def classify(response: httpx.Response, quota_pause_s: float = QUOTA_PAUSE_S) -> Resolution:
    status = response.status_code
    if status < 300:
        return ok()
    code, message = _first_error(response)
    if code == "REQUEST_LIMIT_EXCEEDED":
        # Same code for two limits; only the message tells them apart: "TotalRequests
        # Limit exceeded." (the daily budget: stop) vs "ConcurrentPerOrgLongTxn ..." /
        # "ConcurrentRequests ..." (25 long-running requests: wait one out).
        if "concurrent" in message.lower():
            return Resolution(Action.RATE_LIMITED, code, message, CONCURRENT_RETRY_S)
        return Resolution(Action.QUOTA_EXHAUSTED, code, message, quota_pause_s)
    if code in CODES:
        action, scope = CODES[code]
        return Resolution(action, code, message, scope=scope)
    if status >= 500 or status == 429:
        return Resolution(Action.RETRY, code, message)
    if status == 401:
        return Resolution(Action.REFRESH_AUTH, code, message)
    if status in (413, 414):  # too large: halves fit
        return Resolution(Action.REJECTED, code, message, scope=Scope.SIZE)
    if status in (300, 400):  # this request's content: find the records that cause it
        return Resolution(Action.REJECTED, code, message, scope=Scope.RECORD)
    return Resolution(Action.FATAL, code, message)


def record_outcome(result: dict[str, Any], op: Op = "upsert") -> Outcome:
    """The outcome of one item of an sObject Collections answer."""
    if result.get("success"):
        return accepted()
    errors = result.get("errors") or [{}]
    codes = [str(e.get("statusCode", "UNKNOWN")) for e in errors]
    reason = "; ".join(f"{c}: {e.get('message', '')}" for c, e in zip(codes, errors, strict=True))
    if op == "delete" and codes[0] in DELETE_DONE:
        return accepted()
    if all(RECORD_CODES.get(c) == "retry" for c in codes):
        return retry(Retriable(f"Salesforce {reason}"))
    return rejected(Rejected(f"Salesforce {reason}", codes[0]))
