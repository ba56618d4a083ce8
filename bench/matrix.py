"""The benchmark matrix (broker x store) at a size that fits in ~10 minutes: `make bench`.

For each of Tansu / Apache Kafka x SQLite / PostgreSQL (fast settings) it runs, as
separate processes (each starts its own broker and store):
  - `people_throughput.py --people N --workers 1,2 --rounds 1`: the people agent with one
    and two workers, the raw consume+decode rate and the store alone of the same run;
  - `incremental_latency.py --rate R --seconds S`: change -> store latency at a steady rate;
then prints one summary table, ratios first. Each run's own output goes to the log
directory printed at the start.

    .venv/bin/python bench/matrix.py [--people 50000] [--rate 1000] [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import BROKERS, STORES, load_average

BENCH = Path(__file__).resolve().parent


def run(name: str, argv: list[str], logdir: Path, broker: str, store: str) -> dict[str, Any] | None:
    """Run one benchmark on (broker, store); its --json figures, or None if it failed."""
    out, log = logdir / f"{name}-{broker}-{store}.json", logdir / f"{name}-{broker}-{store}.log"
    started = time.monotonic()
    with open(log, "wb") as sink:
        done = subprocess.run(
            [
                sys.executable,
                str(BENCH / f"{name}.py"),
                *argv,
                "--broker",
                broker,
                "--store",
                store,
                "--pg",
                "fast",
                "--json",
                str(out),
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
            check=False,
        )
    took = time.monotonic() - started
    print(
        f"  {name} on {broker} + {store}: {took:.0f}s"
        f"{'' if done.returncode == 0 else f', FAILED (exit {done.returncode}), see {log}'}",
        flush=True,
    )
    return json.loads(out.read_text()) if done.returncode == 0 and out.exists() else None


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--people", type=int, default=50_000)
    parser.add_argument("--rate", type=int, default=1000, help="incremental changes per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    logdir = Path(tempfile.mkdtemp(prefix="bench-matrix-"))
    print(
        f"bench matrix: {args.people:,} people, 1 and 2 workers; incremental {args.rate:,}"
        f" changes/s for {args.seconds:.0f}s; load average {load_average()}; logs {logdir}",
        flush=True,
    )
    rows = []
    for broker in BROKERS:
        for store in STORES:
            people = run(
                "people_throughput",
                ["--people", str(args.people), "--workers", "1,2", "--rounds", "1"],
                logdir,
                broker,
                store,
            )
            latency = run(
                "incremental_latency",
                ["--rate", str(args.rate), "--seconds", str(args.seconds)],
                logdir,
                broker,
                store,
            )
            rows.append((broker, store, people, latency))
    print(f"\nload average at the end {load_average()} (2 cores, shared: compare ratios)")
    print(
        "| broker | store | agent/raw (1 worker) | 2 workers / 1 | CPU per person 2/1 |"
        " agent/store alone | people/s 1 worker | raw consume+decode/s | store alone/s |"
        " change->store p50/p99 ms | change->topic p99 ms |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for broker, store, people, latency in rows:
        cells = ["failed"] * 7
        if people:
            med, fast = people["medians"], "fast" if store == "postgres" else "-"
            one, two = med[f"rate {fast} 1"], med[f"rate {fast} 2"]
            cpu1, cpu2 = med[f"cpu_total {fast} 1"], med[f"cpu_total {fast} 2"]
            alone = med[f"alone {fast}"]
            cells = [
                f"{one / med['raw']:.1%}",
                f"{two / one:.2f}x",
                f"{cpu2 / cpu1:.2f}x",
                f"{one / alone:.1%}",
                f"{one:,.0f}",
                f"{med['raw']:,.0f}",
                f"{alone:,.0f}",
            ]
        if latency:
            end, topic = (
                latency["latency_ms"][k]
                for k in ("change -> store (end to end)", "change -> topic (source)")
            )
            cells += [f"{end['p50']:.0f} / {end['p99']:.0f}", f"{topic['p99']:.0f}"]
        else:
            cells += ["failed", "failed"]
        print(f"| {broker} | {store} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
