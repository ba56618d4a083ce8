"""What the benchmarks share: a stack on a fresh store, the raw consume rate, CPU time,
a topic's arrival times, percentiles, a worker's metrics, the machine's load.

Each benchmark is a script run from the repository root (`.venv/bin/python bench/X.py`);
Python puts `bench/` on the path, so they import this module as `_common`.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import Consumer

from actions_sync.kafka import consumer_config, ensure_topics
from actions_sync.publish import Publisher
from actions_sync.serialization import Deserializer, RegistryClient
from actions_sync.settings import Settings
from actions_sync.store import Store
from actions_sync.topics import PERSON_CHANGES, specs
from app.stack import Stack

WARM_UP_ID = 9_000_000_000  # a person id no generated population uses


@contextmanager
def bench_stack(topics: tuple[str, ...], **settings: Any) -> Iterator[Stack]:
    """Broker, registry and a migrated SQLite store in a temp dir, `topics` created."""
    with tempfile.TemporaryDirectory() as tmp:
        config = Settings(database_url=f"sqlite:///{tmp}/store.db",
                          group_prefix=f"bench-{uuid.uuid4().hex[:6]}", **settings)
        with Stack(config, keep_logs=True) as stack:
            ensure_topics(stack.bootstrap, specs(topics, config.partitions))
            with Store(config.database_url) as store:
                store.migrate()
            yield stack


def warm_up_people(stack: Stack, timeout_s: float = 60) -> None:
    """Publish one person change and wait until the store holds it: from then on the
    people worker(s) have joined their group and write (the person stays in the store:
    count it)."""
    registry = RegistryClient(stack.registry_url)
    publisher = Publisher(stack.bootstrap, registry)
    change = {"event_id": str(uuid.uuid4()), "marketo_id": WARM_UP_ID,
              "changed_at": datetime.now(UTC), "deleted": False,
              "sfdc_lead_owner_id": "005000000000000001", "email": "warm-up@example.com"}
    publisher.publish(PERSON_CHANGES, "PersonChange", [(str(WARM_UP_ID), change)])
    publisher.flush()
    registry.close()
    deadline = time.monotonic() + timeout_s
    with Store(stack.settings.database_url) as store:
        while store.person(WARM_UP_ID) is None:
            stack.check_workers()
            if time.monotonic() > deadline:
                raise SystemExit(f"the warm-up change did not reach the store in {timeout_s}s")
            time.sleep(0.05)


def raw_rate(bootstrap: str, registry: RegistryClient, total: int) -> float:
    """Consume and decode `total` person changes with confluent-kafka + fastavro (the
    rate a plain consumer reaches on this machine now); records/s."""
    decode = Deserializer(registry, "PersonChange")
    consumer = Consumer(consumer_config(bootstrap, f"bench-raw-{uuid.uuid4().hex[:6]}",
                                        **{"fetch.max.bytes": 52_428_800}))
    consumer.subscribe([PERSON_CHANGES])
    seen, started = 0, None
    try:
        while seen < total:
            for msg in consumer.consume(10_000, timeout=1.0):
                if msg.error():
                    continue
                if started is None:
                    started = time.perf_counter()
                decode(msg.value())
                seen += 1
    finally:
        consumer.close()
    assert started is not None
    return seen / (time.perf_counter() - started)


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of these processes and all their descendants, each counted once
    (Linux /proc): a spawned worker is a guard, its worker and the worker's helper."""
    seen: set[int] = set()
    todo = list(pids)
    while todo:
        pid = todo.pop()
        if pid not in seen:
            seen.add(pid)
            todo += map(int, subprocess.run(["pgrep", "-P", str(pid)], capture_output=True,
                                            text=True).stdout.split())
    total = 0.0
    for one in seen:
        try:
            fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


class Arrivals:
    """Reads `topic` from its start in a thread: key -> wall-clock time (`time.time()`)
    the record was first consumed, and how many records were read (duplicates included)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.first: dict[str, float] = {}
        self.records = 0
        self._stop = threading.Event()
        self._consumer = Consumer(consumer_config(bootstrap, f"bench-{uuid.uuid4().hex[:6]}",
                                                  **{"fetch.wait.max.ms": 10}))
        self._consumer.subscribe([topic])
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                for msg in self._consumer.consume(1000, timeout=0.1):
                    if not msg.error():
                        self.records += 1
                        self.first.setdefault((msg.key() or b"").decode(), time.time())
        finally:
            self._consumer.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def pct(values: list[float], q: float) -> float:
    """The `q` quantile (0..1) of `values`, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def load_average() -> str:
    """The machine's 1/5/15-minute load averages: other sessions share its cores."""
    return " / ".join(f"{v:.2f}" for v in os.getloadavg())


def metric_sum(url: str, metric: str, **labels: str) -> float:
    """Sum of a worker's samples of `metric` (its /metrics) whose labels include `labels`."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(url, timeout=10).text
    return sum(s.value for family in text_string_to_metric_families(text)
               for s in family.samples
               if s.name == metric and labels.items() <= s.labels.items())
