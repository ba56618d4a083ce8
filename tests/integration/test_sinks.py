"""Outbound records -> sink worker processes -> the Marketo and Salesforce sandboxes (real
HTTP), on a real broker (Tansu, or Apache Kafka when KAFKA_BOOTSTRAP_SERVERS is set) and a
real store: each activity exactly once, the right Tasks, invalid records on the DLQ with
their vendor's reason, and no duplicate or loss across `kill -9` in the middle of a batch.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from actions_sync.kafka import dlq_topic, read_topic
from actions_sync.publish import Publisher
from actions_sync.serialization import RegistryClient
from actions_sync.topics import OUTBOUND_MARKETO_ACTIVITIES, OUTBOUND_SALESFORCE_TASKS
from app.stack import Stack, Worker, http_client
from connectors.marketo.activity_types import ACTIVITY_TYPES
from tests.support.stacks import stack_settings
from tests.support.vendors import (
    ledger_ids,
    marketo_activities,
    marketo_activity_types,
    salesforce_tasks,
)

pytestmark = pytest.mark.slow

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
TOPICS = (OUTBOUND_MARKETO_ACTIVITIES, OUTBOUND_SALESFORCE_TASKS)
FAST = {  # small batches so that a kill lands mid-stream; quick settle for the ledger
    "ACTIONS_SYNC_MARKETO_CALLS_PER_WINDOW": "100",
    "ACTIONS_SYNC_MARKETO_SETTLE_S": "1",
    "ACTIONS_SYNC_MARKETO_CLOCK_SKEW_S": "5",
    "ACTIONS_SYNC_API_TIMEOUT_S": "5",
}


@pytest.fixture
def stack(kafka: str, registry: str, tmp_path: Any) -> Iterator[Stack]:
    settings = stack_settings(kafka, registry, tmp_path, TOPICS)
    with Stack(settings) as running:
        yield running


def publish(
    stack: Stack,
    topic: str,
    record: str,
    items: list[tuple[str, dict[str, Any]]],
    ends: dict[tuple[str, int], int],
) -> None:
    registry = RegistryClient(stack.registry_url)
    try:
        publisher = Publisher(stack.bootstrap, registry)
        publisher.publish(topic, record, items)
        publisher.flush()
        ends.update(publisher.ends)
    finally:
        registry.close()


def activity(n: int, lead: int) -> dict[str, Any]:
    kind = ACTIVITY_TYPES[n % len(ACTIVITY_TYPES)]
    return {
        "activity_id": str(uuid.UUID(int=n + 1)),
        "lead_id": lead,
        "type": kind.symbol,
        "activity_date": T0 + timedelta(seconds=n),
        "primary_attribute_value": f"Subject {n} (SIA-{n})",
        "attributes": {"marketoSalesPersonId": str(n % 7), "salesCampaignName": None},
    }


def task(n: int, who: str, subject: str | None = None, op: str = "UPSERT") -> dict[str, Any]:
    return {
        "external_id": f"activity:{n}",
        "operation": op,
        "occurred_at": T0,
        "fields": {
            "Subject": subject if subject is not None else f"Email: hello {n}",
            "WhoId": who,
            "Type": "Email",
            "TaskSubtype": "Email",
            "Status": "Completed",
            "Priority": "Normal",
        },
        "origin": f"activity:{n}",
    }


def contacts(url: str) -> list[str]:
    rows = http_client().get(f"{url}/_sandbox/salesforce/records/Contact", timeout=10).json()
    return [r["Id"] for r in rows]


def dead_letters(stack: Stack, topic: str) -> dict[str, dict[str, str]]:
    """source offset@partition -> headers (a record dead-lettered twice counts once)."""
    out = {}
    for msg in read_topic(stack.bootstrap, dlq_topic(topic), idle_s=1.0):
        headers = {k: v.decode() for k, v in msg.headers()}
        out[f"{headers['source.partition']}@{headers['source.offset']}"] = headers
    return out


def test_activities_reach_marketo_once_and_bad_ones_the_dlq(stack: Stack) -> None:
    marketo = stack.sandbox(
        "marketo",
        "--seed-people",
        "60",
        "--error-rate",
        "0.1",
        "--fault-seed",
        "4",
        "--token-expiry-s",
        "2",
        "--set",
        "timeout_rate=0.05",
        "--set",
        "timeout_s=4",
    )
    good = [activity(n, lead=n % 60 + 1) for n in range(1200)]
    unknown_lead = [activity(5000 + n, lead=999_999) for n in range(4)]
    ends: dict[tuple[str, int], int] = {}
    publish(
        stack,
        OUTBOUND_MARKETO_ACTIVITIES,
        "MarketoActivityOut",
        [(str(a["lead_id"]), a) for a in good + unknown_lead],
        ends,
    )
    stack.add_worker(
        "marketo-sink",
        # The sandbox holds 5 % of calls for 4 s, past the client's 3 s: those calls time
        # out and land anyway (the ledger must keep them once). 3 s, not 1 s, so that a
        # loaded machine's slow answers are not all timeouts too (CI: 0 of 1204 in 90 s).
        {"ACTIONS_SYNC_MARKETO_URL": marketo, **FAST, "ACTIONS_SYNC_API_TIMEOUT_S": "3"},
    )
    stack.wait_drained("marketo-sink", OUTBOUND_MARKETO_ACTIVITIES, ends, timeout_s=240)

    codes = {e["code"] for e in http_client().get(f"{marketo}/_sandbox/journal").json()}
    assert {"602"} <= codes and codes & {"604", "608", "611", "713"}  # faults were met
    held = marketo_activities(marketo)
    assert ledger_ids(held) == {a["activity_id"]: 1 for a in good}
    types = marketo_activity_types(marketo)
    by_id = {a["activity_id"]: a for a in good}
    for act in held[:50]:
        sent = by_id[next(x["value"] for x in act["attributes"] if x["apiName"] == "actionsSyncId")]
        kind = next(t for t in ACTIVITY_TYPES if t.symbol == sent["type"])
        assert types[act["activityTypeId"]] == kind.api_name
        assert act["leadId"] == sent["lead_id"]
        assert act["primaryAttributeValue"] == sent["primary_attribute_value"]
    letters = dead_letters(stack, OUTBOUND_MARKETO_ACTIVITIES)
    assert len(letters) == 4
    assert all(
        h["error.class"] == "Rejected" and "1004" in h["error.message"] for h in letters.values()
    )


def test_tasks_reach_salesforce_and_invalid_ones_the_dlq_with_their_reason(stack: Stack) -> None:
    salesforce = stack.sandbox(
        "salesforce",
        "--seed-people",
        "40",
        "--error-rate",
        "0.2",
        "--fault-seed",
        "11",
        "--session-ttl-s",
        "2",
        "--set",
        "lock_error_rate=0.1",
        "--set",
        "timeout_rate=0.05",
        "--set",
        "timeout_s=4",
    )
    who = contacts(salesforce)
    good = [task(n, who[n % len(who)]) for n in range(1000)]
    deleted = [
        task(n, who[0], op="DELETE") | {"occurred_at": T0 + timedelta(seconds=1)}
        for n in range(0, 1000, 50)
    ]
    invalid = [task(2000 + n, who[0], subject="Email: [[invalid]]") for n in range(3)] + [
        task(3000 + n, "003000000000009999") for n in range(2)
    ]
    ends: dict[tuple[str, int], int] = {}
    publish(
        stack,
        OUTBOUND_SALESFORCE_TASKS,
        "SalesforceTaskOut",
        [(t["external_id"], t) for t in good + deleted + invalid],
        ends,
    )
    stack.add_worker(
        "salesforce-sink",
        # 4 s held calls past a 3 s client timeout, as for Marketo above.
        {"ACTIONS_SYNC_SALESFORCE_URL": salesforce, **FAST, "ACTIONS_SYNC_API_TIMEOUT_S": "3"},
    )
    stack.wait_drained("salesforce-sink", OUTBOUND_SALESFORCE_TASKS, ends, timeout_s=240)

    codes = {e["code"] for e in http_client().get(f"{salesforce}/_sandbox/journal").json()}
    assert {"SERVER_UNAVAILABLE", "INVALID_SESSION_ID"} <= codes  # faults were met
    tasks = {t["ActionsSync_Id__c"]: t for t in salesforce_tasks(salesforce)}
    gone = {t["external_id"] for t in deleted}
    assert set(tasks) == {t["external_id"] for t in good} - gone
    assert all(
        tasks[t["external_id"]]["Subject"] == t["fields"]["Subject"]
        and tasks[t["external_id"]]["WhoId"] == t["fields"]["WhoId"]
        for t in good
        if t["external_id"] not in gone
    )
    reasons = sorted(
        h["error.message"].split()[1].rstrip(":")
        for h in dead_letters(stack, OUTBOUND_SALESFORCE_TASKS).values()
    )
    assert (
        reasons == ["FIELD_CUSTOM_VALIDATION_EXCEPTION"] * 3 + ["INVALID_CROSS_REFERENCE_KEY"] * 2
    )


def _latency(sandbox: str, ms: float) -> None:
    http_client().post(
        f"{sandbox}/_sandbox/faults", json={"latency_ms": ms}, timeout=10
    ).raise_for_status()


def _writes(sandbox: str, path: str) -> int:
    return sum(
        1
        for e in http_client().get(f"{sandbox}/_sandbox/journal", timeout=10).json()
        if e["path"].endswith(path) and e["code"] is None
    )


@dataclass
class _Victim:
    """A sink worker to kill -9 `cycles` times, each time once it is writing again."""

    worker: Worker
    sandbox: str
    path: str
    env: dict[str, str]
    cycles: int = 3
    seen: int = -1
    kill_at: float | None = None

    def step(self, stack: Stack) -> bool:
        """Advance; answer whether more kills are due. (Workers are spawned from the main
        thread: a child dies with the thread that started it.)"""
        if self.cycles == 0:
            return False
        writes = _writes(self.sandbox, self.path)
        if self.seen < 0:
            self.seen = writes
        elif self.kill_at is None and writes > self.seen:
            self.kill_at = time.monotonic() + random.uniform(0, 0.2)
        elif self.kill_at is not None and time.monotonic() >= self.kill_at:
            self.worker.proc.kill()
            self.worker.proc.wait()
            stack.workers.remove(self.worker)
            self.worker.log.rename(self.worker.log.with_suffix(f".killed-{self.cycles}.log"))
            self.worker = stack.add_worker(self.worker.name, self.env)
            self.cycles, self.seen, self.kill_at = self.cycles - 1, -1, None
        return True


def test_kill_9_mid_batch_neither_duplicates_nor_loses(stack: Stack) -> None:
    # Slow calls, one at a time: each sink streams for seconds, so kills land mid-batch.
    marketo = stack.sandbox("marketo", "--seed-people", "60", "--latency-ms", "150")
    salesforce = stack.sandbox("salesforce", "--seed-people", "40", "--latency-ms", "150")
    who = contacts(salesforce)
    activities = [activity(n, lead=n % 60 + 1) for n in range(6000)]
    tasks = [task(n, who[n % len(who)]) for n in range(4000)]
    ends: dict[tuple[str, int], int] = {}
    publish(
        stack,
        OUTBOUND_MARKETO_ACTIVITIES,
        "MarketoActivityOut",
        [(str(a["lead_id"]), a) for a in activities],
        ends,
    )
    publish(
        stack,
        OUTBOUND_SALESFORCE_TASKS,
        "SalesforceTaskOut",
        [(t["external_id"], t) for t in tasks],
        ends,
    )
    quick = dict(FAST)  # the default 6 s session: Apache Kafka refuses less by default
    to_marketo = {
        "ACTIONS_SYNC_MARKETO_URL": marketo,
        **quick,
        "ACTIONS_SYNC_MARKETO_SINK_BATCH_SIZE": "900",
        "ACTIONS_SYNC_MARKETO_MAX_IN_FLIGHT": "1",
    }
    to_salesforce = {
        "ACTIONS_SYNC_SALESFORCE_URL": salesforce,
        **quick,
        "ACTIONS_SYNC_SALESFORCE_SINK_BATCH_SIZE": "600",
        "ACTIONS_SYNC_SALESFORCE_MAX_IN_FLIGHT": "1",
    }
    victims = [
        _Victim(
            stack.add_worker("marketo-sink", to_marketo),
            marketo,
            "/activities/external.json",
            to_marketo,
        ),
        _Victim(
            stack.add_worker("salesforce-sink", to_salesforce),
            salesforce,
            "/Task/ActionsSync_Id__c",
            to_salesforce,
        ),
    ]
    deadline = time.monotonic() + 60
    while any([v.step(stack) for v in victims]) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert all(v.cycles == 0 for v in victims), "a sink stopped writing before its kills"
    stack.wait_drained("marketo-sink", OUTBOUND_MARKETO_ACTIVITIES, ends, timeout_s=90)
    stack.wait_drained("salesforce-sink", OUTBOUND_SALESFORCE_TASKS, ends, timeout_s=90)

    assert ledger_ids(marketo_activities(marketo)) == {a["activity_id"]: 1 for a in activities}
    held = [t["ActionsSync_Id__c"] for t in salesforce_tasks(salesforce)]
    assert sorted(held) == sorted(t["external_id"] for t in tasks)  # no duplicates, no loss
    assert not dead_letters(stack, OUTBOUND_MARKETO_ACTIVITIES)
    assert not dead_letters(stack, OUTBOUND_SALESFORCE_TASKS)


def test_a_second_copy_joining_mid_stream_shares_the_work_without_duplicates(stack: Stack) -> None:
    marketo = stack.sandbox("marketo", "--seed-people", "60", "--latency-ms", "100")
    activities = [activity(n, lead=n % 60 + 1) for n in range(6000)]
    ends: dict[tuple[str, int], int] = {}
    publish(
        stack,
        OUTBOUND_MARKETO_ACTIVITIES,
        "MarketoActivityOut",
        [(str(a["lead_id"]), a) for a in activities],
        ends,
    )
    env = {
        "ACTIONS_SYNC_MARKETO_URL": marketo,
        **FAST,
        "ACTIONS_SYNC_MARKETO_SINK_BATCH_SIZE": "600",
        "ACTIONS_SYNC_MARKETO_MAX_IN_FLIGHT": "1",
    }
    first = stack.add_worker("marketo-sink", env)
    deadline = time.monotonic() + 30
    while _writes(marketo, "/activities/external.json") < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    # The first copy must not drain the topic before the second one has started and joined
    # (seconds, up to a minute on a loaded machine): slow Marketo down to 4 s a call (the
    # ~8 calls left last over 30 s) until the second copy has handled records, then back
    # to 100 ms for the rest of the drain.
    _latency(marketo, 4000)
    second = stack.add_worker("marketo-sink", env)  # partitions move while batches are out
    deadline = time.monotonic() + 120
    while stack.handled_by(second) == 0:
        stack.check_workers()
        assert time.monotonic() < deadline, "the second copy never got partitions"
        time.sleep(0.05)
    _latency(marketo, 100)
    stack.wait_drained("marketo-sink", OUTBOUND_MARKETO_ACTIVITIES, ends, timeout_s=90)

    assert ledger_ids(marketo_activities(marketo)) == {a["activity_id"]: 1 for a in activities}
    assert stack.handled_by(first) > 0 and stack.handled_by(second) > 0
    assert not dead_letters(stack, OUTBOUND_MARKETO_ACTIVITIES)


@pytest.mark.parametrize("vendor", ["marketo", "salesforce"])
def test_only_the_records_that_refuse_a_whole_call_reach_the_dlq(stack: Stack, vendor: str) -> None:
    n, positions = 600, sorted(random.Random(5).sample(range(600), 5))
    url = stack.sandbox(vendor, "--seed-people", "60")
    if vendor == "marketo":
        topic, schema, worker, path = (
            OUTBOUND_MARKETO_ACTIVITIES,
            "MarketoActivityOut",
            "marketo-sink",
            "/activities/external.json",
        )
        records = [activity(i, lead=i % 60 + 1) for i in range(n)]
        for i in positions:
            records[i]["primary_attribute_value"] = f"Subject {i} [[refuse-call]]"
        items = [(str(r["lead_id"]), r) for r in records]
        key, per_call = "activity_id", 300
    else:
        topic, schema, worker, path = (
            OUTBOUND_SALESFORCE_TASKS,
            "SalesforceTaskOut",
            "salesforce-sink",
            "/composite/sobjects",
        )
        who = contacts(url)
        records = [task(i, who[i % len(who)]) for i in range(n)]
        for i in positions:
            records[i]["fields"]["Description"] = "notes [[refuse-call]]"
        items = [(r["external_id"], r) for r in records]
        key, per_call = "external_id", 200
    ends: dict[tuple[str, int], int] = {}
    publish(stack, topic, schema, items, ends)
    stack.add_worker(worker, {f"ACTIONS_SYNC_{vendor.upper()}_URL": url, **FAST})
    stack.wait_drained(worker, topic, ends, timeout_s=90)

    good = {records[i][key] for i in range(n) if i not in positions}
    if vendor == "marketo":
        assert ledger_ids(marketo_activities(url)) == dict.fromkeys(good, 1)
    else:
        written = [t["ActionsSync_Id__c"] for t in salesforce_tasks(url)]
        assert sorted(written) == sorted(good)
    letters = dead_letters(stack, topic)
    assert len(letters) == len(positions)  # the rest are all written: exactly the bad ones
    code = "1003" if vendor == "marketo" else "JSON_PARSER_ERROR"
    assert all(
        h["error.class"] == "Rejected" and code in h["error.message"] for h in letters.values()
    )
    calls = [
        e
        for e in http_client().get(f"{url}/_sandbox/journal").json()
        if path in e["path"] and e["method"] != "GET"
    ]
    # Each refused call costs ~2·log2(size) more per bad record in it.
    assert len(calls) <= 2 * -(-n // per_call) + 2 * len(positions) * 9


OUTAGE_ATTEMPTS = 3  # ACTIONS_SYNC_SINK_CALL_ATTEMPTS in the outage test


@pytest.mark.parametrize("vendor", ["marketo", "salesforce"])
def test_an_api_that_fails_every_call_costs_at_most_the_configured_calls_per_record(
    stack: Stack, vendor: str
) -> None:
    """One owner per retry: the runner alone retries a delivery (the sinks' clients make
    one attempt per call), so a record whose every call fails costs at most
    ACTIONS_SYNC_SINK_CALL_ATTEMPTS calls, counted in the sandbox's journal, and is then
    dead-lettered (before, the client's 8 attempts per call multiplied the runner's
    rounds, which had no end)."""
    url = stack.sandbox(vendor, "--seed-people", "5")
    if vendor == "marketo":
        topic, schema, worker = OUTBOUND_MARKETO_ACTIVITIES, "MarketoActivityOut", "marketo-sink"
        first, down = (activity(n, lead=1) for n in (0, 1))
        items = [[(str(first["lead_id"]), first)], [(str(down["lead_id"]), down)]]
        data = "/rest/"
    else:
        topic, schema, worker = OUTBOUND_SALESFORCE_TASKS, "SalesforceTaskOut", "salesforce-sink"
        who = contacts(url)[0]
        items = [[("activity:0", task(0, who))], [("activity:1", task(1, who))]]
        data = "/services/data/"
    stack.add_worker(
        worker,
        {
            f"ACTIONS_SYNC_{vendor.upper()}_URL": url,
            **FAST,
            "ACTIONS_SYNC_SINK_CALL_ATTEMPTS": str(OUTAGE_ATTEMPTS),
        },
    )
    ends: dict[tuple[str, int], int] = {}
    publish(stack, topic, schema, items[0], ends)  # the sink is up and has written once
    stack.wait_drained(worker, topic, ends, timeout_s=90)

    http_client().post(f"{url}/_sandbox/faults", json={"error_rate": 1.0}, timeout=10)
    http_client().post(f"{url}/_sandbox/reset", timeout=10)
    publish(stack, topic, schema, items[1], ends)
    deadline = time.monotonic() + 60
    while (done := stack.progress(worker, topic, ends))[0] < done[
        1
    ] and time.monotonic() < deadline:
        time.sleep(0.25)
    time.sleep(2)  # any call made after the record was given up would show now

    calls = [
        e
        for e in http_client().get(f"{url}/_sandbox/journal", timeout=10).json()
        if e["path"].startswith(data)
    ]
    assert all(e["status"] >= 500 or e["code"] for e in calls)  # every one of them failed
    assert 1 <= len(calls) <= OUTAGE_ATTEMPTS, f"{len(calls)} calls for one record"
    letters = list(dead_letters(stack, topic).values())
    assert [h["error.class"] for h in letters] == ["RetriesExhausted"]
    assert f"{OUTAGE_ATTEMPTS} failed calls" in letters[0]["error.message"]
