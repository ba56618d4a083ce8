"""Reminder tasks both ways (SPEC S11): random edits on both sides at the sandbox's real
limits, with the Salesforce source, the reminder agent and the Task sink as worker
processes (as `actions-sync worker` runs them), the Salesforce sandbox as a process.

    .venv/bin/python bench/reminders.py [--tasks 1000] [--edits 10000] [--span-s 120]
                                        [--poll-s 5]

`--tasks` tasks are created in Actions and synced first; then `--edits` edits, half in
Actions (a `ReminderTask` of the stored task with one field changed) and half in
Salesforce (a person's PATCH in the org), spread over `--span-s`, each on a random task
and field, with synced values only (what does not sync never converges by design).
Printed: time from the last edit until both sides agree on every task; writes per edit
(Salesforce Task writes per Actions edit, store writes per Salesforce edit: <= 1 means no
ping-pong); the latency of each task's last edit to the other side (Actions ->
Salesforce: the Task's SystemModstamp; Salesforce -> Actions: the row's updated_at),
p50/p99; Salesforce API calls per task change (the sandbox's journal). The baseline,
measured in the same run, is the create phase: one Actions change per task, no conflicts.

    .venv/bin/python bench/reminders.py --stateful [--examples 10] [--steps 20]

runs the stateful property test (tests/integration/test_reminders_stateful.py: random
edits on both sides, simultaneous conflicting edits, kill -9 of the reminder worker and
the Salesforce source) at a large size, and prints per example and in total the edits on
each side, the sync's writes to the other side (<= 1 per edit: the strict bound the test
asserts), conflicts and kills, and the time per step.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import subprocess
import sys
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
from _common import add_backend_options, bench_stack

from actions_sync.admin.commands import set_value
from actions_sync.kafka import read_topic
from actions_sync.publish import Publisher
from actions_sync.serialization import RegistryClient
from actions_sync.store import Store
from actions_sync.store import reminder_tasks as table
from actions_sync.topics import OUTBOUND_SALESFORCE_TASKS, REMINDER_TASKS, SALESFORCE_TASKS
from app.stack import Stack
from sandboxes.population import generate
from streams.rules.people import person_row
from streams.rules.reminders import SF_FIELD, salesforce_value

FIELDS: dict[str, list[Any]] = {
    "status": ["OPEN", "COMPLETE"],
    "priority": ["NORMAL", "HIGH"],
    "details": [None, "a", "b", "c"],
    "due_date": [None, *(date(2027, 1, 1) + timedelta(days=d) for d in range(30))],
}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


class Bench:
    def __init__(self, stack: Stack, tasks: int) -> None:
        self.stack = stack
        self.registry = RegistryClient(stack.registry_url)
        self.publisher = Publisher(stack.bootstrap, self.registry)
        self.http = httpx.Client(
            base_url=f"{stack.salesforce_url}/_sandbox/salesforce/", timeout=60
        )
        self.store = Store(stack.settings.database_url)
        self.ids = [f"b-{n:05d}" for n in range(tasks)]
        self.sfdc: dict[str, str] = {}

    def close(self) -> None:
        self.publisher.flush()
        self.store.close()
        self.registry.close()
        self.http.close()

    def publish(self, tasks: list[dict[str, Any]]) -> None:
        self.publisher.publish(REMINDER_TASKS, "ReminderTask", [(t["task_id"], t) for t in tasks])
        self.publisher.flush()

    def salesforce_rows(self) -> dict[str, dict[str, Any]]:
        rows = self.http.get("records/Task").raise_for_status().json()
        return {r["ActionsSync_Id__c"]: r for r in rows if r.get("ActionsSync_Id__c")}

    def stored(self) -> dict[str, dict[str, Any]]:
        return table.load(self.store.engine, self.ids)

    def agree(self) -> bool:
        mine, theirs = self.stored(), self.salesforce_rows()
        for task_id in self.ids:
            row, sf = mine.get(task_id), theirs.get(task_id)
            if row is None or sf is None:
                return False
            for name, sf_name in SF_FIELD.items():
                if name == "subject":
                    continue
                value = sf.get(sf_name)
                value = value[:10] if name == "due_date" and value else value
                if value != salesforce_value(name, row[name]):
                    return False
        return True

    def wait_agree(self, timeout_s: float) -> float:
        started = time.monotonic()
        while not self.agree():
            self.stack.check_workers()
            if time.monotonic() - started > timeout_s:
                raise SystemExit(f"the two sides did not agree within {timeout_s:.0f} s")
            time.sleep(1.0)
        return time.monotonic() - started

    def calls(self) -> int:
        journal = httpx.get(f"{self.stack.salesforce_url}/_sandbox/journal", timeout=60).json()
        return sum(1 for e in journal if str(e["path"]).startswith("/services/data"))


def create(bench: Bench) -> tuple[float, int, int]:
    """All tasks from Actions: (seconds until both sides agree, API calls, writes)."""
    now = datetime.now(UTC)
    calls = bench.calls()
    started = time.monotonic()
    bench.publish(
        [
            {
                "task_id": t,
                "marketo_id": 1 + n % 3,
                "subject": f"Call {t}",
                "status": "OPEN",
                "priority": "NORMAL",
                "due_date": None,
                "details": None,
                "deleted": False,
                "changed_at": now,
            }
            for n, t in enumerate(bench.ids)
        ]
    )
    bench.wait_agree(600)
    bench.sfdc = {t: r["Id"] for t, r in bench.salesforce_rows().items()}
    return time.monotonic() - started, bench.calls() - calls, len(bench.ids)


def edit(bench: Bench, edits: int, span_s: float, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    last: dict[str, tuple[str, float]] = {}  # task -> (side, wall time of its last edit)
    counts = {"ACTIONS": 0, "SALESFORCE": 0}
    started = time.monotonic()
    for n in range(edits):
        task_id = rng.choice(bench.ids)
        name = rng.choice(list(FIELDS))
        side = "ACTIONS" if n % 2 == 0 else "SALESFORCE"
        row = table.load(bench.store.engine, [task_id])[task_id]
        value = rng.choice([v for v in FIELDS[name] if v != row[name]])
        if side == "ACTIONS":
            task = {
                k: row[k]
                for k in (
                    "task_id",
                    "marketo_id",
                    "subject",
                    "status",
                    "priority",
                    "due_date",
                    "details",
                    "deleted",
                )
            }
            bench.publish([task | {name: value, "changed_at": datetime.now(UTC)}])
        else:
            sf_value = salesforce_value(name, value)
            bench.http.patch(
                f"records/Task/{bench.sfdc[task_id]}", json={"fields": {SF_FIELD[name]: sf_value}}
            ).raise_for_status()
        counts[side] += 1
        last[task_id] = (side, time.time())
        ahead = started + span_s * (n + 1) / edits - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
    return {"counts": counts, "last": last, "edited_s": time.monotonic() - started}


def latencies(bench: Bench, last: dict[str, tuple[str, float]]) -> dict[str, list[float]]:
    mine, theirs = bench.stored(), bench.salesforce_rows()
    out: dict[str, list[float]] = {"ACTIONS": [], "SALESFORCE": []}
    for task_id, (side, at) in last.items():
        if side == "ACTIONS":
            landed = datetime.fromisoformat(
                str(theirs[task_id]["SystemModstamp"]).replace("+0000", "+00:00")
            )
        else:
            landed = mine[task_id]["updated_at"]
        out[side].append(max(0.0, landed.timestamp() - at))
    return out


def writes(bench: Bench) -> tuple[int, int]:
    """(distinct Task writes the sync published, store row writes)."""
    sent = {
        m.value() for m in read_topic(bench.stack.bootstrap, OUTBOUND_SALESFORCE_TASKS, idle_s=2.0)
    }
    revisions = sum(r["revision"] for r in bench.stored().values())
    return len(sent), revisions


def stateful(examples: int, steps: int) -> None:
    """The stateful property test at a large size, its per-example counts summed."""
    env = {
        **os.environ,
        "REMINDERS_STATEFUL_EXAMPLES": str(examples),
        "REMINDERS_STATEFUL_STEPS": str(steps),
    }
    started = time.monotonic()
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-s",
            "-p",
            "no:cacheprovider",
            "tests/integration/test_reminders_stateful.py",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    took = time.monotonic() - started
    rows = [
        {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line)}
        for line in run.stdout.splitlines()
        if line.startswith("stateful example:")
    ]
    total = {k: sum(r[k] for r in rows) for k in (rows[0] if rows else {})}
    print(
        f"stateful: {len(rows)} examples of up to {steps} steps, {took:.0f} s, pytest "
        f"{'passed' if run.returncode == 0 else f'FAILED ({run.returncode})'} "
        f"[{uuid.uuid4().hex[:6]}]"
    )
    if run.returncode != 0:
        print(run.stdout[-4000:], run.stderr[-2000:], sep="\n")
    if not total:
        return
    print("| figure | value |")
    print("|---|---|")
    print(
        f"| edits: Actions / Salesforce (simultaneous pairs) | {total['actions_edits']} / "
        f"{total['sf_edits']} ({total['conflicts']}) |"
    )
    print(f"| kill -9 of a worker | {total['kills']} |")
    for writes_, edits_, what in (
        ("salesforce_writes", "actions_edits", "Salesforce writes / Actions edits"),
        ("actions_writes", "sf_edits", "Actions writes / Salesforce edits"),
    ):
        print(
            f"| {what} | {total[writes_]} / {total[edits_]} = "
            f"{total[writes_] / max(total[edits_], 1):.3f} (bound <= 1) |"
        )
    print(
        f"| most writes per edit in one example (Salesforce, Actions) | "
        f"{max(r['salesforce_writes'] / max(r['actions_edits'], 1) for r in rows):.3f}, "
        f"{max(r['actions_writes'] / max(r['sf_edits'], 1) for r in rows):.3f} |"
    )
    print(f"| wall time per example | {took / len(rows):.1f} s |")


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--tasks", type=int, default=1000)
    cli.add_argument("--edits", type=int, default=10_000)
    cli.add_argument("--span-s", type=float, default=120.0)
    cli.add_argument("--poll-s", type=float, default=5.0)
    cli.add_argument("--seed", type=int, default=7)
    cli.add_argument(
        "--stateful",
        action="store_true",
        help="run the stateful property test at --examples x --steps instead",
    )
    cli.add_argument("--examples", type=int, default=10)
    cli.add_argument("--steps", type=int, default=20)
    add_backend_options(cli)
    args = cli.parse_args()
    if args.stateful:
        stateful(args.examples, args.steps)
        return
    topics = (REMINDER_TASKS, SALESFORCE_TASKS, OUTBOUND_SALESFORCE_TASKS)
    with bench_stack(args, topics) as stack:
        stack.salesforce_url = stack.sandbox("salesforce", "--seed-people", "10")
        with Store(stack.settings.database_url) as store:
            population = {p["marketo_id"]: p for p in generate(10, 7)}
            store.apply_people(
                [
                    person_row(
                        {
                            "event_id": str(uuid.uuid4()),
                            "marketo_id": m,
                            "deleted": False,
                            "changed_at": datetime.now(UTC),
                            "email": f"person{m}@example.com",
                            "sfdc_lead_id": population[m]["sfdc_lead_id"],
                            "sfdc_contact_id": population[m]["sfdc_contact_id"],
                        }
                    )
                    for m in (1, 2, 3)
                ],
                [],
            )
        set_value(stack.settings, "unsubscribe_sync", "false")
        set_value(stack.settings, "reminder_task_sync", "true")
        env = {"ACTIONS_SYNC_SALESFORCE_POLL_INTERVAL_S": str(args.poll_s)}
        for name in ("salesforce-source", "reminders", "salesforce-sink"):
            stack.add_worker(name, env)
        bench = Bench(stack, args.tasks)
        try:
            create_s, create_calls, created = create(bench)
            calls_before = bench.calls()
            sent_before, revisions_before = writes(bench)
            done = edit(bench, args.edits, args.span_s, args.seed)
            converge_s = bench.wait_agree(1800)
            lat = latencies(bench, done["last"])
            calls = bench.calls() - calls_before
            sent, revisions = writes(bench)
        finally:
            bench.close()
    a_edits, s_edits = done["counts"]["ACTIONS"], done["counts"]["SALESFORCE"]
    sf_writes = sent - sent_before
    store_writes = revisions - revisions_before
    print(
        f"{args.tasks:,} tasks, {args.edits:,} edits ({a_edits:,} Actions, {s_edits:,} "
        f"Salesforce) over {done['edited_s']:.0f} s, source poll {args.poll_s:.0f} s "
        f"[{uuid.uuid4().hex[:6]}]"
    )
    print("| phase | value |")
    print("|---|---|")
    print(f"| baseline: create {created:,} tasks, until both agree | {create_s:.1f} s |")
    print(f"| baseline: API calls per created task | {create_calls / created:.4f} |")
    print(f"| edits: converged after the last edit | {converge_s:.1f} s |")
    print(f"| Salesforce writes per Actions edit | {sf_writes / max(a_edits, 1):.3f} |")
    print(f"| store writes per edit (both sides) | {store_writes / max(args.edits, 1):.3f} |")
    print(
        f"| Actions -> Salesforce p50 / p99 (last edit of {len(lat['ACTIONS'])} tasks) | "
        f"{pct(lat['ACTIONS'], 0.5):.1f} / {pct(lat['ACTIONS'], 0.99):.1f} s |"
    )
    print(
        f"| Salesforce -> Actions p50 / p99 (last edit of {len(lat['SALESFORCE'])} tasks) | "
        f"{pct(lat['SALESFORCE'], 0.5):.1f} / {pct(lat['SALESFORCE'], 0.99):.1f} s |"
    )
    print(f"| API calls per task change (edits phase) | {calls / max(args.edits, 1):.4f} |")
    print(
        f"| ratio: API calls per change, edits / create baseline | "
        f"{(calls / max(args.edits, 1)) / max(create_calls / created, 1e-9):.2f}x |"
    )


if __name__ == "__main__":
    main()
