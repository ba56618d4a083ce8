"""Initial sync end to end: Marketo bulk extract -> marketo.person.changes -> people agent
-> Actions store, with real processes on one machine (`--broker tansu|apache`, `--store
sqlite|postgres`).

In one run:
  1. a Marketo sandbox process seeded with N people (not timed; ~60 % sales-owned);
  2. the people worker(s) started and warmed up (a first change written: group joined),
     as they run in production, before `actions-sync sync start` is launched; then the
     time from that launch until the store holds every person the source published (end
     to end), and until the source process exited (bulk extract -> topic alone), with the
     CPU each process used meanwhile;
  3. each people worker's peak resident memory (its helper included), sampled during the
     run and printed as the store passes 100k, 500k, 1M and 1.5M people (and at the end);
  4. raw consume + decode of the same topic right after (confluent-kafka + fastavro, the
     rate a consumer reaches on this machine now), to put the agent's rate in proportion.
The source paces itself at Marketo's published limit (100 calls / 20 s, 10 in flight).

    .venv/bin/python bench/initial_sync.py [--people 300000] [--workers 1]
    .venv/bin/python bench/initial_sync.py --people 1500000      # the product's cap
"""

from __future__ import annotations

import argparse
import subprocess
import time
from datetime import UTC, datetime, timedelta

import httpx
from _common import (
    Backends,
    PeakRss,
    add_backend_options,
    bench_stack,
    cpu_seconds,
    raw_rate,
    warm_up_people,
)

from actions_sync.serialization import RegistryClient
from actions_sync.store import Store
from actions_sync.topics import PERSON_CHANGES
from app.process import spawn
from app.stack import CLI, Stack
from sandboxes.population import EPOCH

ORIGINAL = 1000 / 90  # the original product: ~1,000 people per 1-2 minutes
TARGET_S = 60.0  # 1.5M people within a minute on 2 cores
MEMORY_AT = (100_000, 500_000, 1_000_000, 1_500_000)  # stored people: print the peak RSS


def seed(marketo: str, people: int) -> None:
    started = time.perf_counter()
    httpx.post(f"{marketo}/_sandbox/marketo/seed", json={"count": people}, timeout=600)
    print(f"seeded {people:,} people in {time.perf_counter() - started:.1f}s")


def published(store: Store) -> int:
    return int((store.checkpoint("marketo.initial_sync") or {}).get("published", 0))


POLL_S = 0.5  # a count(*) of a million rows costs PostgreSQL ~50 ms of the same 2 cores


def pids_of(pattern: str) -> list[int]:
    found = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True)
    return [int(pid) for pid in found.stdout.split()]


def run(stack: Stack, marketo: str, workers: int, batch: int | None) -> tuple[float, float, int]:
    """(source seconds, end-to-end seconds, people published)."""
    env = {"ACTIONS_SYNC_PEOPLE_BATCH_SIZE": str(batch)} if batch else None
    for _ in range(workers):
        stack.add_worker("people", env)
    warm_up_people(stack)
    backends: Backends = stack.backends  # type: ignore[attr-defined]
    meters = {
        "people worker(s) + helpers": [w.proc.pid for w in stack.workers],
        "Marketo sandbox": pids_of(f"sandbox marketo.*{marketo.rsplit(':', 1)[1]}"),
        "broker": backends.broker_pids(stack.bootstrap),
        "store server": backends.store_pids(),
    }
    memory = PeakRss({f"people worker {n}": [w.proc.pid] for n, w in enumerate(stack.workers)})
    env = {
        **stack.env,
        "ACTIONS_SYNC_MARKETO_URL": marketo,
        "ACTIONS_SYNC_MARKETO_SINCE": EPOCH.isoformat(),  # the population's whole year
        "ACTIONS_SYNC_MARKETO_UNTIL": (EPOCH + timedelta(days=366)).isoformat(),
        "ACTIONS_SYNC_MARKETO_CALLS_PER_WINDOW": "100",
        "ACTIONS_SYNC_MARKETO_MAX_IN_FLIGHT": "10",
    }
    started = time.perf_counter()
    before = {what: cpu_seconds(pids) for what, pids in meters.items()}
    sync = spawn([*CLI, "sync", "start"], log=stack.logdir / "sync-start.log", env=env)
    source_cpu, marks = 0.0, list(MEMORY_AT)

    def memory_marks(count: int) -> None:
        while marks and count >= marks[0]:
            print(f"peak RSS at {marks.pop(0):,} people stored: {memory.reading()}", flush=True)

    with Store(stack.settings.database_url) as store:  # one connection, polled
        while sync.poll() is None:
            source_cpu = cpu_seconds([sync.pid]) or source_cpu  # gone once it exited
            memory_marks(store.count_persons())
            time.sleep(POLL_S)
        assert sync.returncode == 0, f"sync start failed: see {stack.logdir / 'sync-start.log'}"
        source_s = time.perf_counter() - started
        total = published(store)
        while (count := store.count_persons()) < total + 1:  # + the warm-up person
            memory_marks(count)
            stack.check_workers()
            time.sleep(POLL_S)
    total_s = time.perf_counter() - started
    memory.close()
    print(f"peak RSS at {total:,} people stored (the end): {memory.reading()}")
    print(
        f"CPU during the run ({total_s:.1f}s), in cores: source process ~"
        f"{source_cpu / total_s:.2f} (sampled until it exited), "
        + ", ".join(
            f"{what} {(cpu_seconds(pids) - before[what]) / total_s:.2f}"
            for what, pids in meters.items()
        )
    )
    return source_s, total_s, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=300_000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--batch", type=int, help="the people workers' batch size (default: the setting's)"
    )
    add_backend_options(parser)
    args = parser.parse_args()
    with bench_stack(args, (PERSON_CHANGES,)) as stack:
        marketo = stack.sandbox("marketo")
        seed(marketo, args.people)
        print(f"started {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; logs in {stack.logdir}")
        source_s, total_s, people = run(stack, marketo, args.workers, args.batch)
        registry = RegistryClient(stack.registry_url)
        raw = raw_rate(stack.bootstrap, registry, people)
        registry.close()
    e2e, source = people / total_s, people / source_s
    print(f"people published (sales-owned of {args.people:,}): {people:,}")
    print(
        f"bulk extract -> topic (source alone): {source_s:6.1f}s  {source:>9,.0f} people/s"
        f"  ({args.people / source_s:,.0f} rows/s)"
    )
    print(f"bulk extract -> store (end to end):   {total_s:6.1f}s  {e2e:>9,.0f} people/s")
    print(f"raw consume+decode, same topic:               {raw:>9,.0f} records/s")
    print(f"end to end / raw consume+decode (the agent's share): {e2e / raw:.1%}")
    print(
        f"end to end / original product (1,000 people per 1-2 min): {e2e / ORIGINAL:,.0f}x"
        f" ({e2e / (1000 / 60):,.0f}x-{e2e / (1000 / 120):,.0f}x)"
    )
    scale = 1_500_000 / args.people
    print(
        f"a 1.5M-person instance at these rates: {total_s * scale:,.0f}s end to end, "
        f"{source_s * scale:,.0f}s for the source alone (target {TARGET_S:.0f}s)"
    )


if __name__ == "__main__":
    main()
