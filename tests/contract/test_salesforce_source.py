"""The Salesforce client's read calls against the sandbox over real HTTP (no Kafka):
paged queries and queryAll, the replication windows with their errors, the integration
user's identity, and how the new error codes are classified."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
import pytest

from connectors.errors import Rejected
from connectors.resolution import Action
from connectors.salesforce.budget import Budget
from connectors.salesforce.classify import classify
from connectors.salesforce.client import SalesforceClient
from sandboxes.base import JOURNAL_KEY, SandboxServer
from sandboxes.population import sfdc_id
from sandboxes.salesforce import STATE_KEY, SalesforceConfig, create_app, human_delete

T = TypeVar("T")


class Org:
    def __init__(self, **config: Any) -> None:
        self.app = create_app(SalesforceConfig(**{"seed_people": 40, **config}))
        self.server = SandboxServer(self.app)

    @property
    def state(self) -> Any:
        return self.app[STATE_KEY]

    def calls(self, path_part: str) -> int:
        return sum(path_part in e.path for e in self.app[JOURNAL_KEY].entries())


@pytest.fixture
def org(request: pytest.FixtureRequest) -> Iterator[Org]:
    org = Org(**getattr(request, "param", {}))
    with org.server:
        yield org


def with_client(org: Org, body: Callable[[SalesforceClient], Awaitable[T]]) -> T:
    async def go() -> T:
        client = SalesforceClient(
            org.server.url, "actions-sync", "sandbox-secret", budget=Budget(0, 60.0), timeout_s=5.0
        )
        try:
            return await body(client)
        finally:
            await client.aclose()

    return asyncio.run(go())


@pytest.mark.parametrize("org", [{"query_page_size": 7}], indirect=True)
def test_pages_follow_next_records_url(org: Org) -> None:
    async def read(client: SalesforceClient) -> list[list[str]]:
        return [
            [r["Id"] for r in page]
            async for page in client.pages("SELECT Id FROM Lead ORDER BY Id")
        ]

    pages = with_client(org, read)

    assert [len(p) for p in pages] == [7] * 5 + [5]
    assert [i for p in pages for i in p] == [sfdc_id("00Q", n) for n in range(1, 41)]
    assert org.calls("/query/01g") == 5


def test_query_all_includes_deleted_rows(org: Org) -> None:
    human_delete(org.state, sfdc_id("00Q", 3))
    soql = "SELECT Id, IsDeleted FROM Lead WHERE IsDeleted = true"

    async def read(client: SalesforceClient) -> tuple[list[Any], list[Any]]:
        return await client.query(soql), await client.query_all(soql)

    live, every = with_client(org, read)

    assert live == [] and [(r["Id"], r["IsDeleted"]) for r in every] == [(sfdc_id("00Q", 3), True)]


def test_the_client_knows_its_integration_user(org: Org) -> None:
    async def who(client: SalesforceClient) -> str:
        await client.auth.get()
        return client.user_id

    assert with_client(org, who) == org.state.config.integration_user_id


def test_deleted_and_updated_windows(org: Org) -> None:
    human_delete(org.state, sfdc_id("003", 1))
    start, end = datetime.now(UTC) - timedelta(minutes=2), datetime.now(UTC) + timedelta(minutes=1)

    async def read(client: SalesforceClient) -> tuple[dict[str, Any], dict[str, Any]]:
        return await client.deleted("Contact", start, end), await client.updated("Lead", start, end)

    deleted, updated = with_client(org, read)

    assert [r["id"] for r in deleted["deletedRecords"]] == [sfdc_id("003", 1)]
    assert len(updated["ids"]) == 40  # seeded just now


@pytest.mark.parametrize(("days", "code"), [(16, "INVALID_REPLICATION_DATE")])
def test_a_window_the_org_no_longer_keeps_is_rejected_with_its_code(
    org: Org, days: int, code: str
) -> None:
    now = datetime.now(UTC)

    async def read(client: SalesforceClient) -> Any:
        return await client.deleted("Contact", now - timedelta(days=days), now)

    with pytest.raises(Rejected) as caught:
        with_client(org, read)
    assert caught.value.code == code


@pytest.mark.parametrize(
    "code", ["INVALID_REPLICATION_DATE", "EXCEEDED_ID_LIMIT", "INVALID_QUERY_LOCATOR"]
)
def test_replication_and_cursor_errors_are_the_callers_to_handle(code: str) -> None:
    response = httpx.Response(
        400, json=[{"errorCode": code, "message": "m"}], request=httpx.Request("GET", "http://x")
    )

    assert classify(response).action is Action.REJECTED
