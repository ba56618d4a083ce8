"""The Salesforce source's cursor on a real broker and store (SQLite and PostgreSQL)
against the sandbox over HTTP, in process (one poll at a time, on the sandbox's clock):
equal SystemModstamps across a page boundary, a late commit inside the lookback, an
opt-out deleted before the poll, hard deletions read from `/deleted/` and a window the
recycle bin lost, a field the org lacks, a spent budget."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web

from actions_sync.admin.model import AdminSettings
from actions_sync.kafka import ensure_topics, read_topic
from actions_sync.publish import Publisher
from actions_sync.serialization import Deserializer, RegistryClient
from actions_sync.store import Store
from actions_sync.topics import SALESFORCE_OPTOUTS, specs
from connectors.errors import QuotaExhausted
from connectors.salesforce.budget import Budget
from connectors.salesforce.client import SalesforceClient
from connectors.salesforce.cursor import Stream
from connectors.salesforce.poller import Poller
from connectors.salesforce.source import OptOutSource
from sandboxes.base import JOURNAL_KEY, SandboxServer
from sandboxes.population import sfdc_id
from sandboxes.salesforce import (
    SalesforceConfig,
    SalesforceState,
    create_app,
    human_delete,
    human_update,
)
from tests.support.checks import present

T0 = datetime(2026, 11, 23, 18, 0, tzinfo=UTC)
OPT_OUT = {"HasOptedOutOfEmail": True}


class Clock:
    """The sandbox's and the poller's clock, moved by hand."""

    def __init__(self) -> None:
        self.at = T0

    def __call__(self) -> datetime:
        return self.at

    def now(self) -> datetime:
        return self.at

    def monotonic(self) -> float:
        return self.at.timestamp()

    async def sleep(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


@dataclass
class Rig:
    clock: Clock
    state: SalesforceState
    url: str
    kafka: str
    registry: RegistryClient
    store: Store
    app: web.Application

    def calls(self, path_part: str) -> int:
        return sum(path_part in e.path for e in self.app[JOURNAL_KEY].entries())

    def poll(self, lookback_s: float = 600.0, **admin: Any) -> OptOutSource:
        """One cycle of the source, as the worker runs it."""

        async def go() -> OptOutSource:
            poller = self.poller(lookback_s)
            source = OptOutSource(poller, lambda: AdminSettings(**admin), 0.1)
            try:
                await source.cycle()
            finally:
                await poller.client.aclose()
            return source

        return asyncio.run(go())

    def poller(self, lookback_s: float = 600.0) -> Poller:
        client = SalesforceClient(
            self.url, "actions-sync", "sandbox-secret", budget=Budget(0, 60.0), timeout_s=5.0
        )
        publisher = Publisher(self.kafka, self.registry)
        return Poller(
            client,
            self.store,
            publisher,
            "salesforce-source",
            timedelta(seconds=lookback_s),
            clock=self.clock,
        )

    def published(self) -> list[dict[str, Any]]:
        decode = Deserializer(self.registry, "SalesforceOptOut")
        return [decode(m.value()) for m in read_topic(self.kafka, SALESFORCE_OPTOUTS, idle_s=0.5)]


@pytest.fixture
def rig(
    kafka: str, registry: str, database_url: str, request: pytest.FixtureRequest
) -> Iterator[Rig]:
    clock = Clock()
    config = SalesforceConfig(seed_people=40, **getattr(request, "param", {}))
    state = SalesforceState(config, clock=clock)
    ensure_topics(kafka, specs((SALESFORCE_OPTOUTS,), 2))
    client = RegistryClient(registry)
    app = create_app(config, state)
    with SandboxServer(app) as server, Store(database_url) as store:
        store.migrate()
        try:
            yield Rig(clock, state, server.url, kafka, client, store, app)
        finally:
            client.close()


def leads(*numbers: int) -> list[str]:
    return [sfdc_id("00Q", n) for n in numbers]


@pytest.mark.parametrize("rig", [{"query_page_size": 3}], indirect=True)
def test_equal_stamps_across_a_page_boundary_are_all_published_once(rig: Rig) -> None:
    rig.poll()  # the cursor starts at T0
    rig.clock.advance(5)
    for lead in leads(*range(1, 9)):  # eight opt-outs with one SystemModstamp: 3 pages
        human_update(rig.state, lead, OPT_OUT)

    rig.poll()
    rig.clock.advance(5)
    rig.poll()  # re-reads the window: nothing new

    assert sorted(r["sfdc_id"] for r in rig.published()) == leads(*range(1, 9))
    assert present(rig.store.checkpoint("salesforce.optouts.Lead"))["id"] == leads(8)[0]


def test_a_late_commit_inside_the_lookback_is_published(rig: Rig) -> None:
    rig.poll()
    rig.clock.advance(60)
    human_update(rig.state, leads(1)[0], OPT_OUT)
    rig.poll()  # the cursor passes lead 1
    human_update(rig.state, leads(2)[0], OPT_OUT, late_by_s=30)  # stamped before lead 1

    rig.poll()

    assert [r["sfdc_id"] for r in rig.published()] == leads(1, 2)


def test_a_late_commit_is_lost_without_the_lookback(rig: Rig) -> None:
    """The reason for the lookback: the same history with none misses the row."""
    rig.poll(lookback_s=0)
    rig.clock.advance(60)
    human_update(rig.state, leads(1)[0], OPT_OUT)
    rig.poll(lookback_s=0)
    human_update(rig.state, leads(2)[0], OPT_OUT, late_by_s=30)

    rig.poll(lookback_s=0)

    assert [r["sfdc_id"] for r in rig.published()] == leads(1)


def test_an_opt_out_deleted_before_the_poll_is_published(rig: Rig) -> None:
    rig.poll()
    rig.clock.advance(5)
    contact = sfdc_id("003", 1)
    human_update(rig.state, contact, OPT_OUT)
    human_delete(rig.state, contact)  # merged away, say: the person still opted out

    rig.poll(unsubscribe_objects=("Contact",))

    assert [(r["sfdc_id"], r["sobject"]) for r in rig.published()] == [(contact, "Contact")]


def test_the_source_stops_calling_when_the_daily_budget_is_spent(rig: Rig) -> None:
    rig.state.budget.set_used(rig.state.budget.limit - 1)  # one call left in the org

    with pytest.raises(QuotaExhausted):
        rig.poll()  # Lead is read (Sforce-Limit-Info: none left); Contact is not asked

    assert rig.state.budget.used == rig.state.budget.limit


def run_for(rig: Rig, seconds: float, **admin: Any) -> OptOutSource:
    """The source's own loop, stopped after `seconds`."""

    async def go() -> OptOutSource:
        poller = rig.poller()
        source = OptOutSource(poller, lambda: AdminSettings(**admin), 0.05)
        asyncio.get_running_loop().call_later(seconds, source.stopping.set)
        try:
            await asyncio.wait_for(source.run(), 30)
        finally:
            await poller.client.aclose()
        return source

    return asyncio.run(go())


