"""`actions-sync demo`: every flow on the embedded stack, with live progress, then ONE
reconciliation table with a row per SPEC behaviour (S1-S12): expected, found, verdict.

Flows, in this order (`--flows` picks a subset; the people flow always runs first: every
other flow is about people in the store):

- people (S1-S3, S5, S6): a generated population with edits, owner changes, deletes,
  stale versions and a few bad records, published on the person-change topic; then the
  initial sync from the Marketo sandbox (seeded with the same population) and live
  changes made there while `worker marketo-source` follows them (`marketo_people`); the
  store against the rules' outcome, the dead-letter topic against the bad records.
- activities (S4, S7, S8): sales activities of every type through the router and both
  sinks into the Marketo and Salesforce sandboxes (`activities_scenario`).
- settings (S12): an admin switches call logging off mid-run; calls published afterwards
  reach Marketo and not Salesforce (`settings_scenario`).
- unsubscribes (S9): both ways with Salesforce, re-subscribes not flowing
  (`unsubscribes_scenario`).
- send-checks (S10): the Marketo unsubscribe check (`send_check_scenario`).
- reminders (S11): reminder tasks both ways with Salesforce Tasks (`reminders_scenario`).

The run's store and logs live in one temporary directory, removed at the end unless
`--keep`. Exit 0 only when every row agrees.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from actions_sync.errors import ConfigError
from actions_sync.kafka import Ends, dlq_topic, ensure_topics, read_topic, written
from actions_sync.publish import Publisher
from actions_sync.serialization import RegistryClient, frame
from actions_sync.settings import Settings
from actions_sync.store import PERSON_FIELDS, Store
from actions_sync.topics import (
    OUTBOUND_MARKETO_ACTIVITIES,
    OUTBOUND_SALESFORCE_OPTOUTS,
    OUTBOUND_SALESFORCE_TASKS,
    PERSON_CHANGES,
    REMINDER_TASKS,
    SALES_ACTIVITIES,
    SALESFORCE_OPTOUTS,
    SALESFORCE_TASKS,
    SEND_CHECKS,
    SEND_DECISIONS,
    UNSUBSCRIBES,
    specs,
)
from app import (
    marketo_people,
    reminders_scenario,
    send_check_scenario,
    settings_scenario,
    unsubscribes_scenario,
)
from app.activities_scenario import (
    ActivityReport,
    ActivityScenario,
    ExpectedActivity,
    expect,
    marketo_activities,
    reconcile_activities,
    salesforce_tasks,
    sandbox_counts,
)
from app.demo_support import DemoRun, Row, progress_bars
from app.people_scenario import Scenario
from app.stack import Stack
from streams.rules.people import qualifies

__all__ = [
    "FLOWS",
    "SPECS",
    "DemoOptions",
    "bad_person_records",
    "parse_flows",
    "run_demo",
    "written",
]

ACTIVITY_TOPICS = (SALES_ACTIVITIES, OUTBOUND_MARKETO_ACTIVITIES, OUTBOUND_SALESFORCE_TASKS)
SINKS = (
    ("marketo-sink", OUTBOUND_MARKETO_ACTIVITIES),
    ("salesforce-sink", OUTBOUND_SALESFORCE_TASKS),
)
# Every other topic a flow uses, created before its workers start.
TOPICS = (
    *ACTIVITY_TOPICS,
    UNSUBSCRIBES,
    SALESFORCE_OPTOUTS,
    OUTBOUND_SALESFORCE_OPTOUTS,
    SEND_CHECKS,
    SEND_DECISIONS,
    REMINDER_TASKS,
    SALESFORCE_TASKS,
)
SPECS = {  # the SPEC's behaviours, the table's rows
    "S1": "people flow Marketo -> Actions",
    "S2": "only sales-owned people sync",
    "S3": "the 13 fields, fixed mapping",
    "S4": "cross-system IDs on Tasks",
    "S5": "duplicates copied, not merged",
    "S6": "incremental changes, newest version wins",
    "S7": "sales activities log to Marketo",
    "S8": "sales activities log to Salesforce",
    "S9": "unsubscribes both ways with Salesforce",
    "S10": "the Marketo unsubscribe check",
    "S11": "reminder tasks both ways",
    "S12": "admin settings apply live, audited",
}
FLOWS: dict[str, Callable[[DemoRun], list[Row]]] = {
    "people": lambda run: [],  # always runs first (`_people_phase`)
    "activities": lambda run: _activity_phase(run),
    "settings": settings_scenario.run,
    "unsubscribes": unsubscribes_scenario.run,
    "send-checks": send_check_scenario.run,
    "reminders": reminders_scenario.run,
}


@dataclass(frozen=True)
class DemoOptions:
    people: int = 50_000
    workers: int = 1
    seed: int = 7
    timeout_s: float = 600.0
    activities: int = 3000  # 0: no activity flow
    flows: tuple[str, ...] = tuple(FLOWS)
    keep: bool = False  # keep the run's directory (store, logs)


def parse_flows(text: str) -> tuple[str, ...]:
    """`people,activities` -> the flows in run order; a one-line error for unknown names."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in FLOWS]
    if unknown or not names:
        what = f"unknown flow {unknown[0]!r}" if unknown else "name at least one flow"
        raise ConfigError(f"--flows: {what}; choose from " + ", ".join(FLOWS))
    return tuple(n for n in FLOWS if n in names)


