"""Incremental sync latency: a change made in Marketo -> the Actions store, at a steady rate.

In one run, on one machine:
  1. a Marketo sandbox process seeded with N people, an embedded broker, the registry and
     a people worker process (`ACTIONS_SYNC_FETCH_MAX_WAIT_MS`, `--fetch-wait-ms`);
  2. the incremental source (`connectors.marketo.incremental.LeadChanges`, the code of
     `actions-sync worker marketo-source`) in this process, polling every `--poll-s`;
  3. a steady stream of field edits through the sandbox's control route (`--rate` changes/s,
     each to a different sales-owned person, in batches every 25 ms) for `--warm-s`, not
     measured (a fresh broker's JVM compiles its produce and fetch paths during its first
     seconds under load: flushes of ~0.9 s that a running broker does not have), then for
     `--seconds`, measured.
Latency of a change = the store row's `synced_at` - the moment its edit was sent. Prints
p50/p95/p99/max and the rate reached, and the breakdown: change -> topic (the record's
CreateTime, set at the source's produce call), topic -> store, and the source's cycles
(poll Marketo, publish, flush until acknowledged, save the checkpoint), each timed.

Marketo's published pace (100 calls / 20 s) carries at most ~1,000 changes/s through this
path (each page of 300 activities costs leadchanges + deletedleads + leads = 3 calls), so
the sandbox's limits and the client's pace are lifted here (`--pace`, calls per 20 s).

    .venv/bin/python bench/incremental_latency.py [--rate 2000] [--seconds 20]
        [--broker tansu|apache] [--store sqlite|postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import threading
import time
from typing import Any

import httpx
from _common import add_backend_options, bench_stack, write_json

from actions_sync.kafka import read_topic
from actions_sync.publish import Publisher
from actions_sync.serialization import RegistryClient
from actions_sync.settings import Settings
from actions_sync.store import Store
from actions_sync.topics import PERSON_CHANGES
from app.stack import Stack
from connectors.marketo.client import MarketoClient, MarketoLimits
from connectors.marketo.context import SourceContext
from connectors.marketo.incremental import LeadChanges
from sandboxes.population import generate

BATCH_EVERY_S = 0.025


def follow(
    stack: Stack,
    marketo: str,
    pace: int,
    poll_s: float,
    ready: threading.Event,
    stop: threading.Event,
    steps: dict[str, list[float]],
    producer: dict[str, Any],
) -> None:
    """Run the incremental source until `stop` (in its own thread and event loop); the
    seconds of each of its cycles and of their steps go to `steps` (the breakdown)."""

    async def main() -> None:
        client = MarketoClient(
            marketo,
            "actions-sync",
            "sandbox-secret",
            MarketoLimits(calls_per_window=pace, max_in_flight=10),
        )
        registry = RegistryClient(stack.registry_url)
        with Store(stack.settings.database_url) as store:
            ctx = SourceContext(
                client, Publisher(stack.bootstrap, registry, **producer), store, "marketo-source"
            )
            source = LeadChanges(ctx, poll_s)
            timed(source, "cycle", steps, is_async=True)
            timed(ctx, "publish", steps)  # encode + produce calls
            timed(ctx.publisher, "flush", steps)  # until the broker acknowledged
            timed(store, "save_checkpoint", steps)
            task = asyncio.create_task(source.run())
            # the store is the source's own: its first checkpoint has no event to wait on
            while not ctx.store.checkpoint("marketo.lead_changes"):  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            ready.set()
            await asyncio.to_thread(stop.wait)
            ctx.stopping.set()
            await task
        await client.aclose()
        registry.close()

    asyncio.run(main())


def timed(owner: Any, name: str, steps: dict[str, list[float]], is_async: bool = False) -> None:
    """Wrap method `name` of `owner` (this instance only) to record each call's seconds."""
    method, spent = getattr(owner, name), steps.setdefault(name, [])
    if is_async:

        async def wrapper_async(*args: Any) -> Any:
            started = time.perf_counter()
            try:
                return await method(*args)
            finally:
                spent.append(time.perf_counter() - started)

        setattr(owner, name, wrapper_async)
        return

    def wrapper(*args: Any) -> Any:
        started = time.perf_counter()
        try:
            return method(*args)
        finally:
            spent.append(time.perf_counter() - started)

    setattr(owner, name, wrapper)


