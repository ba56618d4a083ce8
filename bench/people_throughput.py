"""People agent throughput: person changes on a topic -> the Actions store (SQLite).

In one run, on one broker and one topic:
  1. publish N person changes (not timed);
  2. baseline: consume + decode the whole topic with confluent-kafka + fastavro (the
     project's Deserializer) — the raw rate a consumer can reach on this machine now;
  3. the store alone: the same changes through the rules and `Store.apply_people` in
     batches (no Kafka) — the rate the database allows;
  4. the people worker (real `actions-sync worker people` processes, 1 by default, in a
     fresh consumer group and a fresh store each round): drain time from its first
     handled record to the last committed offset, and the CPU the worker processes
     (with their helper processes) and the broker used meanwhile.
Each measure is taken `--rounds` times, interleaved; the medians give the ratios.
Targets (issue 3): agent >= 25,000 people/s on 2 cores and >= 35 % of the raw rate.

    .venv/bin/python bench/people_throughput.py [--people 200000] [--workers 1] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
import uuid
from typing import Any

from _common import bench_stack, cpu_seconds, raw_rate

from actions_sync.kafka import Ends
from actions_sync.publish import Publisher
from actions_sync.serialization import RegistryClient
from actions_sync.settings import Settings
from actions_sync.store import Store
from actions_sync.topics import PERSON_CHANGES
from app.people_scenario import Scenario
from app.stack import Stack
from streams.rules import people as rules

TARGET = 25_000


def store_rate(changes: list[dict[str, Any]], batch: int) -> float:
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


def agent_rate(outer: Stack, ends: Ends, workers: int, total: int, batch: int, tmp: str
               ) -> tuple[float, float, float, float]:
    """One round: fresh group and store; (people/s, wall s, worker CPU %, broker CPU %)."""
    settings = Settings(kafka_bootstrap_servers=outer.bootstrap,
                        schema_registry_url=outer.registry_url,
                        database_url=f"sqlite:///{tmp}/store-{uuid.uuid4().hex[:6]}.db",
                        group_prefix=f"bench-{uuid.uuid4().hex[:6]}", people_batch_size=batch)
    with Store(settings.database_url) as store:
        store.migrate()
    broker = [int(pid) for pid in subprocess.run(  # the embedded Tansu, found by its port
        ["pgrep", "-f", f"listener-url tcp://{outer.bootstrap} "], capture_output=True,
        text=True).stdout.split()]
    started = time.perf_counter()
    with Stack(settings, logdir=outer.logdir) as stack:
        for _ in range(workers):
            stack.add_worker("people", {"ACTIONS_SYNC_PEOPLE_BATCH_SIZE": str(batch)})
        pids = [w.proc.pid for w in stack.workers]
        while stack.handled() == 0:
            stack.check_workers()
            time.sleep(0.01)
        first, cpu0, broker0 = time.perf_counter(), cpu_seconds(pids), cpu_seconds(broker)
        while (done := stack.progress("people", PERSON_CHANGES, ends))[0] < done[1]:
            stack.check_workers()
            time.sleep(0.05)
        finished = time.perf_counter()
        cpu, broker_cpu = cpu_seconds(pids) - cpu0, cpu_seconds(broker) - broker0
    span = finished - first
    return total / span, finished - started, cpu / span, broker_cpu / span


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--people", type=int, default=200_000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, bench_stack((PERSON_CHANGES,)) as stack:
        settings = stack.settings
        registry = RegistryClient(stack.registry_url)
        scenario = Scenario(people=args.people, edit_share=0, owner_removed_share=0,
                            owner_added_share=0, deleted_share=0, stale_share=0)
        changes = list(scenario.changes())
        publisher = Publisher(stack.bootstrap, registry)
        publisher.publish(PERSON_CHANGES, "PersonChange",
                          ((str(c["marketo_id"]), c) for c in changes))
        publisher.flush()
        total = len(changes)
        print(f"published {total:,} person changes on {settings.partitions} partitions;"
              f" {args.workers} worker(s), batch {args.batch}, {args.rounds} round(s)")
        raws, alones, agents = [], [], []
        for n in range(1, args.rounds + 1):
            raws.append(raw_rate(stack.bootstrap, registry, total))
            alones.append(store_rate(changes, args.batch))
            rate, wall, cpu, broker_cpu = agent_rate(stack, publisher.ends, args.workers,
                                                     total, args.batch, tmp)
            agents.append(rate)
            print(f"round {n}: raw {raws[-1]:>8,.0f}/s   store alone {alones[-1]:>8,.0f}/s"
                  f"   agent {rate:>8,.0f}/s (wall {wall:.1f}s incl. start-up and join;"
                  f" worker processes {cpu:.0%} CPU, broker {broker_cpu:.0%};"
                  f" load average {os.getloadavg()[0]:.2f})", flush=True)
        raw, alone, agent = (statistics.median(x) for x in (raws, alones, agents))
        print(f"median: raw consume+decode (confluent-kafka + fastavro) {raw:>8,.0f} records/s")
        print(f"median: store alone (rules + SQLite upserts)           {alone:>8,.0f} people/s")
        print(f"median: people agent ({args.workers} worker)                   "
              f"{agent:>8,.0f} people/s")
        print(f"ratio agent/raw: {agent / raw:.1%}   agent/store-alone: {agent / alone:.1%}"
              f"   agent/{TARGET // 1000}k target: {agent / TARGET:.1%}")
        registry.close()
        print(f"logs: {stack.logdir}")


if __name__ == "__main__":
    main()
