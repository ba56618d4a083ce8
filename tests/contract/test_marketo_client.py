"""The Marketo client against the Marketo sandbox over real HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from datetime import timedelta
from typing import Any, TypeVar

import pytest
from aiohttp import web

from connectors.errors import QuotaExhausted
from connectors.marketo.client import MarketoClient, MarketoLimits
from sandboxes.base import JOURNAL_KEY, FaultPlan, SandboxServer
from sandboxes.marketo import STATE_KEY, MarketoConfig, create_app
from sandboxes.population import EPOCH

T = TypeVar("T")


def serve(**config: Any) -> tuple[web.Application, SandboxServer]:
    app = create_app(MarketoConfig(**config))
    return app, SandboxServer(app)


def with_client(server: SandboxServer, limits: MarketoLimits | None = None) -> MarketoClient:
    return MarketoClient(server.url, "actions-sync", "sandbox-secret", limits)


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def test_leads_are_read_by_id_through_a_form_lookup() -> None:
    _, sandbox = serve(seed_people=400)
    with sandbox as server:

        async def go() -> list[dict[str, Any]]:
            client = with_client(server)
            try:
                return await client.leads("id", list(range(1, 301)), ["id", "email"])
            finally:
                await client.aclose()

        leads = run(go())
    assert [lead["id"] for lead in leads] == list(range(1, 301))


def test_the_client_paces_itself_below_the_rolling_window() -> None:
    app, sandbox = serve(seed_people=10, rate_calls=10, rate_window_s=2.0)
    with sandbox as server:

        async def go() -> None:
            client = with_client(
                server, MarketoLimits(calls_per_window=10, window_s=2.0, max_in_flight=5)
            )
            try:
                await asyncio.gather(*(client.leads("id", [1], ["id"]) for _ in range(25)))
            finally:
                await client.aclose()

        run(go())
        codes = [e.code for e in app[JOURNAL_KEY].entries() if "/rest/" in e.path]
    assert len(codes) == 25 and "606" not in codes and "615" not in codes


def test_expired_tokens_are_refreshed_and_faults_retried() -> None:
    faults = FaultPlan(seed=3, error_rate=0.2)
    _, sandbox = serve(seed_people=50, token_expiry_s=0.5, faults=faults)
    with sandbox as server:

        async def go() -> tuple[list[dict[str, Any]], int]:
            client = with_client(server)
            try:
                got: list[dict[str, Any]] = []
                for i in range(1, 41):
                    got += await client.leads("id", [i], ["id"])
                    await asyncio.sleep(0.02)
                return got, client.auth.refreshes
            finally:
                await client.aclose()

        leads, refreshes = run(go())
    assert [lead["id"] for lead in leads] == list(range(1, 41))
    assert refreshes >= 2


def test_daily_quota_stops_the_client_until_reset() -> None:
    _, sandbox = serve(seed_people=5, daily_quota=3)
    with sandbox as server:

        async def go() -> None:
            client = with_client(server)
            try:
                for _ in range(4):
                    await client.leads("id", [1], ["id"])
            finally:
                await client.aclose()

        with pytest.raises(QuotaExhausted) as caught:
            run(go())
    assert caught.value.retry_after > 0


def test_bulk_export_streams_the_file_in_ranges() -> None:
    app, sandbox = serve(seed_people=2000, export_processing_s=0.05)
    with sandbox as server:

        async def go() -> bytes:
            client = with_client(server)
            try:
                export = await client.create_export(
                    ["id", "email"],
                    EPOCH,  # the population's first month
                    EPOCH + timedelta(days=30),
                )
                await client.enqueue_export(export)
                # Marketo's API: a job's status is polled (the sandbox's too)
                while (await client.export_status(export))["status"] != "Completed":  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
                return b"".join([c async for c in client.export_file(export, chunk=4096)])
            finally:
                await client.aclose()

        data = run(go())
    rows = data.decode().splitlines()
    assert rows[0] == "id,email" and len(rows) > 100
    assert app[STATE_KEY] is not None


def test_a_lookup_is_a_get_unless_its_uri_would_pass_8_kb() -> None:
    app, sandbox = serve(seed_people=300)
    long_emails = [f"someone.with.quite.a.long.address.{i}@example.com" for i in range(299)]
    with sandbox as server:

        async def go() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
            client = with_client(server)
            try:
                short = await client.leads("email", ["person1@example.com"], ["email"])
                long = await client.leads("email", ["person2@example.com", *long_emails], ["email"])
                return short, long
            finally:
                await client.aclose()

        short, long = run(go())
        calls = [
            (e.method, e.query, e.status)
            for e in app[JOURNAL_KEY].entries()
            if e.path == "/rest/v1/leads.json"
        ]
    assert short == [{"id": 1, "email": "person1@example.com"}]
    assert long == [{"id": 2, "email": "person2@example.com"}]
    assert [(m, q) for m, q, _ in calls] == [("GET", calls[0][1]), ("POST", "_method=GET")]
    assert "filterValues=person1@example.com" in calls[0][1]
    assert all(status == 200 for _, _, status in calls)


def test_a_widely_used_client_looks_leads_up_by_email_unchanged() -> None:
    """marketorestpython sends lead lookups as POST with `_method=GET` and the access
    token in a form body; the sandbox must answer it like Marketo does."""
    marketorestpython = pytest.importorskip("marketorestpython.client")
    app, sandbox = serve(seed_people=5)
    app[STATE_KEY].sync_leads([{"email": "person3@example.com", "unsubscribed": True}])
    with sandbox as server:
        mc = marketorestpython.MarketoClient("sandbox", "actions-sync", "sandbox-secret")
        mc.host = server.url  # the instance's base URL, as for any Marketo instance
        leads = mc.execute(
            method="get_multiple_leads_by_filter_type",
            filterType="email",
            filterValues=["person3@example.com", "person4@example.com"],
            fields=["email", "unsubscribed"],
        )
        posted = [e.method for e in app[JOURNAL_KEY].entries() if e.path == "/rest/v1/leads.json"]
    assert leads == [
        {"id": 3, "email": "person3@example.com", "unsubscribed": True},
        {"id": 4, "email": "person4@example.com", "unsubscribed": False},
    ]
    assert posted == ["POST"]
