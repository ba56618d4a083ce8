"""People agent throughput: person changes on a topic -> the Actions store.

In one run, on one broker and one kind of store (`--broker tansu|apache`, `--store
sqlite|postgres`; on PostgreSQL each configuration of `--pg`, by default both the fast
test settings and a durable server, fsync and synchronous_commit on):
  1. publish N person changes (not timed);
  2. baseline: consume + decode the whole topic with confluent-kafka + fastavro (the
     project's Deserializer) — the raw rate a consumer can reach on this machine now;
  3. the store alone: the same changes through the rules and `Store.apply_people` in
     batches (no Kafka) — the rate the database allows; on PostgreSQL also the row-by-row
     statements (the write path before the staging table) for comparison;
  4. the people worker(s) (real `actions-sync worker people` processes, each count of
     `--workers` in turn, in a fresh consumer group and a fresh store each round): the
     group starts at the topic's end, the workers join it idle and the bench waits until
     the group is stable (every partition assigned, no rebalance in progress); then the
     N changes are published again (encoded once, sent as bytes) and drained. The rate
     from the first handled record to the last committed offset; the CPU-seconds per
     1,000 people of the workers (with their helper processes), of PostgreSQL
     (postmaster and backends) and of the broker (the produce included) from the
     publish to the end; each worker's peak resident memory. Joining first keeps the
     group's rebalances (staggered joins, each revoking every partition) out of the
     drain: with 4 workers on a loaded box they were most of it (bench/RESULTS.md).
Each measure is taken `--rounds` times, interleaved; the medians give the ratios.
Targets: issue 3, >= 25,000 people/s and >= 35 % of the raw rate with one worker (SQLite);
issue 15, on PostgreSQL >= 45,000 people/s with one worker and, with 2 and 4 workers, CPU
per person <= 1.1x that of one.

    .venv/bin/python bench/people_throughput.py [--people 200000] [--workers 1,2,4]
        [--rounds 3] [--broker tansu|apache] [--store sqlite|postgres] [--pg fast,durable]
"""

from __future__ import annotations

import argparse
import re
import statistics
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _common import (
    Backends,
    PeakRss,
    add_backend_options,
    bench_stack,
    cpu_seconds,
    durabilities,
    load_average,
    raw_rate,
    write_json,
)
from confluent_kafka import Consumer, TopicPartition

from actions_sync.kafka import Ends
from actions_sync.publish import Publisher
from actions_sync.serialization import RegistryClient
from actions_sync.settings import Settings
from actions_sync.store import Store, people_params
from actions_sync.topics import PERSON_CHANGES
from app.people_scenario import Scenario
from app.stack import Stack
from streams.rules import people as rules

TARGET = 25_000
PG_TARGET = 45_000


def store_rate(url: str, changes: list[dict[str, Any]], batch: int, rowwise: bool = False) -> float:
    """The rules + batched writes into the fresh store at `url`, no Kafka; changes/s.
    `rowwise`: PostgreSQL's statements before the staging table (one per row)."""
    store = Store(url)
    store.migrate()
    started = time.perf_counter()
    for i in range(0, len(changes), batch):
        plan = rules.plan(changes[i : i + batch])
        if not rowwise:
            store.apply_people(plan.upserts, plan.removals)
            continue
        params, synced = people_params(plan.upserts, plan.removals, False), datetime.now(UTC)
        with store.engine.begin() as conn:
            conn.exec_driver_sql(store._upsert_sql, [(*r, synced) for r in params.upserts])
            if params.removals:
                conn.exec_driver_sql(store._remove_sql, [(synced, *r) for r in params.removals])
    elapsed = time.perf_counter() - started
    store.close()
    return len(changes) / elapsed


