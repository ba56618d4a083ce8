"""`actions-sync demo`: the main job on the embedded stack, with live progress.

People: starts Tansu, the registry sandbox and the people workers; publishes a generated
population with edits, owner changes, deletes, stale versions and a few bad records;
shows progress until the agents have drained the topic; then reconciles the store
against the rules' expected outcome and the dead-letter topic against the bad records.

Activities: starts the Marketo and Salesforce sandboxes seeded with the same population,
the activity router and both sinks; publishes sales activities of every type for people
now in the store; shows progress until the sinks have committed everything; then
reconciles what the sandboxes hold against the rules (`activities_scenario`).

Exit 0 only when everything agrees.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from actions_sync.admin.live import load
from actions_sync.kafka import Ends, dlq_topic, ensure_topics, read_topic, written
from actions_sync.publish import Publisher
from actions_sync.serialization import RegistryClient, frame
from actions_sync.settings import Settings
from actions_sync.store import Store
from actions_sync.topics import (
    OUTBOUND_MARKETO_ACTIVITIES,
    OUTBOUND_SALESFORCE_TASKS,
    PERSON_CHANGES,
    SALES_ACTIVITIES,
    specs,
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
from app.people_scenario import Report, Scenario, reconcile
from app.stack import Stack

__all__ = ["DemoOptions", "bad_person_records", "run_demo", "written"]

ACTIVITY_TOPICS = (SALES_ACTIVITIES, OUTBOUND_MARKETO_ACTIVITIES, OUTBOUND_SALESFORCE_TASKS)
SINKS = (("marketo-sink", OUTBOUND_MARKETO_ACTIVITIES),
         ("salesforce-sink", OUTBOUND_SALESFORCE_TASKS))


@dataclass(frozen=True)
class DemoOptions:
    people: int = 50_000
    workers: int = 1
    seed: int = 7
    timeout_s: float = 600.0
    activities: int = 3000  # 0: the people flow only


def bad_person_records() -> list[tuple[bytes | None, bytes | None]]:
    """Records the people agent must dead-letter: garbage, unknown schema, empty value."""
    return [
        (b"1", b"not avro at all"),
        (b"2", frame(999_999, b"\x02\x04")),  # a schema id the registry never issued
        (b"3", None),  # a tombstone is not a PersonChange
        (b"4", frame(1, b"")),  # framing without a body
    ]


def run_demo(settings: Settings, options: DemoOptions, console: Console) -> bool:
    database_url = settings.database_url
    if "DATABASE_URL" not in settings.model_fields_set:
        run_dir = Path("var") / time.strftime("demo-%Y%m%d-%H%M%S")
        database_url = f"sqlite:///{run_dir}/actions-sync.db"
    settings = settings.model_copy(update={"database_url": database_url})
    scenario = Scenario(people=options.people, seed=options.seed)
    with Stack(settings) as stack:
        console.print(f"[bold]stack[/] kafka={stack.bootstrap} registry={stack.registry_url}"
                      f" store={database_url} logs={stack.logdir}")
        ensure_topics(stack.bootstrap, specs((PERSON_CHANGES,), settings.partitions))
        with Store(database_url) as store:
            store.migrate()  # once, before the workers race to do it
        for _ in range(options.workers):
            stack.add_worker("people")
        ends = _publish(stack, scenario, console)
        _follow(stack, ends, options.timeout_s, console)
        store = Store(database_url)
        try:
            report = reconcile(store, scenario.expected)
        finally:
            store.close()
        dead = len(read_topic(stack.bootstrap, dlq_topic(PERSON_CHANGES)))
        bad = len(bad_person_records())
        _print_report(console, scenario, report, dead, bad)
        ok = report.ok and dead == bad
        if options.activities:
            ok = _activity_phase(stack, scenario, options, console) and ok
    console.print("[bold green]CONSISTENT[/]" if ok else "[bold red]INCONSISTENT[/]")
    return ok


def _publish(stack: Stack, scenario: Scenario, console: Console) -> Ends:
    registry = RegistryClient(stack.registry_url)
    publisher = Publisher(stack.bootstrap, registry)
    with _progress(console) as progress:
        task = progress.add_task("publish person changes", total=None)
        count = publisher.publish(
            PERSON_CHANGES, "PersonChange",
            ((str(c["marketo_id"]), c) for c in scenario.changes()),
            progress=lambda n: progress.advance(task, n),
        )
        publisher.publish_raw(PERSON_CHANGES, bad_person_records())
        publisher.flush()
        progress.update(task, total=count, completed=count)
    registry.close()
    return publisher.ends


def _follow(stack: Stack, ends: Ends, timeout_s: float, console: Console) -> None:
    """Live progress of the agents (committed offsets) until the topic is drained."""
    with _progress(console) as progress:
        task = progress.add_task("people agent: changes committed", total=None)
        for _ in _ticks(stack, timeout_s, console):
            done, total = stack.progress("people", PERSON_CHANGES, ends)
            progress.update(task, completed=done, total=total)
            if done >= total:
                return


def _ticks(stack: Stack, timeout_s: float, console: Console) -> Iterator[None]:
    """Yield every 0.25 s until `timeout_s` passed (said in red); a worker that died
    raises."""
    deadline = time.monotonic() + timeout_s
    while True:
        yield
        stack.check_workers()
        if time.monotonic() > deadline:
            console.print(f"[red]timed out after {timeout_s:.0f}s[/]")
            return
        time.sleep(0.25)


class RateColumn(ProgressColumn):
    """Records per second over the task's recent progress."""

    def render(self, task: Task) -> Text:
        return Text(f"{task.speed:,.0f}/s" if task.speed else "", style="cyan")


