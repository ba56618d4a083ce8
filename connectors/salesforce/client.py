"""The Salesforce REST calls actions-sync makes, over one authenticated `ApiClient`.

OAuth client credentials give a token and the `instance_url` every data call goes to.
Sessions have no stated lifetime: a 401 INVALID_SESSION_ID re-authenticates and replays
the call once (`ApiClient`). The token answer's identity URL names the integration user
(`user_id`). Every answer's `Sforce-Limit-Info` feeds the `Budget`, which
pauses the caller before the org's daily allocation runs out.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any

import httpx

from actions_sync.clock import Clock
from actions_sync.errors import Fatal
from connectors.auth import TokenCache
from connectors.http import CALL_ATTEMPTS, ApiClient
from connectors.ratelimit import Limiter
from connectors.salesforce.budget import Budget
from connectors.salesforce.classify import classify

__all__ = ["COLLECTION_MAX", "EXTERNAL_ID", "SalesforceClient", "soql_quote"]

API = "salesforce"
COLLECTION_MAX = 200  # records per sObject Collections call
EXTERNAL_ID = "ActionsSync_Id__c"  # the Task external id: upserts by it are idempotent
SESSION_LIFETIME_S = 7200.0  # not stated by Salesforce; a 401 refreshes it earlier


def soql_quote(value: str) -> str:
    """A SOQL string literal (backslash and quote escaped)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class SalesforceClient:
    def __init__(
        self,
        login_url: str,
        client_id: str,
        client_secret: str,
        *,
        api_version: str = "v62.0",
        max_in_flight: int = 5,
        budget: Budget | None = None,
        timeout_s: float = 30.0,
        clock: Clock | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        max_attempts: int = CALL_ATTEMPTS,
    ) -> None:
        self.version = api_version
        self.budget = budget or Budget(reserve=0, pause_s=900.0, clock=clock)
        self.instance_url = ""
        self.user_id = ""  # known after the first token
        self._login = httpx.AsyncClient(base_url=login_url, transport=transport, timeout=timeout_s)
        self._credentials = {
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": client_secret,
        }
        self.auth = TokenCache(self._fetch_token, clock)
        self.api = ApiClient(
            API,
            login_url,
            partial(classify, quota_pause_s=self.budget.pause_s),
            Limiter(API, max_in_flight),
            auth=self.auth,
            clock=clock,
            timeout_s=timeout_s,
            transport=transport,
            max_attempts=max_attempts,
        )

    async def _fetch_token(self) -> tuple[str, float]:
        response = await self._login.post("/services/oauth2/token", data=self._credentials)
        if response.status_code in (400, 401):
            raise Fatal(
                f"Salesforce refused the client id/secret ({response.text[:200]}): "
                "check ACTIONS_SYNC_SALESFORCE_CLIENT_ID and "
                "ACTIONS_SYNC_SALESFORCE_CLIENT_SECRET"
            )
        response.raise_for_status()
        body = response.json()
        self.instance_url = str(body["instance_url"]).rstrip("/")
        # The identity URL ends in the user the credentials act as: the user whose id the
        # org stamps on our writes (LastModifiedById), which the source drops as echoes.
        self.user_id = str(body.get("id", "")).rstrip("/").rsplit("/", 1)[-1]
        return str(body["access_token"]), SESSION_LIFETIME_S

    async def call(self, method: str, path: str, endpoint: str, **kwargs: Any) -> Any:
        """The JSON answer of a data call to `/services/data/vXX.X/<path>`."""
        self.budget.check()
        await self.auth.get()  # knows instance_url from here on
        url = f"{self.instance_url}/services/data/{self.version}/{path}"
        response = await self.api.request(method, url, endpoint, **kwargs)
        self.budget.observe(response.headers.get("Sforce-Limit-Info"))
        return response.json() if response.content else None

    async def upsert(
        self, sobject: str, field: str, records: Sequence[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """Upsert ≤ 200 records by external id `field`: one result per record, in order."""
        _check_size(records)
        body = await self.call(
            "PATCH",
            f"composite/sobjects/{sobject}/{field}",
            "upsert",
            json={"allOrNone": False, "records": list(records)},
        )
        return list(body)

    async def update(self, records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Update ≤ 200 records by `Id` (each with `attributes.type`; Lead and Contact may
        mix): one result per record, in order."""
        _check_size(records)
        body = await self.call(
            "PATCH",
            "composite/sobjects",
            "update",
            json={"allOrNone": False, "records": list(records)},
        )
        return list(body)

    async def delete(self, ids: Sequence[str]) -> list[dict[str, Any]]:
        """Delete ≤ 200 records by id: one result per id, in order."""
        _check_size(ids)
        body = await self.call(
            "DELETE",
            "composite/sobjects",
            "delete",
            params={"ids": ",".join(ids), "allOrNone": "false"},
        )
        return list(body)

    async def query(self, soql: str) -> list[dict[str, Any]]:
        """Every row of a SOQL query, following `nextRecordsUrl` until `done`."""
        body = await self.call("GET", "query", "query", params={"q": soql})
        rows = list(body["records"])
        while not body.get("done", True):
            path = str(body["nextRecordsUrl"]).split(f"/{self.version}/", 1)[1]
            body = await self.call("GET", path, "query")
            rows += body["records"]
        return rows

    async def pages(
        self, soql: str, *, include_deleted: bool = False, batch_size: int | None = None
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """The rows of a SOQL query a page at a time, following `nextRecordsUrl`;
        `include_deleted` reads through `queryAll` (rows in the recycle bin, `IsDeleted`
        true); `batch_size` (200..2000) asks for smaller pages."""
        endpoint = "queryAll" if include_deleted else "query"
        headers = {"Sforce-Query-Options": f"batchSize={batch_size}"} if batch_size else {}
        body = await self.call("GET", endpoint, endpoint, params={"q": soql}, headers=headers)
        yield list(body["records"])
        while not body.get("done", True):
            path = str(body["nextRecordsUrl"]).split(f"/{self.version}/", 1)[1]
            body = await self.call("GET", path, endpoint, headers=headers)
            yield list(body["records"])

    async def query_all(self, soql: str) -> list[dict[str, Any]]:
        """Every row of a SOQL query through `queryAll`, deleted ones included."""
        return [row async for page in self.pages(soql, include_deleted=True) for row in page]

    async def deleted(self, sobject: str, start: datetime, end: datetime) -> dict[str, Any]:
        """`sobjects/{type}/deleted/`: `{"deletedRecords": [{"id","deletedDate"}],
        "earliestDateAvailable", "latestDateCovered"}` (minutes: seconds are ignored).
        A window the recycle bin no longer covers is `Rejected` INVALID_REPLICATION_DATE."""
        return dict(
            await self.call(
                "GET", f"sobjects/{sobject}/deleted/", "deleted", params=_window(start, end)
            )
        )

    async def updated(self, sobject: str, start: datetime, end: datetime) -> dict[str, Any]:
        """`sobjects/{type}/updated/`: `{"ids", "latestDateCovered"}` (30 days back)."""
        return dict(
            await self.call(
                "GET", f"sobjects/{sobject}/updated/", "updated", params=_window(start, end)
            )
        )

    async def aclose(self) -> None:
        await self.api.aclose()
        await self._login.aclose()


def _window(start: datetime, end: datetime) -> dict[str, str]:
    return {
        "start": f"{start.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}",
        "end": f"{end.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}",
    }


def _check_size(items: Sequence[Any]) -> None:
    if len(items) > COLLECTION_MAX:
        raise ValueError(f"at most {COLLECTION_MAX} records per collection call")