def bad_person_records() -> list[tuple[bytes | None, bytes | None]]:
    """Records the people agent must dead-letter: garbage, unknown schema, empty value."""
    return [
        (b"1", b"not avro at all"),
        (b"2", frame(999_999, b"\x02\x04")),  # a schema id the registry never issued
        (b"3", None),  # a tombstone is not a PersonChange
        (b"4", frame(1, b"")),  # framing without a body
    ]


def run_demo(settings: Settings, options: DemoOptions, console: Console) -> bool:
    run_dir = Path(tempfile.mkdtemp(prefix="actions-sync-demo-"))
    # The children's temporary files (the workers' faust data directories, ...) go into
    # the run's directory too: removed with it.
    (run_dir / "tmp").mkdir()
    tmpdir = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = str(run_dir / "tmp")
    try:
        if "DATABASE_URL" not in settings.model_fields_set:
            settings = settings.model_copy(
                update={"database_url": f"sqlite:///{run_dir}/actions-sync.db"}
            )
        console.print(
            f"[bold]logs[/] in {run_dir / 'logs'}"
            + ("" if options.keep else " (removed at the end; --keep keeps them)")
        )
        (run_dir / "logs").mkdir()
        ok = _run(settings, options, console, run_dir / "logs")
    finally:
        if tmpdir is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = tmpdir
        if options.keep:
            console.print(f"kept {run_dir} (store and logs)")
        else:
            shutil.rmtree(run_dir, ignore_errors=True)
    console.print("[bold green]CONSISTENT[/]" if ok else "[bold red]INCONSISTENT[/]")
    return ok


def _run(settings: Settings, options: DemoOptions, console: Console, logdir: Path) -> bool:
    scenario = Scenario(people=options.people, seed=options.seed)
    flows = [f for f in options.flows if f != "activities" or options.activities]
    with Stack(settings, logdir=logdir) as stack:
        console.print(
            f"[bold]stack[/] kafka={stack.bootstrap} registry={stack.registry_url}"
            f" store={settings.database_url}"
        )
        ensure_topics(stack.bootstrap, specs((PERSON_CHANGES,), settings.partitions))
        with Store(settings.database_url) as store:
            store.migrate()  # once, before the workers race to do it
        run = DemoRun(stack, console, options.timeout_s, options.seed, scenario)
        vendors = [f for f in flows if f != "people"]
        # The sandboxes hold the demo's population (its seed too: Marketo IDs and Salesforce
        # ids match the people in the store); seeding takes a while: meanwhile, people.
        with ThreadPoolExecutor(1) as pool:
            seeded = ("--seed-people", str(options.people), "--seed", str(options.seed))
            marketo = pool.submit(stack.sandbox, "marketo", *seeded)
            salesforce = pool.submit(stack.sandbox, "salesforce", *seeded) if vendors else None
            rows = _people_phase(run, options.workers, marketo)
            if salesforce is not None:
                stack.salesforce_url = salesforce.result()
        if vendors and run.present():
            ensure_topics(stack.bootstrap, specs(TOPICS, settings.partitions))
            console.print(
                f"[bold]vendors[/] marketo={stack.marketo_url} salesforce={stack.salesforce_url}"
            )
            _start_workers(run, vendors)
            run.activities = options.activities
            try:
                for flow in vendors:
                    console.rule(flow)
                    rows += FLOWS[flow](run)
            finally:
                run.http.close()
        elif vendors:
            run.problems.append("no one is in Actions: the other flows have no one to use")
    return _print_table(console, rows, run.problems)


def _start_workers(run: DemoRun, flows: list[str]) -> None:
    """Every worker the chosen flows need, at once: each takes seconds to start and join
    its group, which then overlaps the flows before its own."""
    if "unsubscribes" in flows:
        unsubscribes_scenario.prepare(run)
    needed = {
        "activities": ("activities", *(sink for sink, _ in SINKS)),
        "settings": ("activities", *(sink for sink, _ in SINKS)),
        "unsubscribes": unsubscribes_scenario.WORKERS,
        "send-checks": send_check_scenario.WORKERS,
        "reminders": reminders_scenario.WORKERS,
    }
    for name in dict.fromkeys(w for flow in flows for w in needed.get(flow, ())):
        run.worker(name)