def _progress(console: Console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    RateColumn(), TimeElapsedColumn(), console=console)


def _print_report(console: Console, scenario: Scenario, report: Report, dead: int,
                  bad: int) -> None:
    table = Table(title="reconciliation: store vs. the rules' expected outcome")
    table.add_column("check")
    table.add_column("expected", justify="right")
    table.add_column("actual", justify="right")
    table.add_row("people in Actions", str(report.expected_present), str(report.stored_present))
    table.add_row("dead-lettered records", str(bad), str(dead))
    table.add_row("mismatched people", "0", str(report.mismatch_count))
    console.print(table)
    console.print("changes published: " + ", ".join(f"{k}={v}" for k, v in scenario.counts.items()))
    for m in report.mismatches:
        console.print(f"  [red]{m.marketo_id}[/]: {m.problem}")


# -- the activity flow -------------------------------------------------------------------------

def _activity_phase(stack: Stack, people: Scenario, options: DemoOptions,
                    console: Console) -> bool:
    """Sales activities -> router -> sinks -> the sandboxes; True when they hold what the
    rules expect and nothing was dead-lettered."""
    present = people.expected.present()
    if not present:
        console.print("[yellow]no one is in Actions: no sales activities to publish[/]")
        return True
    _start_sandboxes(stack, options.people, options.seed)
    ensure_topics(stack.bootstrap, specs(ACTIVITY_TOPICS, stack.settings.partitions))
    for name in ("activities", *(sink for sink, _ in SINKS)):
        stack.add_worker(name)
    console.print(f"[bold]activities[/] marketo={stack.marketo_url}"
                  f" salesforce={stack.salesforce_url}")
    activities = ActivityScenario(options.activities, options.seed).generate(present)
    with Store(stack.settings.database_url) as store:
        expected = expect(activities, present, load(store.engine).settings)
    ends = _publish_activities(stack, activities, console)
    _follow_activities(stack, ends, expected, options.timeout_s, console)
    assert stack.marketo_url and stack.salesforce_url
    secret = stack.settings.marketo_client_secret.get_secret_value()
    report = reconcile_activities(
        expected, marketo_activities(stack.marketo_url, stack.settings.marketo_client_id, secret),
        salesforce_tasks(stack.salesforce_url))
    dead = sum(len(read_topic(stack.bootstrap, dlq_topic(t), idle_s=1.0))
               for t in ACTIVITY_TOPICS)
    _print_activity_report(console, activities, report, dead)
    return report.ok and dead == 0