def test_a_field_the_org_lacks_is_reported_and_polled_again(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    run_for(rig, 0.5, unsubscribe_field="Missing__c", unsubscribe_objects=("Lead",))

    refusals = [r for r in caplog.records if "INVALID_FIELD" in r.getMessage()]
    assert len(refusals) >= 2  # reported, and polled again: the loop goes on
    assert rig.store.checkpoint("salesforce.optouts.Lead") is not None  # cursor kept


def test_a_spent_budget_stops_the_calls_while_the_loop_runs_on(rig: Rig) -> None:
    rig.state.budget.set_used(rig.state.budget.limit - 1)

    run_for(rig, 1.0)  # one call, then the budget keeper answers for the org

    assert rig.calls("/query") == 1


def test_hard_deletions_are_read_from_the_deleted_feed(rig: Rig) -> None:
    stream = Stream("test.tasks", "Lead")
    handed: list[dict[str, Any]] = []
    gaps: list[str] = []

    def hand(_: Stream, rows: Sequence[dict[str, Any]]) -> int:
        handed.extend(rows)
        return 0

    async def deletions() -> int:
        poller = rig.poller()
        try:
            return await poller.deletions(stream, hand, lambda _, why: gaps.append(why))
        finally:
            await poller.client.aclose()

    asyncio.run(deletions())  # starts the window
    rig.clock.advance(60)
    human_delete(rig.state, leads(4)[0])
    early = asyncio.run(deletions())  # read at most every 5 minutes
    rig.clock.advance(300)
    asyncio.run(deletions())
    rig.clock.advance(16 * 86400)  # the recycle bin no longer covers the window
    asyncio.run(deletions())

    assert early == 0 and [r["id"] for r in handed] == leads(4)
    assert len(gaps) == 1 and "INVALID_REPLICATION_DATE" in gaps[0]