def _print_table(console: Console, rows: list[Row], problems: list[str]) -> bool:
    table = Table(title="reconciliation: SPEC behaviours vs. the rules' expected outcome")
    for column in ("SPEC", "behaviour checked", "expected", "found", "verdict"):
        table.add_column(column, overflow="fold")
    for spec, behaviour in SPECS.items():
        rows_of = [r for r in rows if r.spec == spec]
        if not rows_of:
            table.add_row(spec, f"{behaviour}: flow not run", "-", "-", "[dim]skipped[/]")
        for row in rows_of:
            table.add_row(
                spec,
                row.behaviour,
                row.expected,
                row.found,
                "[green]agrees[/]" if row.ok else "[red]DIFFERS[/]",
            )
    console.print(table)
    for problem in problems[:40]:
        console.print(f"  [red]{problem}[/]")
    return all(r.ok for r in rows) and not problems


# -- the people flow ---------------------------------------------------------------------------


def _people_phase(run: DemoRun, workers: int, marketo: Future[str]) -> list[Row]:
    for _ in range(workers):
        run.stack.add_worker("people")
    ends = _publish(run.stack, run.people, run.console)
    run.follow(
        {
            "people agent: changes committed": lambda: run.stack.progress(
                "people", PERSON_CHANGES, ends
            )
        }
    )
    dead = len(read_topic(run.stack.bootstrap, dlq_topic(PERSON_CHANGES)))
    run.console.print(
        "changes published: " + ", ".join(f"{k}={v}" for k, v in run.people.counts.items())
    )
    run.stack.marketo_url = marketo.result()
    run.console.print(f"[bold]marketo[/] sandbox={run.stack.marketo_url}")
    rows = marketo_people.run(run)  # its versions are newer: the oracle takes them in
    with run.store() as store:
        return people_rows(store, run.people, dead, len(bad_person_records()), run.problems) + rows


def people_rows(
    store: Store, scenario: Scenario, dead: int, bad: int, problems: list[str]
) -> list[Row]:
    """S1, S2, S3, S5, S6 from the store against the newest change of each person, as the
    rules (`streams.rules.people.qualifies`) judge it."""
    newest = scenario.expected.newest
    want = {mid: c for mid, c in newest.items() if qualifies(c)}
    stored = {
        r["marketo_id"]: r
        for r in store.iter_persons()
        if r["marketo_id"] in newest and r["removed_at"] is None
    }
    equal = 0
    for mid, change in want.items():
        row = stored.get(mid)
        diff = [f for f in (*PERSON_FIELDS, "changed_at") if row and row[f] != change.get(f)]
        if row is not None and not diff:
            equal += 1
        elif len(problems) < 20:
            problems.append(
                f"person {mid}: "
                + (f"fields differ: {', '.join(diff)}" if row else "missing from the store")
            )
    left_out = [mid for mid in newest if mid not in want]

    def shared_emails(people: dict[int, dict[str, object]]) -> int:
        count = Counter(str(p.get("email")).lower() for p in people.values() if p.get("email"))
        return sum(1 for p in people.values() if count[str(p.get("email")).lower()] > 1)

    def stale(people: dict[int, dict[str, object]]) -> int:
        return sum(1 for p in people.values() if p.get("first_name") == "Stale")

    return [
        Row("S1", "people in Actions", str(len(want)), str(len(stored))),
        Row(
            "S2",
            "people without an owner or deleted: not in Actions",
            str(len(left_out)),
            str(sum(1 for mid in left_out if mid not in stored)),
        ),
        Row("S3", "people with all 13 fields as their newest change", str(len(want)), str(equal)),
        Row(
            "S5",
            "people sharing an email with another, each kept",
            str(shared_emails(want)),
            str(shared_emails(stored)),
        ),
        Row(
            "S6",
            f"stale versions ({scenario.counts.get('stale', 0)} published late) kept",
            str(stale(want)),
            str(stale(stored)),
        ),
        Row("S6", "malformed person changes dead-lettered", str(bad), str(dead)),
    ]