def _start_sandboxes(stack: Stack, people: int, seed: int) -> None:
    """Marketo and Salesforce sandboxes holding the demo's population (its seed too, so
    that Marketo IDs and Salesforce ids match the people in the store)."""
    seeded = ("--seed-people", str(people), "--seed", str(seed))
    stack.marketo_url = stack.sandbox("marketo", *seeded)
    stack.salesforce_url = stack.sandbox("salesforce", *seeded)


def _publish_activities(stack: Stack, activities: list[dict[str, object]],
                        console: Console) -> Ends:
    registry = RegistryClient(stack.registry_url)
    publisher = Publisher(stack.bootstrap, registry)
    with _progress(console) as progress:
        task = progress.add_task("publish sales activities", total=len(activities))
        publisher.publish(SALES_ACTIVITIES, "SalesActivity",
                          ((str(a["marketo_id"]), a) for a in activities),
                          progress=lambda n: progress.advance(task, n))
        publisher.flush()
    registry.close()
    return publisher.ends


def _follow_activities(stack: Stack, ends: Ends, expected: dict[str, ExpectedActivity],
                       timeout_s: float, console: Console) -> None:
    """Live progress: the router's commits, then what the sandboxes hold, until both sinks
    have committed everything the router wrote."""
    assert stack.marketo_url and stack.salesforce_url
    outbound: Ends | None = None
    with _progress(console) as progress:
        router = progress.add_task("activity router: activities committed", total=None)
        marketo = progress.add_task("Marketo: custom activities held", total=len(expected))
        salesforce = progress.add_task("Salesforce: Tasks held", total=sum(
            e.task is not None for e in expected.values()))
        for _ in _ticks(stack, timeout_s, console):
            done, total = stack.progress("activities", SALES_ACTIVITIES, ends)
            if outbound is None and done >= total:
                outbound = written(stack.bootstrap, tuple(topic for _, topic in SINKS))
            finished = outbound is not None and all(_drained(stack, sink, topic, outbound)
                                                    for sink, topic in SINKS)
            held = sandbox_counts(stack.marketo_url, stack.salesforce_url)
            progress.update(router, completed=done, total=total)
            progress.update(marketo, completed=held[0])
            progress.update(salesforce, completed=held[1])
            if finished:
                return


def _drained(stack: Stack, worker: str, topic: str, ends: Ends) -> bool:
    done, total = stack.progress(worker, topic, ends)
    return done >= total


def _print_activity_report(console: Console, activities: list[dict[str, object]],
                           report: ActivityReport, dead: int) -> None:
    table = Table(title="reconciliation: Marketo and Salesforce vs. the rules' expected outcome")
    table.add_column("check")
    table.add_column("expected", justify="right")
    table.add_column("actual", justify="right")
    table.add_row("activities in Marketo", str(report.expected_marketo),
                  str(report.held_marketo))
    table.add_row("duplicate Marketo activities", "0", str(report.duplicates))
    table.add_row("Tasks in Salesforce", str(report.expected_tasks), str(report.held_tasks))
    table.add_row("dead-lettered activities", "0", str(dead))
    table.add_row("mismatched activities", "0", str(report.mismatch_count))
    console.print(table)
    kinds = Counter(str(a["type"]) for a in activities)
    console.print("activities published: " + ", ".join(f"{k}={v}" for k, v in kinds.items()))
    for problem in report.mismatches:
        console.print(f"  [red]{problem}[/]")
