"""`actions-sync demo`: the main job on the embedded stack, with live progress.

Starts Tansu, the registry sandbox and the people workers; publishes a generated
population with edits, owner changes, deletes, stale versions and a few bad records;
shows progress until the agents have drained the topic; then reconciles the store
against the rules' expected outcome and the dead-letter topic against the bad records.
Exit 0 only when both agree.
"""

from __future__ import annotations

import time
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

from actions_sync.kafka import Ends, dlq_topic, ensure_topics, read_topic
from actions_sync.publish import Publisher
from actions_sync.runtime.people_scenario import Report, Scenario, reconcile
from actions_sync.runtime.stack import Stack
from actions_sync.serialization import RegistryClient, frame
from actions_sync.settings import Settings
from actions_sync.store import Store
from actions_sync.topics import PERSON_CHANGES, specs

__all__ = ["DemoOptions", "bad_person_records", "run_demo"]


@dataclass(frozen=True)
class DemoOptions:
    people: int = 50_000
    workers: int = 1
    seed: int = 7
    timeout_s: float = 600.0


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
    return report.ok and dead == bad


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
    deadline = time.monotonic() + timeout_s
    with _progress(console) as progress:
        task = progress.add_task("people agent: changes committed", total=None)
        while True:
            done, total = stack.progress("people", PERSON_CHANGES, ends)
            progress.update(task, completed=done, total=total)
            if done >= total:
                return
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
    verdict = report.ok and dead == bad
    console.print("[bold green]CONSISTENT[/]" if verdict else "[bold red]INCONSISTENT[/]")