def start_at_end(bootstrap: str, group: str, ends: Ends) -> None:
    """Commit `group`'s offsets at the end of what `ends` says the topic holds: its
    workers will join with nothing to read."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False}
    )
    try:
        offsets = [TopicPartition(t, p, end) for (t, p), end in ends.items() if t == PERSON_CHANGES]
        consumer.commit(offsets=offsets, asynchronous=False)
    finally:
        consumer.close()


ASSIGNED = re.compile(r"partitions assigned \(generation -?\d+\): (.*?) \[")


def held(log: Path) -> frozenset[int] | None:
    """The partitions of the people topic a worker holds after its last assignment (its
    log's last "partitions assigned" line, `streams.fastpath`), None before one."""
    lines = ASSIGNED.findall(log.read_text(errors="replace")) if log.exists() else []
    if not lines:
        return None
    topic = re.escape(PERSON_CHANGES)
    return frozenset(int(p) for p in re.findall(rf"{topic}\[(\d+)\]", lines[-1]))


def wait_stable(stack: Stack, timeout_s: float = 300) -> float:
    """Wait until the group of the stack's workers is stable: the last assignments of
    all of them split every partition between them (none held twice, none missing: in a
    rebalance the members' last assignments are of different generations), unchanged
    over two looks a second apart; the seconds it took. (From the workers' logs: Tansu
    answers DescribeGroups with an unknown state and no members.)"""
    started, last, seen = time.monotonic(), None, 0
    while seen < 2:
        stack.check_workers()
        if time.monotonic() - started > timeout_s:
            raise SystemExit(f"the people workers' group not stable in {timeout_s}s")
        time.sleep(1.0)
        now = [held(w.log) for w in stack.workers]
        split = all(h is not None for h in now) and sorted(
            p for h in now if h is not None for p in h
        ) == list(range(stack.settings.partitions))
        seen = seen + 1 if split and now == last else 0
        last = now
    return time.monotonic() - started


def agent_rate(
    outer: Stack,
    backends: Backends,
    durability: str,
    publisher: Publisher,
    encoded: list[tuple[bytes, bytes]],
    workers: int,
    batch: int,
) -> dict[str, float]:
    """One round: fresh group (at the topic's end) and store, the workers joined and the
    group stable, then the changes published and drained; people/s, wall s, CPU-seconds
    per 1,000 people of the workers (helpers included), the store server and the broker,
    peak RSS (MB) of the largest worker."""
    settings = Settings(
        kafka_bootstrap_servers=outer.bootstrap,
        schema_registry_url=outer.registry_url,
        database_url=backends.database_url(durability),
        group_prefix=f"bench-{uuid.uuid4().hex[:6]}",
        people_batch_size=batch,
    )
    with Store(settings.database_url) as store:
        store.migrate()
    group = f"{settings.group_prefix}-people"
    start_at_end(outer.bootstrap, group, publisher.ends)
    broker, server = backends.broker_pids(outer.bootstrap), backends.store_pids(durability)
    started = time.perf_counter()
    with Stack(settings, logdir=outer.logdir) as stack:
        for _ in range(workers):
            stack.add_worker("people", {"ACTIONS_SYNC_PEOPLE_BATCH_SIZE": str(batch)})
        pids = [w.proc.pid for w in stack.workers]
        memory = PeakRss({f"worker {n}": [pid] for n, pid in enumerate(pids)})
        joined = wait_stable(stack)
        cpu0 = [cpu_seconds(pids), cpu_seconds(server), cpu_seconds(broker)]
        publisher.publish_raw(PERSON_CHANGES, encoded)
        publisher.flush()
        ends = dict(publisher.ends)
        while stack.handled() == 0:
            stack.check_workers()
            time.sleep(0.01)
        first = time.perf_counter()
        while (done := stack.progress("people", PERSON_CHANGES, ends))[0] < done[1]:
            stack.check_workers()
            time.sleep(0.05)
        finished = time.perf_counter()
        cpu = [cpu_seconds(p) - c for p, c in zip((pids, server, broker), cpu0, strict=True)]
        memory.close()
    span, per_k = finished - first, 1000 / len(encoded)
    return {
        "rate": len(encoded) / span,
        "wall": finished - started,
        "join": joined,
        "cpu_workers": cpu[0] * per_k,
        "cpu_store": cpu[1] * per_k,
        "cpu_broker": cpu[2] * per_k,
        "cpu_total": sum(cpu) * per_k,
        "rss": max(memory.peak.values()),
        "pss": max(memory.peak_pss.values()),
    }


def main() -> None:  # noqa: C901 - the options, then one measurement after another
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--people", type=int, default=200_000)
    parser.add_argument("--workers", default="1", help="worker counts to measure: 1,2,4")
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    add_backend_options(parser)
    parser.set_defaults(pg="fast,durable")
    args = parser.parse_args()
    counts = [int(n) for n in args.workers.split(",")]
    pg = args.store == "postgres"

    with bench_stack(args, (PERSON_CHANGES,)) as stack:
        backends: Backends = stack.backends  # type: ignore[attr-defined]
        registry = RegistryClient(stack.registry_url)
        scenario = Scenario(
            people=args.people,
            edit_share=0,
            owner_removed_share=0,
            owner_added_share=0,
            deleted_share=0,
            stale_share=0,
        )
        changes = list(scenario.changes())
        publisher = Publisher(stack.bootstrap, registry)
        serialize = publisher.serializer(PERSON_CHANGES, "PersonChange")
        encoded = [(str(c["marketo_id"]).encode(), serialize(c)) for c in changes]
        publisher.publish_raw(PERSON_CHANGES, encoded)  # for the raw rate
        publisher.flush()
        total = len(changes)
        print(
            f"published {total:,} person changes on {stack.settings.partitions} partitions;"
            f" worker counts {counts}, batch {args.batch}, {args.rounds} round(s)"
        )
        found: dict[str, list[float]] = defaultdict(list)  # measure -> one figure a round
        for n in range(1, args.rounds + 1):
            found["raw"].append(raw_rate(stack.bootstrap, registry, total))
            line = [f"round {n}: raw {found['raw'][-1]:,.0f}/s"]
            for d in durabilities(args):
                found[f"alone {d}"].append(
                    store_rate(backends.database_url(d), changes, args.batch)
                )
                line.append(
                    f"store alone{f' ({d})' if pg else ''} {found[f'alone {d}'][-1]:,.0f}/s"
                )
                if pg:
                    found[f"rowwise {d}"].append(
                        store_rate(backends.database_url(d), changes, args.batch, rowwise=True)
                    )
                    line.append(f"row by row {found[f'rowwise {d}'][-1]:,.0f}/s")
            print("   ".join(line), flush=True)
            for workers in counts:  # the configurations interleaved: the load varies
                for d in durabilities(args):
                    got = agent_rate(stack, backends, d, publisher, encoded, workers, args.batch)
                    for key, value in got.items():
                        found[f"{key} {d} {workers}"].append(value)
                    print(
                        f"  {workers} worker(s){f', PostgreSQL {d}' if pg else ''}:"
                        f" {got['rate']:,.0f} people/s (wall {got['wall']:.1f}s incl."
                        f" start-up, {got['join']:.1f}s to a stable group); CPU-s per 1,000"
                        f" people: workers"
                        f" {got['cpu_workers']:.3f}, store {got['cpu_store']:.3f}, broker"
                        f" {got['cpu_broker']:.3f}; peak RSS {got['rss']:,.0f} MB"
                        f" (PSS {got['pss']:,.0f});"
                        f" load {load_average()}",
                        flush=True,
                    )
        del publisher  # its producer's threads would outlive the broker, reconnecting
        registry.close()
        med = {key: statistics.median(values) for key, values in found.items()}
        raw = med["raw"]
        print(
            f"\nmedians over {args.rounds} round(s) on {backends.label()};"
            f" raw consume+decode (confluent-kafka + fastavro) {raw:,.0f} records/s"
        )
        print(
            "| store | workers | people/s | x 1 worker | agent/raw | CPU-s/1k people: all"
            " (x 1 worker) | workers | store | broker | peak RSS (PSS)/worker MB |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|")
        for d in durabilities(args):
            one = (med[f"rate {d} {counts[0]}"], med[f"cpu_total {d} {counts[0]}"])
            for w in counts:
                rate, cpu = med[f"rate {d} {w}"], med[f"cpu_total {d} {w}"]
                print(
                    f"| {'SQLite' if not pg else f'PostgreSQL {d}'} | {w} | {rate:,.0f} |"
                    f" {rate / one[0]:.2f}x | {rate / raw:.1%} | {cpu:.3f}"
                    f" ({cpu / one[1]:.2f}x) | {med[f'cpu_workers {d} {w}']:.3f} |"
                    f" {med[f'cpu_store {d} {w}']:.3f} | {med[f'cpu_broker {d} {w}']:.3f} |"
                    f" {med[f'rss {d} {w}']:,.0f} ({med[f'pss {d} {w}']:,.0f}) |"
                )
        for d in durabilities(args):
            alone = med[f"alone {d}"]
            text = f"store alone{f' ({d})' if pg else ''}: {alone:,.0f} people/s"
            if pg:
                text += (
                    f" (row by row {med[f'rowwise {d}']:,.0f}/s:"
                    f" {alone / med[f'rowwise {d}']:.2f}x)"
                )
            first = med[f"rate {d} {counts[0]}"]
            target = PG_TARGET if pg else TARGET
            print(
                f"{text}; agent ({counts[0]} worker) / store alone {first / alone:.1%},"
                f" / {target // 1000}k target {first / target:.1%}"
            )
        write_json(args, {"people": total, "workers": counts, "medians": med})
        print(f"logs: {stack.logdir}")


if __name__ == "__main__":
    main()