def _publish(stack: Stack, scenario: Scenario, console: Console) -> Ends:
    registry = RegistryClient(stack.registry_url)
    publisher = Publisher(stack.bootstrap, registry)
    with progress_bars(console) as progress:
        task = progress.add_task("publish person changes", total=None)
        count = publisher.publish(
            PERSON_CHANGES,
            "PersonChange",
            ((str(c["marketo_id"]), c) for c in scenario.changes()),
            progress=lambda n: progress.advance(task, n),
        )
        publisher.publish_raw(PERSON_CHANGES, bad_person_records())
        publisher.flush()
        progress.update(task, total=count, completed=count)
    registry.close()
    return publisher.ends


# -- the activity flow -------------------------------------------------------------------------


def _activity_phase(run: DemoRun) -> list[Row]:
    """Sales activities -> router -> sinks -> the sandboxes: S4, S7, S8."""
    activities = ActivityScenario(run.activities, run.seed).generate(run.present())
    report, dead = deliver_activities(run, activities, "sales activities")
    kinds = Counter(str(a["type"]) for a in activities)
    run.console.print("activities published: " + ", ".join(f"{k}={v}" for k, v in kinds.items()))
    run.problems.extend(report.mismatches)
    return [
        Row(
            "S4",
            "Tasks with the person's WhoId / WhatId",
            str(report.expected_tasks),
            str(report.held_tasks - report.wrong_ids),
        ),
        Row(
            "S7",
            "activities once in Marketo, as their custom type",
            str(report.expected_marketo),
            str(report.expected_marketo - report.wrong_marketo),
        ),
        Row(
            "S8",
            "Tasks in Salesforce (emails, replies, calls)",
            str(report.expected_tasks),
            str(report.held_tasks),
        ),
        Row("S8", "dead-lettered activities", "0", str(dead)),
    ]


def deliver_activities(
    run: DemoRun, activities: list[dict[str, object]], what: str
) -> tuple[ActivityReport, int]:
    """Publish `activities`, follow them to both sandboxes, reconcile against the rules
    with the settings in force now; (report, records dead-lettered on the way)."""
    stack = run.stack
    for name in ("activities", *(sink for sink, _ in SINKS)):
        run.worker(name)
    expected = expect(activities, run.present(), run.settings())
    before = {
        t: len(read_topic(stack.bootstrap, dlq_topic(t), idle_s=0.5)) for t in ACTIVITY_TOPICS
    }
    registry = RegistryClient(stack.registry_url)
    publisher = Publisher(stack.bootstrap, registry)
    with progress_bars(run.console) as progress:
        task = progress.add_task(f"publish {what}", total=len(activities))
        publisher.publish(
            SALES_ACTIVITIES,
            "SalesActivity",
            ((str(a["marketo_id"]), a) for a in activities),
            progress=lambda n: progress.advance(task, n),
        )
        publisher.flush()
    registry.close()
    _follow_activities(run, publisher.ends, expected)
    assert stack.marketo_url and stack.salesforce_url
    secret = stack.settings.marketo_client_secret.get_secret_value()
    report = reconcile_activities(
        expected,
        marketo_activities(stack.marketo_url, stack.settings.marketo_client_id, secret),
        salesforce_tasks(stack.salesforce_url),
    )
    dead = sum(
        len(read_topic(stack.bootstrap, dlq_topic(t), idle_s=1.0)) - before[t]
        for t in ACTIVITY_TOPICS
    )
    return report, dead


def _follow_activities(run: DemoRun, ends: Ends, expected: dict[str, ExpectedActivity]) -> None:
    """Live progress: the router's commits, then what the sandboxes hold, until both sinks
    have committed everything the router wrote."""
    stack = run.stack
    assert stack.marketo_url and stack.salesforce_url
    outbound: Ends | None = None
    start = sandbox_counts(stack.marketo_url, stack.salesforce_url, run.http)
    with progress_bars(run.console) as progress:
        router = progress.add_task("activity router: activities committed", total=None)
        marketo = progress.add_task("Marketo: custom activities held", total=len(expected))
        salesforce = progress.add_task(
            "Salesforce: Tasks held", total=sum(e.task is not None for e in expected.values())
        )
        for _ in run.ticks():
            done, total = stack.progress("activities", SALES_ACTIVITIES, ends)
            if outbound is None and done >= total:
                outbound = written(stack.bootstrap, tuple(topic for _, topic in SINKS))
            finished = outbound is not None and all(
                _drained(stack, sink, topic, outbound) for sink, topic in SINKS
            )
            held = sandbox_counts(stack.marketo_url, stack.salesforce_url, run.http)
            progress.update(router, completed=done, total=total)
            progress.update(marketo, completed=held[0] - start[0])
            progress.update(salesforce, completed=held[1] - start[1])
            if finished:
                return


def _drained(stack: Stack, worker: str, topic: str, ends: Ends) -> bool:
    done, total = stack.progress(worker, topic, ends)
    return done >= total
