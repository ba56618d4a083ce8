"""A consumer group's progress read from the broker (actions_sync/progress.py) and the
`/healthz` it drives: a worker stuck retrying one batch shows in `actions_sync_broker_lag`,
`actions_sync_commit_stalled_seconds` and an unhealthy `/healthz` (issue 14, item 8)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from prometheus_client import REGISTRY

from actions_sync.kafka import Ends, ensure_topics, producer_config
from actions_sync.metrics import serve_metrics
from actions_sync.progress import ProgressMonitor
from actions_sync.settings import Settings
from actions_sync.store import Store
from actions_sync.topics import OUTBOUND_SALESFORCE_TASKS, PERSON_CHANGES, specs
from app.stack import Stack, Worker, http_client, scrape_sum
from tests.factories import person_change
from tests.integration.test_people_end_to_end import publish
from tests.support.checks import present
from tests.support.postgres import PostgresServer
from tests.support.stacks import stack_settings

PARTITIONS = 2


class ManualClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def monotonic(self) -> float:
        return self.t

    def now(self) -> datetime:
        raise NotImplementedError

    async def sleep(self, seconds: float) -> None:
        self.t += seconds


def produce(kafka: str, partition: int, n: int) -> None:
    producer = Producer(producer_config(kafka, **{"linger.ms": 0}))
    for i in range(n):
        producer.produce(PERSON_CHANGES, b"x", str(i).encode(), partition=partition)
        producer.flush(10)  # one record a batch: Tansu's end offsets count batches
    assert producer.flush(30) == 0


def commit(kafka: str, group: str, partition: int, offset: int) -> None:
    consumer = Consumer(
        {"bootstrap.servers": kafka, "group.id": group, "enable.auto.commit": False}
    )
    try:
        consumer.commit(
            offsets=[TopicPartition(PERSON_CHANGES, partition, offset)], asynchronous=False
        )
    finally:
        consumer.close()


def gauge(name: str, worker: str, partition: int) -> float | None:
    return REGISTRY.get_sample_value(
        name, {"worker": worker, "topic": PERSON_CHANGES, "partition": str(partition)}
    )


def test_lag_and_stall_come_from_the_group_committed_offsets(kafka: str) -> None:
    ensure_topics(kafka, specs((PERSON_CHANGES,), PARTITIONS))
    produce(kafka, 0, 5)
    produce(kafka, 1, 3)
    group, worker = f"t-{uuid.uuid4().hex[:8]}", f"w-{uuid.uuid4().hex[:6]}"
    commit(kafka, group, 0, 2)
    commit(kafka, group, 1, 3)  # caught up
    owned = {(PERSON_CHANGES, 0), (PERSON_CHANGES, 1)}
    clock = ManualClock()
    monitor = ProgressMonitor(
        kafka,
        group,
        worker,
        (PERSON_CHANGES,),
        interval_s=60,
        stall_s=30,
        owned=lambda: set(owned),
        clock=clock,
    )
    try:
        assert monitor.sample() == {(PERSON_CHANGES, 0): 3, (PERSON_CHANGES, 1): 0}
        assert gauge("actions_sync_broker_lag", worker, 0) == 3
        assert gauge("actions_sync_broker_lag", worker, 1) == 0
        assert monitor.health() is None

        clock.t += 45  # nothing committed for 45 s while 3 records wait on partition 0
        monitor.sample()
        assert gauge("actions_sync_commit_stalled_seconds", worker, 0) == 45
        assert gauge("actions_sync_commit_stalled_seconds", worker, 1) == 0  # caught up
        problem = monitor.health()
        assert problem is not None and f"{PERSON_CHANGES}[0] 45s" in problem
        assert f"{PERSON_CHANGES}[1]" not in problem

        owned.discard((PERSON_CHANGES, 0))  # another copy owns it: not this one's health
        assert monitor.health() is None
        owned.add((PERSON_CHANGES, 0))

        commit(kafka, group, 0, 4)  # progress: the stall starts over
        clock.t += 10
        assert monitor.sample()[(PERSON_CHANGES, 0)] == 1
        assert gauge("actions_sync_commit_stalled_seconds", worker, 0) == 0
        assert monitor.health() is None
    finally:
        monitor.close()


def test_a_group_that_committed_nothing_lags_from_the_earliest_record(kafka: str) -> None:
    ensure_topics(kafka, specs((PERSON_CHANGES,), PARTITIONS))
    produce(kafka, 1, 4)
    worker = f"w-{uuid.uuid4().hex[:6]}"
    monitor = ProgressMonitor(
        kafka, f"t-{uuid.uuid4().hex[:8]}", worker, (PERSON_CHANGES,), interval_s=60, stall_s=30
    )
    try:
        assert monitor.sample() == {(PERSON_CHANGES, 0): 0, (PERSON_CHANGES, 1): 4}
    finally:
        monitor.close()


def test_healthz_answers_what_the_health_function_says() -> None:
    problem: list[str] = []
    port = serve_metrics("127.0.0.1", 0, lambda: problem[0] if problem else None)
    base = f"http://127.0.0.1:{port}"
    ok = http_client().get(f"{base}/healthz", timeout=5)
    assert (ok.status_code, ok.text) == (200, "ok\n")
    problem.append("group g: committed offset not moving")
    bad = http_client().get(f"{base}/healthz", timeout=5)
    assert (bad.status_code, bad.text) == (503, "group g: committed offset not moving\n")
    assert "actions_sync_events_in_total" in http_client().get(f"{base}/metrics", timeout=5).text


# -- a real worker held in a retry loop --------------------------------------------------------


@pytest.fixture
def pg() -> Iterator[PostgresServer]:
    """A PostgreSQL of this test's own: it is stopped and started again."""
    with PostgresServer() as server:
        yield server


