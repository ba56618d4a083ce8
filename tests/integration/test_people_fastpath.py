"""The people agent's batch fast path under crashes and rebalances, on a real broker.

The invariant checked at the moment a worker is killed with SIGKILL (or stopped with
SIGTERM): every record below a committed offset has its effect in the store (offsets
are committed only after the store commit). Then the group drains the topic, and the
store equals the oracle. A worker that committed offsets before writing, that skipped
records around a rebalance, or that committed (or wrote) records of partitions already
handed to another worker, fails one of the two.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from actions_sync.kafka import Ends, ensure_topics, producer_config
from actions_sync.serialization import RegistryClient, Serializer
from actions_sync.settings import Settings
from actions_sync.store import Store
from actions_sync.topics import PERSON_CHANGES, specs
from app.people_scenario import Scenario, reconcile
from app.stack import Stack, Worker, http_client
from streams.rules.people import qualifies

pytestmark = pytest.mark.slow

Placed = list[tuple[dict[str, Any], int, int]]  # (change, partition, offset)


def publish(kafka: str, registry_url: str, changes: list[dict[str, Any]]) -> tuple[Placed, Ends]:
    """Publish, keyed by Marketo ID; return where each change landed."""
    placed: Placed = []
    ends: Ends = {}
    producer = Producer(producer_config(kafka))
    registry = RegistryClient(registry_url)
    try:
        serialize = Serializer(registry, PERSON_CHANGES, "PersonChange")
        for change in changes:

            def delivered(err: Any, msg: Any, change: dict[str, Any] = change) -> None:
                assert err is None, err
                placed.append((change, msg.partition(), msg.offset()))
                ends[(msg.topic(), msg.partition())] = max(
                    ends.get((msg.topic(), msg.partition()), 0), msg.offset() + 1
                )

            producer.produce(
                PERSON_CHANGES,
                serialize(change),
                str(change["marketo_id"]).encode(),
                on_delivery=delivered,
            )
            producer.poll(0)
        assert producer.flush(60) == 0
    finally:
        registry.close()
    return placed, ends


def committed(kafka: str, group: str, partitions: int) -> dict[int, int]:
    consumer = Consumer(
        {"bootstrap.servers": kafka, "group.id": group, "enable.auto.commit": False}
    )
    try:
        tps = consumer.committed(
            [TopicPartition(PERSON_CHANGES, p) for p in range(partitions)], timeout=10
        )
        return {tp.partition: max(tp.offset, 0) for tp in tps}
    finally:
        consumer.close()


def undurable_commits(placed: Placed, offsets: dict[int, int], store: Store) -> list[str]:
    """People whose newest committed change is not (or not yet) in the store."""
    newest: dict[int, dict[str, Any]] = {}
    for change, partition, offset in placed:
        if offset < offsets.get(partition, 0):
            seen = newest.get(change["marketo_id"])
            if seen is None or seen["changed_at"] < change["changed_at"]:
                newest[change["marketo_id"]] = change
    rows = {row["marketo_id"]: row for row in store.iter_persons()}
    problems = []
    for mid, change in newest.items():
        row = rows.get(mid)
        present = row is not None and row["removed_at"] is None
        if qualifies(change) and (row is None or row["changed_at"] < change["changed_at"]):
            stored = row and row["changed_at"]
            problems.append(f"{mid}: committed version {change['changed_at']}, stored {stored}")
        elif (
            not qualifies(change)
            and present
            and row is not None
            and row["changed_at"] <= change["changed_at"]
        ):
            problems.append(f"{mid}: committed removal {change['changed_at']} not applied")
    return problems


def wait_handled(stack: Stack, share: float, total: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while stack.handled() < share * total:
        stack.check_workers()
        assert time.monotonic() < deadline, f"handled {stack.handled()} of {total}"
        time.sleep(0.02)


def start(stack: Stack, settings: Settings) -> Worker:
    return stack.add_worker(
        "people", {"ACTIONS_SYNC_PEOPLE_BATCH_SIZE": str(settings.people_batch)}
    )


def kill(stack: Stack, worker: Worker) -> None:
    """SIGKILL: no shutdown, no last commit; the group notices at the session timeout."""
    worker.proc.kill()
    worker.proc.wait(10)
    stack.workers.remove(worker)


def scenario_stack(
    kafka: str,
    registry: str,
    database_url: str,
    people: int,
    batch: int = 300,
    publish_share: float = 1.0,
) -> tuple[Settings, Scenario, Placed, Ends]:
    """Settings, the scenario, and where its changes (the first `publish_share` of
    them) landed."""
    settings = Settings(
        kafka_bootstrap_servers=kafka,
        schema_registry_url=registry,
        database_url=database_url,
        group_prefix=f"t-{uuid.uuid4().hex[:8]}",
        people_batch_size=batch,
    )
    ensure_topics(kafka, specs((PERSON_CHANGES,), settings.partitions))
    scenario = Scenario(people=people, seed=23)
    changes = list(scenario.changes())
    placed, ends = publish(kafka, registry, changes[: round(len(changes) * publish_share)])
    with Store(database_url) as store:
        store.migrate()
    return settings, scenario, placed, ends


def check_killed(
    kafka: str, settings: Settings, placed: Placed, database_url: str, drained_ok: bool = False
) -> None:
    """Every committed change is in the store (`drained_ok`: what was published so far
    may all be committed, more is on its way)."""
    offsets = committed(kafka, f"{settings.group_prefix}-people", settings.partitions)
    assert sum(offsets.values()) > 0, f"not killed mid-drain: {offsets}"
    assert drained_ok or sum(offsets.values()) < len(placed), f"not killed mid-drain: {offsets}"
    with Store(database_url) as store:
        problems = undurable_commits(placed, offsets, store)
    assert not problems, f"{len(problems)} committed but not durable, e.g. {problems[:3]}"


def check_oracle(scenario: Scenario, database_url: str) -> None:
    with Store(database_url) as store:
        report = reconcile(store, scenario.expected)
    assert report.ok, report.mismatches
    assert report.expected_present == report.stored_present > 0


def test_a_worker_killed_mid_drain_never_committed_what_was_not_stored(
    kafka: str, registry: str, database_url: str
) -> None:
    settings, scenario, placed, ends = scenario_stack(kafka, registry, database_url, 25_000)
    with Stack(settings) as stack:
        first = start(stack, settings)
        wait_handled(stack, 0.3, len(placed))
        kill(stack, first)
        check_killed(kafka, settings, placed, database_url)
        start(stack, settings)
        stack.wait_drained("people", PERSON_CHANGES, ends, timeout_s=120)
    check_oracle(scenario, database_url)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_worker_stopped_mid_drain_finishes_its_batch_commits_and_exits_cleanly(
    kafka: str, registry: str, database_url: str
) -> None:
    settings, scenario, placed, ends = scenario_stack(kafka, registry, database_url, 25_000)
    with Stack(settings) as stack:
        first = start(stack, settings)
        wait_handled(stack, 0.3, len(placed))
        first.proc.terminate()  # SIGTERM: finish the batch in flight, commit, stop
        assert first.proc.wait(30) == 0
        stack.workers.remove(first)
        check_killed(kafka, settings, placed, database_url)
        start(stack, settings)
        stack.wait_drained("people", PERSON_CHANGES, ends, timeout_s=120)
    check_oracle(scenario, database_url)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_partitions_handed_over_mid_drain_are_neither_lost_nor_written_twice_out_of_order(
    kafka: str, registry: str, database_url: str
) -> None:
    # Changes keep arriving (~2k/s for ~24 s, small batches) until the second worker has taken
    # partitions over: the hand-over happens mid-drain however fast the first worker is.
    settings, scenario, placed, ends = scenario_stack(
        kafka, registry, database_url, 60_000, batch=50, publish_share=0.2
    )
    feeder = Feeder(kafka, registry, scenario, len(placed), placed, ends)
    with Stack(settings) as stack:
        first = start(stack, settings)
        wait_handled(stack, 0.05, len(placed))
        feeder.start()
        second = start(stack, settings)  # rebalance: first's partitions are revoked
        deadline = time.monotonic() + 60
        while stack.handled_by(second) == 0:
            stack.check_workers()
            assert feeder.is_alive(), "every change was handled before the hand-over"
            assert time.monotonic() < deadline, "the second worker never got partitions"
            time.sleep(0.05)
        # Each partition's lag is reported by its owner only: the first worker forgot
        # the lag of the partitions the rebalance took from it.
        assert lag_partitions(first) and lag_partitions(second)
        assert not lag_partitions(first) & lag_partitions(second)
        assert feeder.is_alive(), "every change was published before the kill"
        kill(stack, first)  # mid-drain (changes still arriving): the survivor takes over
        check_killed(kafka, settings, list(placed), database_url, drained_ok=True)
        feeder.join()
        stack.wait_drained("people", PERSON_CHANGES, ends, timeout_s=120)
        assert stack.handled_by(second) > 0
    check_oracle(scenario, database_url)


class Feeder(threading.Thread):
    """Publishes the scenario's changes after the first `done`, 1,000 every 0.5 s (for
    ~24 s: a second worker starting on a loaded machine takes seconds to join), adding to
    `placed` and `ends`."""

    def __init__(
        self, kafka: str, registry: str, scenario: Scenario, done: int, placed: Placed, ends: Ends
    ) -> None:
        super().__init__(daemon=True)
        self.args = (kafka, registry)
        self.rest = list(scenario.changes())[done:]
        self.placed, self.ends = placed, ends

    def run(self) -> None:
        for at in range(0, len(self.rest), 1000):
            more, ends = publish(*self.args, self.rest[at : at + 1000])
            self.placed += more
            for where, end in ends.items():
                self.ends[where] = max(self.ends.get(where, 0), end)
            time.sleep(0.5)


def lag_partitions(worker: Worker) -> set[str]:
    """The partitions whose consumer lag `worker`'s /metrics reports."""
    from prometheus_client.parser import text_string_to_metric_families

    text = http_client().get(worker.metrics_url, timeout=5).text
    return {
        sample.labels["partition"]
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "actions_sync_consumer_lag"
    }
