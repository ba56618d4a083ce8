"""Reading what the Marketo and Salesforce sandboxes hold, over their public HTTP APIs."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import httpx

from app.stack import http_client

CREDENTIALS = {
    "grant_type": "client_credentials",
    "client_id": "actions-sync",
    "client_secret": "sandbox-secret",
}


def marketo_get(http: httpx.Client, path: str, **params: str) -> dict[str, Any]:
    """One successful Marketo answer of `path`, as a patient client gets it: 602 (token
    killed early), 606/615 and injected faults are tried again, for longer than the
    rolling 20 s rate window (a sink that split refused calls may have spent it)."""
    deadline = time.monotonic() + 30
    while True:
        token = http.get("/identity/oauth/token", params=CREDENTIALS).json()
        body: dict[str, Any] = http.get(
            path, params=params, headers={"Authorization": f"Bearer {token['access_token']}"}
        ).json()
        if body["success"]:
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"{path}: {body}")
        time.sleep(0.5)


def marketo_activity_types(url: str) -> dict[int, str]:
    """The custom activity types of a Marketo sandbox: id -> apiName."""
    with httpx.Client(base_url=url, timeout=30) as http:
        result = marketo_get(http, "/rest/v1/activities/external/types.json")["result"]
    return {t["id"]: t["apiName"] for t in result}


def marketo_activities(url: str) -> list[dict[str, Any]]:
    """Every custom activity in a Marketo sandbox, read back like any client would (its
    injected faults switched off first; expired tokens renewed)."""
    http_client().post(
        f"{url}/_sandbox/faults",
        json={"error_rate": 0.0, "timeout_rate": 0.0, "latency_ms": 0.0},
        timeout=10,
    )
    with httpx.Client(base_url=url, timeout=30) as http:
        ids = ",".join(
            str(t["id"])
            for t in marketo_get(http, "/rest/v1/activities/external/types.json")["result"]
        )
        if not ids:
            return []
        page = marketo_get(
            http, "/rest/v1/activities/pagingtoken.json", sinceDatetime="2000-01-01T00:00:00Z"
        )
        out: list[dict[str, Any]] = []
        while True:
            page = marketo_get(
                http,
                "/rest/v1/activities.json",
                nextPageToken=page["nextPageToken"],
                activityTypeIds=ids,
            )
            out += page.get("result") or []
            if not page["moreResult"]:
                return out


def ledger_ids(activities: list[dict[str, Any]]) -> Counter[str]:
    """How many times each activity id (the ledger attribute) was written."""
    return Counter(
        next(a["value"] for a in act["attributes"] if a["apiName"] == "actionsSyncId")
        for act in activities
    )


def salesforce_tasks(url: str) -> list[dict[str, Any]]:
    """Every live Task of a Salesforce sandbox (control route: no API budget used)."""
    return list(http_client().get(f"{url}/_sandbox/salesforce/records/Task", timeout=30).json())


def split_bound(bad: int, n: int) -> int:
    """Calls of one batch of n records with `bad` of them refusing the call: the first,
    then two a level of halving for each bad record (issue 10, item 2)."""
    return 1 + 2 * bad * max(1, (n - 1).bit_length())