def wait_for(what: str, check: Callable[[], object], timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def healthz(worker: Worker) -> int:
    try:
        return (
            http_client()
            .get(worker.metrics_url.replace("/metrics", "/healthz"), timeout=5)
            .status_code
        )
    except httpx.TransportError:
        return 0


@pytest.mark.slow
def test_a_worker_stuck_on_a_store_outage_shows_lag_and_turns_unhealthy(
    kafka: str, registry: str, pg: PostgresServer
) -> None:
    """Caught up, then the store goes down: the people worker retries its batch without
    end, its own consumer lag stays 0, but the broker lag rises and /healthz answers 503
    (then 200 again once the store is back and the batch is committed)."""
    settings = Settings(
        kafka_bootstrap_servers=kafka,
        schema_registry_url=registry,
        database_url=pg.url,
        group_prefix=f"t-{uuid.uuid4().hex[:8]}",
    )
    ensure_topics(kafka, specs((PERSON_CHANGES,), settings.partitions))
    with Store(pg.url) as store:
        store.migrate()
    ends: Ends = {}
    publish(kafka, registry, [(str(i), person_change(i, 1)) for i in range(1, 51)], ends)
    with Stack(settings) as stack:
        worker = stack.add_worker(
            "people", {"ACTIONS_SYNC_LAG_INTERVAL_S": "1", "ACTIONS_SYNC_HEALTH_STALL_S": "5"}
        )
        stack.wait_drained("people", PERSON_CHANGES, ends, timeout_s=120)
        wait_for(
            "healthy and no broker lag",
            lambda: (
                healthz(worker) == 200
                and scrape_sum([worker.metrics_url], "actions_sync_broker_lag") == 0
            ),
        )

        pg.halt()
        try:
            publish(
                kafka,
                registry,
                [(str(i), person_change(i, 2, title="during the outage")) for i in range(1, 51)],
                ends,
            )
            wait_for(
                "broker lag",
                lambda: scrape_sum([worker.metrics_url], "actions_sync_broker_lag") > 0,
            )
            wait_for("/healthz 503", lambda: healthz(worker) == 503)
            assert scrape_sum([worker.metrics_url], "actions_sync_commit_stalled_seconds") > 5
            assert scrape_sum([worker.metrics_url], "actions_sync_consumer_lag") == 0
            stack.check_workers()  # retrying, not dead
        finally:
            pg.resume()
        stack.wait_drained("people", PERSON_CHANGES, ends, timeout_s=120)
        wait_for("healthy again", lambda: healthz(worker) == 200)
        wait_for(
            "no broker lag",
            lambda: scrape_sum([worker.metrics_url], "actions_sync_broker_lag") == 0,
        )
    with Store(pg.url) as store:
        assert all(present(store.person(i))["title"] == "during the outage" for i in range(1, 51))


@pytest.mark.slow
def test_a_sink_whose_api_answers_503_forever_shows_lag_and_turns_unhealthy(
    kafka: str, registry: str, tmp_path: Path
) -> None:
    """The Salesforce sink, caught up, then every data call answers 503
    SERVER_UNAVAILABLE: it retries the batch without end (a whole-call failure says
    nothing against the records); the broker lag rises and /healthz answers 503 until
    the API is back."""
    from tests.integration.test_sinks import contacts, task
    from tests.integration.test_sinks import publish as publish_out

    settings = stack_settings(kafka, registry, tmp_path, (OUTBOUND_SALESFORCE_TASKS,))
    with Stack(settings) as stack:
        salesforce = stack.sandbox("salesforce", "--seed-people", "5")
        who = contacts(salesforce)
        ends: dict[tuple[str, int], int] = {}

        def send(first: int) -> None:
            items = [task(n, who[n % len(who)]) for n in range(first, first + 20)]
            publish_out(
                stack,
                OUTBOUND_SALESFORCE_TASKS,
                "SalesforceTaskOut",
                [(t["external_id"], t) for t in items],
                ends,
            )

        send(0)
        sink = stack.add_worker(
            "salesforce-sink",
            {
                "ACTIONS_SYNC_SALESFORCE_URL": salesforce,
                "ACTIONS_SYNC_LAG_INTERVAL_S": "1",
                "ACTIONS_SYNC_HEALTH_STALL_S": "5",
            },
        )
        stack.wait_drained("salesforce-sink", OUTBOUND_SALESFORCE_TASKS, ends, timeout_s=120)
        wait_for("healthy", lambda: healthz(sink) == 200)

        faults = f"{salesforce}/_sandbox/faults"
        http_client().post(faults, json={"error_rate": 1.0}, timeout=10).raise_for_status()
        try:
            send(100)
            wait_for(
                "broker lag",
                lambda: scrape_sum([sink.metrics_url], "actions_sync_broker_lag") > 0,
            )
            wait_for("/healthz 503", lambda: healthz(sink) == 503)
            stack.check_workers()  # retrying, not dead
        finally:
            http_client().post(faults, json={"error_rate": 0.0}, timeout=10).raise_for_status()
        stack.wait_drained("salesforce-sink", OUTBOUND_SALESFORCE_TASKS, ends, timeout_s=120)
        wait_for("healthy again", lambda: healthz(sink) == 200)
