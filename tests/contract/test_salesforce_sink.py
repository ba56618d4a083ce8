"""The Salesforce Tasks sink against the Salesforce sandbox over real HTTP (no Kafka)."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actions_sync.retry import Backoff
from actions_sync.store import Store
from actions_sync.store.task_deliveries import task_deliveries
from connectors.errors import QuotaExhausted
from connectors.outcome import Kind
from connectors.resolution import Action
from connectors.salesforce.budget import Budget
from connectors.salesforce.classify import classify, record_outcome
from connectors.salesforce.client import SalesforceClient
from connectors.salesforce.sink import TaskSink
from sandboxes.base import JOURNAL_KEY, FaultPlan, SandboxServer
from sandboxes.salesforce import STATE_KEY, SalesforceConfig, create_app
from tests.support.vendors import salesforce_tasks, split_bound

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)


class Org:
    def __init__(self, tmp_path: Path, **config: Any) -> None:
        self.app = create_app(SalesforceConfig(seed_people=40, **config))
        self.server = SandboxServer(self.app)
        self.store = Store(f"sqlite:///{tmp_path}/store.db")  # the sink's deliveries
        self.store.migrate()

    @property
    def state(self) -> Any:
        return self.app[STATE_KEY]

    def ids(self, sobject: str) -> list[str]:
        with self.state.lock:
            return [
                r["Id"]
                for r in self.state.records[sobject].values()
                if not r["IsDeleted"] and not r.get("IsConverted")
            ]

    def tasks(self) -> dict[str, dict[str, Any]]:
        with self.state.lock:
            return {
                r["ActionsSync_Id__c"]: dict(r)
                for r in self.state.records["Task"].values()
                if not r["IsDeleted"]
            }

    def calls(self, path_part: str) -> list[Any]:
        return [e for e in self.app[JOURNAL_KEY].entries() if path_part in e.path]


@pytest.fixture
def org(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Org]:
    org = Org(tmp_path, **getattr(request, "param", {}))
    with org.server:
        yield org
    org.store.close()


def sink_for(org: Org, reserve: int = 0, pause_s: float = 60.0) -> TaskSink:
    client = SalesforceClient(
        org.server.url,
        "actions-sync",
        "sandbox-secret",
        budget=Budget(reserve, pause_s),
        timeout_s=5.0,
    )
    client.api.backoff = Backoff(base_s=0.01, cap_s=0.05)
    return TaskSink(client, org.store.engine)


def deliver(sink: TaskSink, *batches: list[dict[str, Any]]) -> list[list[Kind]]:
    async def go() -> list[list[Kind]]:
        try:
            await sink.start()
            return [[o.kind for o in await sink.deliver(b)] for b in batches]
        finally:
            await sink.aclose()

    return asyncio.run(go())


def task(n: int, who: str, *, op: str = "UPSERT", at: int = 0, **fields: Any) -> dict[str, Any]:
    values = {
        "Subject": f"Email: hello {n}",
        "WhoId": who,
        "Type": "Email",
        "Status": "Completed",
        "Priority": "Normal",
        **fields,
    }
    return {
        "external_id": f"activity:{n}",
        "operation": op,
        "fields": values,
        "occurred_at": T0 + timedelta(seconds=at),
        "origin": f"activity:{n}",
    }


def test_tasks_are_upserted_once_by_external_id_even_when_redelivered(org: Org) -> None:
    """A redelivered batch (a sink or an agent killed before its commit) is not sent again:
    each upsert equals the last one delivered for its Task (the store's digests), also
    to a new sink process; a new change of a Task is."""
    who = org.ids("Contact")[0]
    batch = [task(n, who) for n in range(450)]
    kinds = deliver(sink_for(org), batch, batch) + deliver(sink_for(org), batch)
    assert kinds == [[Kind.ACCEPTED] * 450, [Kind.SKIPPED] * 450, [Kind.SKIPPED] * 450]
    assert len(org.tasks()) == 450
    upserts = org.calls("/composite/sobjects/Task/ActionsSync_Id__c")
    assert len(upserts) == 3  # 200 + 200 + 50, once
    (again,) = deliver(sink_for(org), [task(7, who, at=1, Description="new")])
    assert again == [Kind.ACCEPTED] and org.tasks()["activity:7"]["Description"] == "new"


def test_a_batch_is_collapsed_to_the_newest_change_per_task(org: Org) -> None:
    who = org.ids("Contact")[0]
    batch = [
        task(1, who, at=2, Subject="newest"),
        task(1, who, at=1, Subject="older"),
        task(2, who, at=5),
        task(2, who, at=5, Subject="same time, later in batch"),
    ]
    kinds = deliver(sink_for(org), batch)
    assert kinds == [[Kind.ACCEPTED, Kind.SKIPPED, Kind.SKIPPED, Kind.ACCEPTED]]
    tasks = org.tasks()
    assert tasks["activity:1"]["Subject"] == "newest"
    assert tasks["activity:2"]["Subject"] == "same time, later in batch"


def reminder(at: datetime, conditional: bool, **fields: Any) -> dict[str, Any]:
    """A reminder task's `SalesforceTaskOut` upsert (`streams.rules.reminders.task_out`)."""
    return {
        "external_id": "t-1",
        "operation": "UPSERT",
        "fields": fields,
        "occurred_at": at,
        "conditional": conditional,
        "origin": "reminder:t-1",
    }


def test_a_persons_newer_edit_wins_over_an_older_actions_write(org: Org) -> None:
    """SPEC S11, the write bound: the sync's write of an Actions edit older than a
    person's edit of the Task is not made (compare-before-write: one query, no write,
    skipped, not dead-lettered); a newer one is; and the same write sent again (a sink
    killed before keeping its digest) finds its fields in Salesforce and writes nothing."""
    who = org.ids("Contact")[0]
    created = reminder(
        datetime.now(UTC), False, WhoId=who, Subject="Call", Status="Not Started", Description="a"
    )
    assert deliver(sink_for(org), [created]) == [[Kind.ACCEPTED]]
    sfdc_id = org.tasks()["t-1"]["Id"]
    actions_edit = datetime.now(UTC)
    time.sleep(0.01)  # the person's edit is the newer one
    httpx.patch(
        f"{org.server.url}/_sandbox/salesforce/records/Task/{sfdc_id}",
        json={"fields": {"Description": "the person's"}},
    ).raise_for_status()
    org.app[JOURNAL_KEY].clear()
    older = reminder(actions_edit, True, Description="from Actions")
    assert deliver(sink_for(org), [older]) == [[Kind.SKIPPED]]
    assert org.tasks()["t-1"]["Description"] == "the person's"
    writes = [e for e in org.calls("/services/data/") if e.method in ("POST", "PATCH", "DELETE")]
    assert writes == [] and len(org.calls("/query")) == 1

    newer = reminder(datetime.now(UTC), True, Description="newer", Status="Completed")
    assert deliver(sink_for(org), [newer]) == [[Kind.ACCEPTED]]
    assert org.tasks()["t-1"]["Description"] == "newer"
    with org.store.engine.begin() as conn:  # killed after the call, before the digest
        conn.execute(task_deliveries.delete())
    org.app[JOURNAL_KEY].clear()
    assert deliver(sink_for(org), [newer]) == [[Kind.SKIPPED]]
    assert [e for e in org.calls("/services/data/") if e.method == "PATCH"] == []


def test_deletes_remove_the_task_and_a_missing_task_counts_as_deleted(org: Org) -> None:
    who = org.ids("Contact")[0]
    kinds = deliver(
        sink_for(org),
        [task(1, who), task(2, who)],
        [task(1, who, op="DELETE", at=1), task(3, who, op="DELETE", at=1)],
    )
    assert kinds[1] == [Kind.ACCEPTED, Kind.ACCEPTED]
    assert set(org.tasks()) == {"activity:2"}


def test_invalid_records_are_rejected_with_their_reason_and_the_rest_written(org: Org) -> None:
    lead, contact = org.ids("Lead")[0], org.ids("Contact")[0]
    batch = [
        task(1, contact),
        task(2, contact, Subject="Email: [[invalid]]"),
        task(3, contact, Subject=None),
        task(4, lead, WhatId="001000000000000001"),
        task(5, contact, NoSuchField__c="x"),
    ]

    async def go() -> list[Any]:
        sink = sink_for(org)
        try:
            return await sink.deliver(batch)
        finally:
            await sink.aclose()

    outcomes = asyncio.run(go())
    assert [o.kind for o in outcomes] == [Kind.ACCEPTED] + [Kind.REJECTED] * 4
    codes = [getattr(o.error, "code", None) for o in outcomes[1:]]
    assert codes == [
        "FIELD_CUSTOM_VALIDATION_EXCEPTION",
        "REQUIRED_FIELD_MISSING",
        "FIELD_INTEGRITY_EXCEPTION",
        "INVALID_FIELD",
    ]
    assert set(org.tasks()) == {"activity:1"}


@pytest.mark.parametrize(
    "org", [{"lock_error_rate": 0.3, "faults": FaultPlan(seed=2, error_rate=0.3)}], indirect=True
)
def test_lock_errors_ask_for_a_retry_and_server_errors_are_retried(org: Org) -> None:
    who = org.ids("Contact")[0]
    batch = [task(n, who) for n in range(100)]
    kinds = deliver(sink_for(org), batch)[0]
    assert Kind.RETRY in kinds and Kind.REJECTED not in kinds
    retried = [r for r, k in zip(batch, kinds, strict=True) if k is Kind.RETRY]
    for _ in range(20):
        if not retried:
            break
        again = deliver(sink_for(org), retried)[0]
        retried = [r for r, k in zip(retried, again, strict=True) if k is Kind.RETRY]
    assert not retried and len(org.tasks()) == 100
    assert any(e.status >= 500 for e in org.calls("/services/data"))


def test_an_expired_session_is_renewed_and_the_call_replayed_once(org: Org) -> None:
    who = org.ids("Contact")[0]

    async def go() -> list[Kind]:
        sink = sink_for(org)
        try:
            await sink.deliver([task(1, who)])
            async with httpx.AsyncClient() as http:
                await http.post(f"{org.server.url}/_sandbox/salesforce/sessions/expire")
            return [o.kind for o in await sink.deliver([task(2, who)])]
        finally:
            await sink.aclose()

    assert asyncio.run(go()) == [Kind.ACCEPTED]
    codes = [e.code for e in org.calls("/composite/sobjects")]
    assert codes.count("INVALID_SESSION_ID") == 1 and len(org.tasks()) == 2


def test_the_sink_pauses_before_the_daily_budget_runs_out(org: Org) -> None:
    who = org.ids("Contact")[0]
    org.state.reconfigure(daily_budget=1000)
    org.state.budget.set_used(990)

    async def go() -> list[Any]:
        sink = sink_for(org, reserve=5)
        try:
            first = await sink.deliver([task(1, who)])  # 991/1000 used: 9 left > 5
            for n in range(2, 6):
                await sink.deliver([task(n, who)])
            return [first, await sink.deliver([task(9, who)])]
        finally:
            await sink.aclose()

    first, last = asyncio.run(go())
    assert first[0].kind is Kind.ACCEPTED
    assert last[0].kind is Kind.RETRY and isinstance(last[0].error, QuotaExhausted)
    assert org.state.budget.used == 995  # stopped with the reserve untouched, no 403


def test_a_spent_daily_budget_pauses_instead_of_spinning(org: Org) -> None:
    who = org.ids("Contact")[0]
    org.state.reconfigure(daily_budget=10)
    org.state.budget.set_used(10)
    outcome = None

    async def go() -> None:
        nonlocal outcome
        sink = sink_for(org)
        try:
            await sink.client.auth.get()
            outcome = (await sink.deliver([task(1, who)]))[0]
        finally:
            await sink.aclose()

    asyncio.run(go())
    assert outcome is not None and outcome.quota and outcome.retry_after >= 60
    assert [e.code for e in org.calls("/composite")] == ["REQUEST_LIMIT_EXCEEDED"]


@pytest.mark.parametrize(
    ("status", "body", "action"),
    [
        (
            403,
            [{"errorCode": "REQUEST_LIMIT_EXCEEDED", "message": "TotalRequests Limit exceeded."}],
            Action.QUOTA_EXHAUSTED,
        ),
        (
            403,
            [
                {
                    "errorCode": "REQUEST_LIMIT_EXCEEDED",
                    "message": "ConcurrentPerOrgLongTxn Limit exceeded.",
                }
            ],
            Action.RATE_LIMITED,
        ),
        (
            401,
            [{"errorCode": "INVALID_SESSION_ID", "message": "Session expired or invalid"}],
            Action.REFRESH_AUTH,
        ),
        (503, [{"errorCode": "SERVER_UNAVAILABLE", "message": "x"}], Action.RETRY),
        (500, [{"errorCode": "UNKNOWN_EXCEPTION", "message": "x"}], Action.RETRY),
        (400, [{"errorCode": "EXCEEDED_ID_LIMIT", "message": "x"}], Action.REJECTED),
        (404, [{"errorCode": "NOT_FOUND", "message": "x"}], Action.FATAL),
        (200, [], Action.SUCCESS),
    ],
)
def test_call_level_answers_are_classified(
    status: int, body: list[dict[str, str]], action: Action
) -> None:
    request = httpx.Request("PATCH", "https://x/services/data/v62.0/composite/sobjects")
    assert classify(httpx.Response(status, json=body, request=request)).action is action


@pytest.mark.parametrize(
    ("code", "op", "kind"),
    [
        ("UNABLE_TO_LOCK_ROW", "upsert", Kind.RETRY),
        ("REQUIRED_FIELD_MISSING", "upsert", Kind.REJECTED),
        ("DUPLICATES_DETECTED", "upsert", Kind.REJECTED),
        ("STRING_TOO_LONG", "upsert", Kind.REJECTED),
        ("ENTITY_IS_DELETED", "upsert", Kind.REJECTED),
        ("ENTITY_IS_DELETED", "delete", Kind.ACCEPTED),
        ("SOMETHING_NEW", "upsert", Kind.REJECTED),
    ],
)
def test_record_results_are_classified(
    code: str, op: Literal["upsert", "delete"], kind: Kind
) -> None:
    result = {"success": False, "errors": [{"statusCode": code, "message": "m", "fields": []}]}
    assert record_outcome(result, op).kind is kind


_EXAMPLES = itertools.count(10)


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data(), n=st.integers(2, 200))
def test_only_the_records_that_refuse_a_call_are_rejected_the_rest_written_once(
    org: Org, data: st.DataObject, n: int
) -> None:
    bad = data.draw(st.sets(st.integers(0, n - 1), min_size=1, max_size=min(5, n)))
    who, first = org.ids("Contact")[0], next(_EXAMPLES) * 1000
    batch = [task(first + i, who) for i in range(n)]
    for i in bad:
        batch[i]["fields"]["Description"] = "notes [[refuse-call]]"
    org.app[JOURNAL_KEY].clear()
    (kinds,) = deliver(sink_for(org), batch)
    assert {i for i, k in enumerate(kinds) if k is Kind.REJECTED} == bad
    assert {i for i, k in enumerate(kinds) if k is Kind.ACCEPTED} == set(range(n)) - bad
    mine = {r["external_id"] for r in batch}
    written = Counter(
        t["ActionsSync_Id__c"]
        for t in salesforce_tasks(org.server.url)
        if t["ActionsSync_Id__c"] in mine
    )
    assert written == {batch[i]["external_id"]: 1 for i in range(n) if i not in bad}
    calls = [e for e in org.calls("/composite/sobjects") if e.method == "PATCH"]
    assert len(calls) <= split_bound(len(bad), n)
    assert {e.code for e in calls} <= {None, "JSON_PARSER_ERROR"}
