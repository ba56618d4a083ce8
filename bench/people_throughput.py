"""People agent throughput: person changes on a topic -> the Actions store (SQLite).

In one run, on one broker and one topic:
  1. publish N person changes (not timed);
  2. baseline: consume + decode the whole topic with confluent-kafka + fastavro (the
     project's Deserializer) — the raw rate a consumer can reach on this machine now;
  3. the store alone: the same changes through the rules and `Store.apply_people` in
     batches (no Kafka) — the rate the database allows;
  4. the people worker (a real `actions-sync worker people` process, 1 by default):
     drain time from its first handled record to the last committed offset.
Prints people/s for each and the ratios. Targets (issue 3, for later issues to reach):
agent >= 25,000 people/s on 2 cores and >= 35 % of the raw rate.

    .venv/bin/python bench/people_throughput.py [--people 200000] [--workers 1]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer

from actions_sync.kafka import consumer_config, ensure_topics
from actions_sync.publish import Publisher
from actions_sync.runtime.people_scenario import Scenario
from actions_sync.runtime.stack import Stack
from actions_sync.serialization import Deserializer, RegistryClient
from actions_sync.settings import Settings
from actions_sync.store import Store
from streams.rules import people as rules
from streams.topics import PERSON_CHANGES, specs


def raw_rate(bootstrap: str, registry: RegistryClient, total: int) -> float:
    """Consume and decode every record with confluent-kafka + fastavro; records/s."""
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


def store_rate(changes: list[dict], batch: int) -> float:
    """The rules + batched upserts into a fresh SQLite file, no Kafka; changes/s."""
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{tmp}/store.db")
        store.migrate()
        started = time.perf_counter()
        for i in range(0, len(changes), batch):
            plan = rules.plan(changes[i:i + batch])
            store.apply_people(plan.upserts, plan.removals)
        elapsed = time.perf_counter() - started
        store.close()
    return len(changes) / elapsed


def agent_rate(stack: Stack, ends: dict, workers: int, total: int) -> tuple[float, float]:
    """Run the people worker(s); (records/s from first handled to drained, wall seconds)."""
    started = time.perf_counter()
    for _ in range(workers):
        stack.add_worker("people")
    first = None
    while True:
        if first is None and stack.handled() > 0:
            first = time.perf_counter()
        done, end = stack.progress("people", PERSON_CHANGES, ends)
        if done >= end:
            break
        stack.check_workers()
        time.sleep(0.05)
    finished = time.perf_counter()
    assert first is not None
    return total / (finished - first), finished - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=200_000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--batch", type=int, default=5000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(database_url=f"sqlite:///{tmp}/store.db",
                            group_prefix=f"bench-{uuid.uuid4().hex[:6]}",
                            people_batch_size=args.batch)
        with Stack(settings) as stack:
            ensure_topics(stack.bootstrap, specs((PERSON_CHANGES,), settings.partitions))
            registry = RegistryClient(stack.registry_url)
            scenario = Scenario(people=args.people, edit_share=0, owner_removed_share=0,
                                owner_added_share=0, deleted_share=0, stale_share=0)
            changes = list(scenario.changes())
            publisher = Publisher(stack.bootstrap, registry)
            publisher.publish(PERSON_CHANGES, "PersonChange",
                              ((str(c["marketo_id"]), c) for c in changes))
            publisher.flush()
            total = len(changes)
            print(f"published {total:,} person changes on {settings.partitions} partitions")

            raw = raw_rate(stack.bootstrap, registry, total)
            print(f"raw consume+decode (confluent-kafka + fastavro): {raw:>10,.0f} records/s")
            alone = store_rate(changes, args.batch)
            print(f"store alone (rules + SQLite upserts, batch {args.batch}): "
                  f"{alone:>10,.0f} people/s")
            with Store(settings.database_url) as store:
                store.migrate()
            agent, wall = agent_rate(stack, publisher.ends, args.workers, total)
            print(f"people agent ({args.workers} worker): {agent:>10,.0f} people/s"
                  f"  (wall {wall:.1f}s incl. start-up and group join)")
            print(f"ratio agent/raw: {agent / raw:.1%}   agent/store-alone: {agent / alone:.1%}"
                  f"   agent/25k target: {agent / 25_000:.1%}")
            registry.close()
            print(f"logs: {Path(stack.logdir)}")


if __name__ == "__main__":
    main()