def edit(marketo: str, ids: list[int], rate: int, seconds: float) -> dict[int, float]:
    """Edit each id once, `rate` a second; {id: when its edit was sent (epoch s)}."""
    per_batch = max(1, round(rate * BATCH_EVERY_S))
    sent: dict[int, float] = {}
    with httpx.Client(base_url=f"{marketo}/_sandbox/marketo", timeout=30) as http:
        start = time.monotonic()
        for n, at in enumerate(range(0, min(len(ids), int(rate * seconds)), per_batch)):
            time.sleep(max(0.0, start + n * BATCH_EVERY_S - time.monotonic()))
            batch = ids[at : at + per_batch]
            now = time.time()
            http.post(
                "/leads",
                json={
                    "action": "updateOnly",
                    "lookupField": "id",
                    "input": [{"id": i, "title": f"edit {n}"} for i in batch],
                },
            )
            sent.update(dict.fromkeys(batch, now))
    print(f"sent {len(sent):,} edits in {time.monotonic() - start:.1f}s")
    return sent


def warm_up(marketo: str, settings: Settings, marketo_id: int, timeout_s: float = 60) -> None:
    """Edit one person and wait until the store has the edit: from then on the source,
    the broker and the people worker (group joined, partitions assigned) are all running."""
    with httpx.Client(base_url=f"{marketo}/_sandbox/marketo", timeout=30) as http:
        http.post(
            "/leads",
            json={
                "action": "updateOnly",
                "lookupField": "id",
                "input": [{"id": marketo_id, "title": "warm-up"}],
            },
        )
    deadline = time.monotonic() + timeout_s
    with Store(settings.database_url) as store:
        while store.people_by_id([marketo_id]).get(marketo_id, {}).get("title") != "warm-up":
            if time.monotonic() > deadline:
                raise SystemExit(f"the warm-up edit did not reach the store in {timeout_s}s")
            time.sleep(0.1)


def stored_at(
    settings: Settings, sent: dict[int, float], timeout_s: float = 60
) -> dict[int, float]:
    """When each edit reached the store (its row's `synced_at`)."""
    deadline = time.monotonic() + timeout_s
    with Store(settings.database_url) as store:
        while True:
            rows = store.people_by_id(list(sent))
            landed = [r for r in rows.values() if str(r["title"]).startswith("edit")]
            if len(landed) == len(sent) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    missing = len(sent) - len(landed)
    if missing:
        print(f"{missing:,} edits had not reached the store after {timeout_s:.0f}s")
    return {r["marketo_id"]: r["synced_at"].timestamp() for r in landed}


def produced_at(bootstrap: str, sent: dict[int, float]) -> dict[int, float]:
    """When the source produced each edit's change: the record's CreateTime (librdkafka
    sets it at the produce call)."""
    stamps: dict[int, float] = {}
    for msg in read_topic(bootstrap, PERSON_CHANGES, idle_s=1.0):
        mid = int(msg.key())
        if mid in sent:
            stamps[mid] = max(stamps.get(mid, 0.0), msg.timestamp()[1] / 1000)
    return stamps


