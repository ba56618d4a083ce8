"""The Salesforce source (SPEC S9, pull side): people opt out in Salesforce at a steady
rate; how long until each opt-out is on `salesforce.optouts`, and what it costs in API
calls, at the sandbox's real limits (2,000 rows a page, no faults). The source runs in
process (`OptOutSource` as the worker runs it), the sandbox too: edits are made as a
person, straight into the org.

    .venv/bin/python bench/salesforce_source.py [--opt-outs 20000] [--span-s 60] [--poll-s 30]

One run measures two configurations on fresh stacks: the cursor alone (lookback 0, the
baseline) and the product's default lookback of 10 minutes, which re-reads every row of
the window on each poll to catch late commits. Printed: edit -> topic latency p50/p99/max
(target for the whole S9 pull path: p99 <= poll interval + 10 s), data calls per opt-out,
records published (a version is published once: more means duplicates), and the ratios
default/baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from _common import Arrivals, add_backend_options, bench_stack, pct

from actions_sync.admin.model import AdminSettings
from actions_sync.publish import Publisher
from actions_sync.serialization import RegistryClient
from actions_sync.store import Store
from actions_sync.topics import SALESFORCE_OPTOUTS
from connectors.salesforce.budget import Budget
from connectors.salesforce.client import SalesforceClient
from connectors.salesforce.poller import Poller
from connectors.salesforce.source import OptOutSource
from sandboxes.base import JOURNAL_KEY, SandboxServer
from sandboxes.population import sfdc_id
from sandboxes.salesforce import STATE_KEY, SalesforceConfig, create_app, human_update


@dataclass
class Result:
    lookback_s: float
    latencies: list[float]
    data_calls: int
    published: int  # records, duplicates included

    def pct(self, q: float) -> float:
        return pct(self.latencies, q)


def run(
    args: argparse.Namespace, opt_outs: int, span_s: float, poll_s: float, lookback_s: float
) -> Result:
    app = create_app(SalesforceConfig(seed_people=opt_outs))
    state = app[STATE_KEY]
    ids = [sfdc_id("00Q", n) for n in range(1, opt_outs + 1)]
    edited: dict[str, float] = {}
    with SandboxServer(app) as server, bench_stack(args, (SALESFORCE_OPTOUTS,)) as stack:
        stop = threading.Event()
        reader = Arrivals(stack.bootstrap, SALESFORCE_OPTOUTS)
        arrived = reader.first
        source_done: list[OptOutSource] = []
        loop_thread = threading.Thread(
            target=lambda: source_done.append(
                asyncio.run(_follow(server.url, stack, poll_s, lookback_s, stop))
            )
        )
        loop_thread.start()
        time.sleep(poll_s + 2)  # the source has saved its first positions
        started = time.monotonic()
        for n, record_id in enumerate(ids):
            human_update(state, record_id, {"HasOptedOutOfEmail": True})
            edited[record_id] = time.time()
            ahead = started + span_s * (n + 1) / len(ids) - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
        deadline = time.monotonic() + 3 * poll_s + 60
        while len(arrived) < len(ids) and time.monotonic() < deadline:
            time.sleep(0.2)
        stop.set()
        loop_thread.join()
        reader.close()
        calls = sum(e.path.startswith("/services/data") for e in app[JOURNAL_KEY].entries())
    missing = [i for i in ids if i not in arrived]
    if missing:
        raise SystemExit(f"{len(missing)} opt-outs never reached the topic")
    return Result(
        lookback_s, [arrived[i] - edited[i] for i in ids], calls, source_done[0].published
    )


async def _follow(
    url: str, stack: Any, poll_s: float, lookback_s: float, stop: threading.Event
) -> OptOutSource:
    registry = RegistryClient(stack.registry_url)
    client = SalesforceClient(url, "actions-sync", "sandbox-secret", budget=Budget(1000, 900))
    with Store(stack.settings.database_url) as store:
        poller = Poller(
            client,
            store,
            Publisher(stack.bootstrap, registry),
            "salesforce-source",
            timedelta(seconds=lookback_s),
        )
        source = OptOutSource(poller, lambda: AdminSettings(unsubscribe_objects=("Lead",)), poll_s)

        async def watch() -> None:
            await asyncio.to_thread(stop.wait)
            source.stopping.set()

        watcher = asyncio.create_task(watch())
        try:
            await source.run()
        finally:
            watcher.cancel()
            await client.aclose()
            registry.close()
    return source


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--opt-outs", type=int, default=20_000)
    cli.add_argument("--span-s", type=float, default=60.0)
    cli.add_argument("--poll-s", type=float, default=30.0)
    add_backend_options(cli)
    args = cli.parse_args()
    results = [
        run(args, args.opt_outs, args.span_s, args.poll_s, lookback) for lookback in (0.0, 600.0)
    ]
    print(f"{args.opt_outs:,} opt-outs over {args.span_s:.0f} s, poll every {args.poll_s:.0f} s")
    print("| lookback | p50 s | p99 s | max s | data calls | calls per opt-out | published |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r.lookback_s:.0f} s | {r.pct(0.5):.1f} | {r.pct(0.99):.1f} | "
            f"{max(r.latencies):.1f} | {r.data_calls} | {r.data_calls / len(r.latencies):.4f} |"
            f" {r.published} |"
        )
    base, default = results
    print(
        f"default/baseline: p99 {default.pct(0.99) / base.pct(0.99):.2f}x, calls "
        f"{default.data_calls / base.data_calls:.2f}x, median latency "
        f"{statistics.median(default.latencies) - statistics.median(base.latencies):+.1f} s"
    )


if __name__ == "__main__":
    main()
