"""The Marketo REST calls actions-sync makes, over one paced, authenticated `ApiClient`.

Pace defaults to Marketo's best practice for an integration: half the rate (50 calls per
rolling 20 s) and 5 calls in flight; both can be raised toward the published limits
(100 / 10) in the settings. Identity calls do not count against the limits.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from actions_sync.clock import Clock
from actions_sync.errors import Fatal
from connectors.auth import TokenCache
from connectors.http import CALL_ATTEMPTS, ApiClient
from connectors.marketo.classify import classify
from connectors.ratelimit import Limiter, RollingWindow

__all__ = ["BATCH_MAX", "URI_MAX", "MarketoClient", "MarketoLimits", "Page"]

BATCH_MAX = 300  # records per batch call, filter values per lookup
URI_MAX = 8192  # bytes of request URI Marketo reads; HTTP 414 above
API = "marketo"


@dataclass(frozen=True)
class MarketoLimits:
    calls_per_window: int = 50  # Marketo allows 100 per rolling 20 s; best practice: half
    window_s: float = 20.0
    max_in_flight: int = 5  # Marketo allows 10; best practice: 5


@dataclass(frozen=True)
class Page:
    """One page of a paged activities call."""

    result: list[dict[str, Any]]
    next_token: str
    more: bool


class MarketoClient:
    def __init__(
        self,
        base_url: str,
        client_id: str,
        client_secret: str,
        limits: MarketoLimits | None = None,
        clock: Clock | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout_s: float = 30.0,
        max_attempts: int = CALL_ATTEMPTS,
    ) -> None:
        limits = limits or MarketoLimits()
        self._identity = httpx.AsyncClient(base_url=base_url, transport=transport, timeout=30)
        self._credentials = {
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": client_secret,
        }
        self.auth = TokenCache(self._fetch_token, clock)
        window = RollingWindow(limits.calls_per_window, limits.window_s, clock)
        self.api = ApiClient(
            API,
            base_url,
            classify,
            Limiter(API, limits.max_in_flight, window),
            auth=self.auth,
            clock=clock,
            transport=transport,
            timeout_s=timeout_s,
            max_attempts=max_attempts,
        )

    async def _fetch_token(self) -> tuple[str, float]:
        response = await self._identity.get("/identity/oauth/token", params=self._credentials)
        if response.status_code == 401:
            raise Fatal(
                "Marketo refused the client id/secret (HTTP 401): check "
                "ACTIONS_SYNC_MARKETO_CLIENT_ID and ACTIONS_SYNC_MARKETO_CLIENT_SECRET"
            )
        response.raise_for_status()
        body = response.json()
        return str(body["access_token"]), float(body.get("expires_in", 0))

    async def call(self, method: str, path: str, endpoint: str, **kwargs: Any) -> dict[str, Any]:
        """A successful enveloped answer (`success:true`) as a dict."""
        response = await self.api.request(method, path, endpoint, **kwargs)
        return response.json()  # type: ignore[no-any-return]

    # -- leads ---------------------------------------------------------------------------

    async def leads(
        self, filter_type: str, values: Sequence[str | int], fields: Sequence[str]
    ) -> list[dict[str, Any]]:
        """Leads matching up to 300 filter values: a GET, or, when its URI would pass
        Marketo's 8 KB limit (HTTP 414), the same query as a form body with
        `_method=GET`, as Marketo documents (300 emails easily take 8 KB)."""
        if len(values) > BATCH_MAX:
            raise ValueError(f"at most {BATCH_MAX} filter values per call")
        path = "/rest/v1/leads.json"
        query = {
            "filterType": filter_type,
            "filterValues": ",".join(map(str, values)),
            "fields": ",".join(fields),
            "batchSize": str(BATCH_MAX),
        }
        if self.uri_bytes(path, query) <= URI_MAX:
            body = await self.call("GET", path, "leads", params=query)
        else:
            body = await self.call("POST", path, "leads", params={"_method": "GET"}, data=query)
        return list(body.get("result", []))

    def uri_bytes(self, path: str, query: dict[str, str]) -> int:
        """Bytes of the request URI (path and query) a GET of `query` would send."""
        return len(self.api.http.build_request("GET", path, params=query).url.raw_path)

    # -- activities ----------------------------------------------------------------------

    async def paging_token(self, since: datetime) -> str:
        body = await self.call(
            "GET",
            "/rest/v1/activities/pagingtoken.json",
            "pagingtoken",
            params={"sinceDatetime": since.isoformat()},
        )
        return str(body["nextPageToken"])

    async def lead_changes(self, token: str, fields: Sequence[str]) -> Page:
        body = await self.call(
            "GET",
            "/rest/v1/activities/leadchanges.json",
            "leadchanges",
            params={
                "nextPageToken": token,
                "fields": ",".join(fields),
                "batchSize": str(BATCH_MAX),
            },
        )
        return _page(body, token)

    async def deleted_leads(self, token: str) -> Page:
        body = await self.call(
            "GET",
            "/rest/v1/activities/deletedleads.json",
            "deletedleads",
            params={"nextPageToken": token, "batchSize": str(BATCH_MAX)},
        )
        return _page(body, token)

    # -- bulk lead extract -----------------------------------------------------------------

    async def create_export(
        self, fields: Sequence[str], start: datetime, end: datetime, filter_field: str = "createdAt"
    ) -> str:
        body = await self.call(
            "POST",
            "/bulk/v1/leads/export/create.json",
            "export_create",
            json={
                "fields": list(fields),
                "format": "CSV",
                "filter": {filter_field: {"startAt": start.isoformat(), "endAt": end.isoformat()}},
            },
        )
        return str(body["result"][0]["exportId"])

    async def enqueue_export(self, export_id: str) -> None:
        await self.call("POST", f"/bulk/v1/leads/export/{export_id}/enqueue.json", "export_enqueue")

    async def export_status(self, export_id: str) -> dict[str, Any]:
        body = await self.call(
            "GET", f"/bulk/v1/leads/export/{export_id}/status.json", "export_status"
        )
        return dict(body["result"][0])

    async def export_file(
        self, export_id: str, start_byte: int = 0, chunk: int = 8 * 1024 * 1024
    ) -> AsyncGenerator[bytes, None]:
        """The export's CSV from `start_byte`, in ranged chunks (resumable, never the
        whole file in memory)."""
        offset = start_byte
        while True:
            response = await self.api.request(
                "GET",
                f"/bulk/v1/leads/export/{export_id}/file.json",
                "export_file",
                headers={"Range": f"bytes={offset}-{offset + chunk - 1}"},
            )
            data = response.content
            if data:
                yield data
                offset += len(data)
            total = _total_size(response)
            if not data or response.status_code == 200 or (total is not None and offset >= total):
                return

    # -- custom activities -------------------------------------------------------------------

    async def add_custom_activities(
        self, records: Sequence[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        if len(records) > BATCH_MAX:
            raise ValueError(f"at most {BATCH_MAX} activities per call")
        body = await self.call(
            "POST",
            "/rest/v1/activities/external.json",
            "activities_add",
            json={"input": list(records)},
        )
        return list(body.get("result", []))

    async def add_custom_activities_once(
        self, records: Sequence[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """Add ≤ 300 custom activities in ONE attempt: Marketo never de-duplicates them, so
        a retried batch would be written twice. A failure (timeout, 5xx, 604/608/611/713)
        may have been applied: the caller reconciles before sending again."""
        if len(records) > BATCH_MAX:
            raise ValueError(f"at most {BATCH_MAX} activities per call")
        response = await self.api.request_once(
            "POST",
            "/rest/v1/activities/external.json",
            "activities_add",
            json={"input": list(records)},
        )
        return list(response.json().get("result") or [])

    async def custom_activity_types(self) -> list[dict[str, Any]]:
        """Every custom activity type, drafts included, with its attributes and status."""
        body = await self.call("GET", "/rest/v1/activities/external/types.json", "activity_types")
        return list(body.get("result") or [])

    async def create_custom_activity_type(self, definition: dict[str, Any]) -> dict[str, Any]:
        """Create a custom activity type (a draft): apiName, name, triggerName, filterName,
        primaryAttribute."""
        body = await self.call(
            "POST",
            "/rest/v1/activities/external/type.json",
            "activity_type_create",
            json=definition,
        )
        return dict(body["result"][0])

    async def add_custom_activity_attributes(
        self, api_name: str, attributes: Sequence[dict[str, Any]]
    ) -> dict[str, Any]:
        body = await self.call(
            "POST",
            f"/rest/v1/activities/external/type/{api_name}/attributes/create.json",
            "activity_type_attributes",
            json={"attribute": list(attributes)},
        )
        return dict(body["result"][0])

    async def approve_custom_activity_type(self, api_name: str) -> dict[str, Any]:
        body = await self.call(
            "POST",
            f"/rest/v1/activities/external/type/{api_name}/approve.json",
            "activity_type_approve",
        )
        return dict(body["result"][0])

    async def activities(
        self, token: str, type_ids: Sequence[int], lead_ids: Sequence[int] = ()
    ) -> Page:
        """One page of activities of ≤ 10 types (optionally of ≤ 30 leads) from `token`."""
        params = {
            "nextPageToken": token,
            "activityTypeIds": ",".join(map(str, type_ids)),
            "batchSize": str(BATCH_MAX),
        }
        if lead_ids:
            params["leadIds"] = ",".join(map(str, lead_ids))
        body = await self.call("GET", "/rest/v1/activities.json", "activities", params=params)
        return _page(body, token)

    async def aclose(self) -> None:
        await self.api.aclose()
        await self._identity.aclose()


def _page(body: dict[str, Any], token: str) -> Page:
    return Page(
        list(body.get("result") or []),
        str(body.get("nextPageToken") or token),
        bool(body.get("moreResult", False)),
    )


def _total_size(response: httpx.Response) -> int | None:
    """Total file size from `Content-Range: bytes a-b/total` (a 206 answer)."""
    content_range = response.headers.get("content-range", "")
    _, _, total = content_range.rpartition("/")
    return int(total) if total.isdigit() else None
