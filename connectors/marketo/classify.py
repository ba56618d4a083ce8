"""Marketo's answers -> what to do (API_NOTES.md, Marketo error table).

Marketo answers HTTP 200 even for failures, with `success:false` and string codes, so
the body is read. Only 413/414, 401 from identity and 404 from an unfinished bulk file
are HTTP-level. One table row per code.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import httpx

from connectors.resolution import Action, Resolution, Scope, ok

__all__ = ["CODES", "classify", "seconds_until_quota_reset"]

RATE_WINDOW_S = 20.0  # 606: wait for the rolling window to move on
EXPORT_RETRY_S = 300.0  # 1029: too many export jobs / export quota; resume later
MARKETO_DAY = ZoneInfo("America/Chicago")  # the daily quota resets at midnight US Central

# code -> (action, scope). The scope says whom a refusal concerns: the call (every record
# is dead-lettered) or some of its records (the call is split to find them).
CODES: dict[str, tuple[Action, Scope]] = {
    "601": (Action.REFRESH_AUTH, Scope.CALL),  # access token invalid
    "602": (Action.REFRESH_AUTH, Scope.CALL),  # access token expired
    "603": (Action.FATAL, Scope.CALL),  # access denied: the API user lacks a permission
    "604": (Action.RETRY, Scope.CALL),  # request timed out
    "606": (Action.RATE_LIMITED, Scope.CALL),  # more than 100 calls in 20 s
    "607": (Action.QUOTA_EXHAUSTED, Scope.CALL),  # daily quota reached
    "608": (Action.RETRY, Scope.CALL),  # API temporarily unavailable
    "609": (Action.REJECTED, Scope.CALL),  # invalid JSON: our encoder, not one record
    "610": (Action.REJECTED, Scope.CALL),  # requested resource not found: the URL
    "611": (Action.RETRY, Scope.CALL),  # system error
    "612": (Action.REJECTED, Scope.CALL),  # invalid content type: the request's header
    "615": (Action.RATE_LIMITED, Scope.CALL),  # more than 10 calls in flight
    "713": (Action.RETRY, Scope.CALL),  # transient
    "1003": (Action.REJECTED, Scope.RECORD),  # invalid data (also "more than 1,000 leads match")
    "1004": (Action.REJECTED, Scope.RECORD),  # lead not found
    "1006": (Action.FATAL, Scope.CALL),  # field not found: the mapping is wrong for this instance
    "1007": (Action.REJECTED, Scope.RECORD),  # multiple leads match the lookup
    "1029": (Action.QUOTA_EXHAUSTED, Scope.CALL),  # bulk export quota exceeded / too many jobs
}


def seconds_until_quota_reset(now: datetime) -> float:
    """Seconds until the next midnight in US Central time (Marketo's daily reset)."""
    local = now.astimezone(MARKETO_DAY)
    midnight = (local + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return (midnight - local).total_seconds()


def classify(response: httpx.Response, now: datetime | None = None) -> Resolution:
    status = response.status_code
    if status in (413, 414):
        return Resolution(
            Action.REJECTED, str(status), "request too large for Marketo", scope=Scope.SIZE
        )
    if status == 401:
        return Resolution(Action.FATAL, "401", "Marketo refused the client id/secret")
    if status == 404 and "/bulk/" in response.request.url.path:
        return Resolution(Action.RETRY, "404", "bulk file not ready yet")
    if status >= 500 or status == 429:
        return Resolution(Action.RETRY, str(status), response.text[:200])
    if status >= 400:
        return Resolution(Action.FATAL, str(status), response.text[:200])
    if "/identity/" in response.request.url.path or _is_file(response):
        return ok()  # not enveloped
    body = response.json()
    if body.get("success", False):
        return ok()
    error = (body.get("errors") or [{}])[0]
    code, message = str(error.get("code", "?")), str(error.get("message", ""))
    # An unknown code is a contract we don't know.
    action, scope = CODES.get(code, (Action.FATAL, Scope.CALL))
    retry_after = {
        "606": RATE_WINDOW_S,
        "1029": EXPORT_RETRY_S,
        "607": seconds_until_quota_reset(now or datetime.now(MARKETO_DAY)),
    }.get(code)
    return Resolution(action, code, message, retry_after, scope)


def _is_file(response: httpx.Response) -> bool:
    """A bulk file's bytes. Its failures (601/602 token, 606/615 limits, 604/608/611/713
    transient) still come as a JSON envelope, and must not be read as CSV."""
    return "/file.json" in response.request.url.path and not response.headers.get(
        "content-type", ""
    ).startswith("application/json")