def report(what: str, found: list[float]) -> dict[str, float]:
    """Print p50/p95/p99/max of `found` (seconds) in ms; return them."""
    found = sorted(found)
    if len(found) < 2:
        print(f"{what}: {len(found)} value(s)")
        return {}
    pct = statistics.quantiles(found, n=100, method="inclusive")
    figures = {
        "p50": pct[49] * 1000,
        "p95": pct[94] * 1000,
        "p99": pct[98] * 1000,
        "max": found[-1] * 1000,
        "count": len(found),
    }
    print(
        f"{what:<34} p50 {figures['p50']:6.0f} ms  p95 {figures['p95']:6.0f} ms"
        f"  p99 {figures['p99']:6.0f} ms  max {figures['max']:6.0f} ms  ({len(found):,})"
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=2000, help="changes per second")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument(
        "--warm-s", type=float, default=5.0, help="edits at the rate before the measured ones"
    )
    parser.add_argument("--poll-s", type=float, default=0.02)
    parser.add_argument("--pace", type=int, default=100_000, help="client calls per 20 s")
    parser.add_argument(
        "--fetch-wait-ms",
        type=int,
        default=Settings().fetch_max_wait_ms,
        help="the people agent's fetch wait (ACTIONS_SYNC_FETCH_MAX_WAIT_MS)",
    )
    parser.add_argument(
        "--producer",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a librdkafka setting of the source's producer over the"
        " project's (actions_sync.kafka.producer_config), to compare",
    )
    add_backend_options(parser)
    args = parser.parse_args()
    people = int(args.rate * (args.warm_s + args.seconds) / 0.55) + 1000  # ~60 % sales-owned
    owned = [
        p["marketo_id"]
        for p in generate(people, 7)
        if p["sfdc_lead_owner_id"] or p["sfdc_contact_owner_id"]
    ]
    with bench_stack(args, (PERSON_CHANGES,)) as stack:
        settings = stack.settings
        marketo = stack.sandbox(
            "marketo",
            "--seed-people",
            str(people),
            "--set",
            "rate_calls=1000000",
            "--set",
            "max_concurrent=100",
            "--set",
            "daily_quota=100000000",
        )
        stack.add_worker("people", {"ACTIONS_SYNC_FETCH_MAX_WAIT_MS": str(args.fetch_wait_ms)})
        ready, stop = threading.Event(), threading.Event()
        steps: dict[str, list[float]] = {}
        source = threading.Thread(
            target=follow,
            args=(
                stack,
                marketo,
                args.pace,
                args.poll_s,
                ready,
                stop,
                steps,
                dict(kv.split("=", 1) for kv in args.producer),
            ),
        )
        source.start()
        ready.wait(60)
        warm_up(marketo, settings, owned.pop())  # steady state: the worker has joined
        warm = int(args.rate * args.warm_s)
        edit(marketo, owned[:warm], args.rate, args.warm_s)  # and the broker's JVM is warm
        owned = owned[warm:]
        for spent in steps.values():
            spent.clear()  # the breakdown covers the edits only
        sent = edit(marketo, owned, args.rate, args.seconds)
        stored = stored_at(settings, sent)
        stop.set()
        source.join()
        produced = produced_at(stack.bootstrap, sent)
    reached = len(sent) / args.seconds
    print(
        f"rate {reached:,.0f} changes/s (asked {args.rate:,}) after {args.warm_s:.0f} s warm;"
        f" poll {args.poll_s}s, people "
        f"agent fetch wait {args.fetch_wait_ms} ms, pace {args.pace:,} calls/20 s;"
        f" source producer {' '.join(args.producer) or 'as configured'}"
    )
    figures = {
        "change -> topic (source)": report(
            "change -> topic (source)", [produced[m] - sent[m] for m in produced]
        ),
        "topic -> store (people agent)": report(
            "topic -> store (people agent)",
            [stored[m] - produced[m] for m in stored if m in produced],
        ),
        "change -> store (end to end)": report(
            "change -> store (end to end)", [stored[m] - sent[m] for m in stored]
        ),
    }
    print(
        f"the source's cycles ({len(steps['cycle']):,}: poll Marketo, publish, flush, save"
        " the checkpoint), each:"
    )
    for name, spent in steps.items():
        figures[f"source {name}"] = report(f"  {name}", spent)
    write_json(args, {"rate": reached, "latency_ms": figures})


if __name__ == "__main__":
    main()
