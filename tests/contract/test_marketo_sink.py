"""The Marketo activities sink against the Marketo sandbox over real HTTP and a real store.

Each activity must be in Marketo exactly once, whatever fails: timeouts that land late,
5xx, rate limits, expired tokens, a crash between the send and the ledger's update.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actions_sync.clock import SystemClock
from actions_sync.retry import Backoff
from actions_sync.store import Store
from actions_sync.store.ledger import ACCEPTED, PENDING, Ledger
from connectors.marketo.activity_types import ACTIVITY_TYPES
from connectors.marketo.client import MarketoClient, MarketoLimits
from connectors.marketo.outbound import activity_input
from connectors.marketo.registration import register_types
from connectors.marketo.sink import ActivitySink, Timing
from connectors.outcome import Kind
from sandboxes.base import FAULTS_KEY, JOURNAL_KEY, SandboxServer
from sandboxes.marketo import STATE_KEY, MarketoConfig, create_app
from tests.support.vendors import ledger_ids, marketo_activities, split_bound

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)


class Instance:
    def __init__(self, tmp_path: Any, **config: Any) -> None:
        self.app = create_app(MarketoConfig(seed_people=50, **config))
        self.server = SandboxServer(self.app)
        self.store = Store(f"sqlite:///{tmp_path}/store.db")
        self.store.migrate()
        self.ledger = Ledger(self.store.engine)

    def calls(self, part: str) -> list[Any]:
        return [e for e in self.app[JOURNAL_KEY].entries() if part in e.path]

    def faults(self, **plan: Any) -> None:
        self.app[FAULTS_KEY].replace(**plan)

    def held(self) -> Any:
        return ledger_ids(marketo_activities(self.server.url))


@pytest.fixture
def marketo(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Instance]:
    instance = Instance(tmp_path, **getattr(request, "param", {}))
    with instance.server:
        yield instance
    instance.store.close()


def client_for(marketo: Instance, timeout_s: float = 5.0, **limits: Any) -> MarketoClient:
    client = MarketoClient(
        marketo.server.url,
        "actions-sync",
        "sandbox-secret",
        MarketoLimits(**{"calls_per_window": 100, "max_in_flight": 5, **limits}),
        timeout_s=timeout_s,
    )
    client.api.backoff = Backoff(base_s=0.01, cap_s=0.05)
    return client


def sink_for(marketo: Instance, settle_s: float = 0.0, **client: Any) -> ActivitySink:
    return ActivitySink(client_for(marketo, **client), marketo.ledger, Timing(settle_s, 5.0))


def activity(n: int, lead: int = 1, type_: str = "SEND_SALES_EMAIL") -> dict[str, Any]:
    return {
        "activity_id": str(uuid.UUID(int=n)),
        "lead_id": lead,
        "type": type_,
        "activity_date": T0 + timedelta(minutes=n),
        "primary_attribute_value": f"Hello (SIA-{n})",
        "attributes": {
            "sentBy": "seller@example.com",
            "source": "Sales App",
            "salesCampaignName": None,
        },
    }


def deliver(
    sink: ActivitySink, *batches: list[dict[str, Any]], started: Any = None
) -> list[list[Any]]:
    async def go() -> list[list[Any]]:
        try:
            await sink.start()
            if started:
                started()
            return [await sink.deliver(batch) for batch in batches]
        finally:
            await sink.aclose()

    return asyncio.run(go())


def kinds(outcomes: list[Any]) -> list[Kind]:
    return [o.kind for o in outcomes]


def test_the_eight_types_are_registered_and_approved_once(marketo: Instance) -> None:
    async def twice() -> tuple[dict[str, int], dict[str, int]]:
        client = client_for(marketo)
        try:
            return await register_types(client), await register_types(client)
        finally:
            await client.aclose()

    first, second = asyncio.run(twice())
    assert first == second and set(first) == {t.symbol for t in ACTIVITY_TYPES}
    assert len(marketo.calls("/external/type.json")) == 8  # created once
    assert len(marketo.calls("/approve.json")) == 8
    assert len(marketo.calls("/external/types.json")) == 2  # the second start only lists
    types = httpx.get(f"{marketo.server.url}/_sandbox/journal").json()
    assert types


def test_activities_are_written_once_with_their_type_and_attributes(marketo: Instance) -> None:
    batch = [activity(n, lead=n % 40 + 1, type_=ACTIVITY_TYPES[n % 8].symbol) for n in range(700)]
    for record in batch:
        record["attributes"] = {"marketoSalesPersonId": "7"}
    first, again = deliver(sink_for(marketo), batch, batch)
    assert kinds(first) == [Kind.ACCEPTED] * 700 and kinds(again) == [Kind.SKIPPED] * 700
    assert len(marketo.calls("/activities/external.json")) == 3  # 300 + 300 + 100, once
    held = marketo_activities(marketo.server.url)
    assert ledger_ids(held) == {r["activity_id"]: 1 for r in batch}
    one = next(
        a
        for a in held
        if a["leadId"] == batch[9]["lead_id"] and a["primaryAttributeValue"] == "Hello (SIA-9)"
    )
    assert {a["apiName"]: a["value"] for a in one["attributes"]} == {
        "marketoSalesPersonId": "7",
        "actionsSyncId": batch[9]["activity_id"],
    }
    assert marketo.ledger.count(ACCEPTED) == 700


def test_skipped_records_are_rejected_with_marketos_reason_and_not_kept(marketo: Instance) -> None:
    batch = [activity(1), activity(2, lead=999_999), activity(3), activity(4, type_="NOPE")]
    batch[2]["attributes"] = {"noSuchAttribute": "x"}
    (outcomes,) = deliver(sink_for(marketo), batch)
    assert kinds(outcomes) == [Kind.ACCEPTED, Kind.REJECTED, Kind.REJECTED, Kind.REJECTED]
    assert [getattr(o.error, "code", None) for o in outcomes[1:3]] == ["1004", "1006"]
    assert marketo.ledger.count() == 1 and marketo.held() == {batch[0]["activity_id"]: 1}


def test_a_timed_out_write_waits_to_settle_and_is_reconciled_before_it_is_resent(
    marketo: Instance,
) -> None:
    batch = [activity(n) for n in range(10)]
    (first,) = deliver(
        sink_for(marketo, settle_s=1.5, timeout_s=0.3),
        batch,
        started=lambda: marketo.faults(timeout_rate=1.0, timeout_s=1.0),
    )
    assert kinds(first) == [Kind.RETRY] * 10 and marketo.ledger.count(PENDING) == 10
    marketo.faults(timeout_rate=0.0)
    (waiting,) = deliver(sink_for(marketo, settle_s=1.5), batch)
    assert kinds(waiting) == [Kind.RETRY] * 10 and not waiting[0].counts_as_attempt  # settling
    asyncio.run(asyncio.sleep(1.6))
    (settled,) = deliver(sink_for(marketo, settle_s=1.5), batch)
    # The sandbox drops a request whose client went away (a crash that lands is below).
    assert kinds(settled) == [Kind.ACCEPTED] * 10
    assert len(marketo.calls("/rest/v1/activities.json")) == 1  # read back before sending
    assert marketo.held() == {r["activity_id"]: 1 for r in batch}
    assert marketo.ledger.count(ACCEPTED) == 10


def test_a_write_refused_with_a_transient_error_is_reconciled_then_sent_once(
    marketo: Instance,
) -> None:
    batch = [activity(n) for n in range(5)]
    (first,) = deliver(
        sink_for(marketo), batch, started=lambda: marketo.faults(error_rate=1.0, seed=1)
    )
    assert kinds(first) == [Kind.RETRY] * 5 and marketo.ledger.count(PENDING) == 5
    marketo.faults(error_rate=0.0)
    (second,) = deliver(sink_for(marketo), batch)
    assert kinds(second) == [Kind.ACCEPTED] * 5
    assert marketo.held() == {r["activity_id"]: 1 for r in batch}


def test_a_crash_after_the_send_before_the_ledger_update_never_duplicates(
    marketo: Instance,
) -> None:
    batch = [activity(n) for n in range(20)]
    sent = batch[10:]  # the first ten were claimed but never sent

    async def crash() -> None:  # claimed both halves, sent one, died before recording
        client = client_for(marketo)
        try:
            types = await register_types(client)
            rows = [(r["activity_id"], r["lead_id"], types[r["type"]]) for r in batch]
            marketo.ledger.claim(rows, "deadbeef", SystemClock().now())
            await client.add_custom_activities_once(
                [activity_input(r, types[r["type"]]) for r in sent]
            )
        finally:
            await client.aclose()

    asyncio.run(crash())
    (outcomes,) = deliver(sink_for(marketo), batch)
    assert kinds(outcomes) == [Kind.ACCEPTED] * 10 + [Kind.SKIPPED] * 10
    assert marketo.held() == {r["activity_id"]: 1 for r in batch}


@pytest.mark.parametrize("marketo", [{"token_expiry_s": 0.3}], indirect=True)
def test_rate_limits_and_expired_tokens_never_duplicate(marketo: Instance) -> None:
    batch = [activity(n, lead=n % 40 + 1) for n in range(1500)]
    sink = sink_for(marketo)
    pending = batch

    def fill_the_window() -> None:  # another client used the instance's 100 calls/20 s
        stamps = marketo.app[STATE_KEY].limits.window._stamps
        # oldest first; free again in 4 s (the sink's first calls meet 606 even when a
        # loaded machine takes seconds to send them)
        stamps.extendleft([time.monotonic() - 16.0] * 100)

    async def until_done() -> None:
        nonlocal pending
        try:
            await sink.start()
            fill_the_window()
            for _ in range(40):
                outcomes = await sink.deliver(pending)
                pending = [
                    r for r, o in zip(pending, outcomes, strict=True) if o.kind is Kind.RETRY
                ]
                if not pending:
                    return
                await asyncio.sleep(0.6)
        finally:
            await sink.aclose()

    asyncio.run(until_done())
    codes = {e.code for e in marketo.calls("/rest/")}
    assert not pending and "606" in codes and "602" in codes
    assert marketo.held() == {r["activity_id"]: 1 for r in batch}


@pytest.mark.parametrize("marketo", [{"max_concurrent": 2}], indirect=True)
def test_too_many_calls_in_flight_are_retried_without_duplicates(marketo: Instance) -> None:
    marketo.faults(latency_ms=300)  # calls overlap even on a loaded machine
    batch = [activity(n, lead=n % 40 + 1) for n in range(1500)]
    sink, pending = sink_for(marketo), batch  # 5 in flight against Marketo's 2: 615s

    async def until_done() -> None:
        nonlocal pending
        try:
            await sink.start()
            for _ in range(40):
                outcomes = await sink.deliver(pending)
                pending = [
                    r for r, o in zip(pending, outcomes, strict=True) if o.kind is Kind.RETRY
                ]
                if not pending:
                    return
        finally:
            await sink.aclose()

    asyncio.run(until_done())
    assert not pending and "615" in {e.code for e in marketo.calls("/external.json")}
    assert marketo.held() == {r["activity_id"]: 1 for r in batch}


_EXAMPLES = itertools.count(10)


@pytest.mark.parametrize("marketo", [{"rate_calls": 100_000}], indirect=True)
@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data(), n=st.integers(2, 300))
def test_only_the_records_that_refuse_a_call_are_rejected_the_rest_written_once(
    marketo: Instance, data: st.DataObject, n: int
) -> None:
    bad = data.draw(st.sets(st.integers(0, n - 1), min_size=1, max_size=min(5, n)))
    first = next(_EXAMPLES) * 1000  # fresh activity ids per example
    batch = [activity(first + i, lead=i % 40 + 1) for i in range(n)]
    for i in bad:
        batch[i]["primary_attribute_value"] = f"Hello [[refuse-call]] (SIA-{i})"
    marketo.app[JOURNAL_KEY].clear()
    (outcomes,) = deliver(sink_for(marketo), batch)
    assert {i for i, o in enumerate(outcomes) if o.kind is Kind.REJECTED} == bad
    assert all(getattr(outcomes[i].error, "code", None) == "1003" for i in bad)
    assert {i for i, o in enumerate(outcomes) if o.kind is Kind.ACCEPTED} == set(range(n)) - bad
    mine = {r["activity_id"] for r in batch}
    held = {k: v for k, v in marketo.held().items() if k in mine}
    assert held == {batch[i]["activity_id"]: 1 for i in range(n) if i not in bad}
    assert len(marketo.calls("/activities/external.json")) <= split_bound(len(bad), n)
