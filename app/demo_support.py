"""What every flow of `actions-sync demo` shares: the run's context, live progress, the
admin's audited settings changes, and the rows of the one reconciliation table.

A flow is a function of a `DemoRun` returning its `Row`s: it starts the workers it needs
(`DemoRun.worker`), publishes or edits in the sandboxes, follows the outcome live
(`DemoRun.follow`) and compares it with what the rules in `streams/rules/` expect.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
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
from rich.text import Text

from actions_sync.admin.commands import change
from actions_sync.admin.live import load
from actions_sync.admin.model import AdminSettings
from actions_sync.publish import Publisher
from actions_sync.serialization import RegistryClient
from actions_sync.store import Store
from app.people_scenario import Scenario
from app.stack import Stack, Worker

__all__ = ["DEMO_ENV", "DemoRun", "Row", "progress_bars"]

# The demo's workers poll and retry faster than production's defaults: it runs minutes.
DEMO_ENV = {
    "ACTIONS_SYNC_SALESFORCE_POLL_INTERVAL_S": "0.5",
    "ACTIONS_SYNC_UNSUBSCRIBES_RETRY_S": "0.5",
    "ACTIONS_SYNC_REMINDERS_RETRY_S": "0.5",
    "ACTIONS_SYNC_SEND_CHECK_DEADLINE_S": "60",  # a loaded 2-core machine answers late
}


@dataclass(frozen=True)
class Row:
    """One SPEC behaviour in the reconciliation table: agrees when found == expected."""

    spec: str  # S1 .. S12
    behaviour: str
    expected: str
    found: str

    @property
    def ok(self) -> bool:
        return self.expected == self.found


class RateColumn(ProgressColumn):
    """Records per second over the task's recent progress."""

    def render(self, task: Task) -> Text:
        return Text(f"{task.speed:,.0f}/s" if task.speed else "", style="cyan")


def progress_bars(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        console=console,
    )


@dataclass
class DemoRun:
    """One demo run: the stack, the options' sizes, and what the people flow left."""

    stack: Stack
    console: Console
    timeout_s: float
    seed: int
    people: Scenario
    activities: int = 0  # sales activities of the activity flow
    problems: list[str] = field(default_factory=list)  # shown under the table
    # One client for every check: a connection per request costs ~150 ms on a busy machine
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=30))

    def present(self) -> dict[int, dict[str, Any]]:
        """People the rules keep in Actions (their newest change)."""
        return self.people.expected.present()

    def worker(self, name: str) -> Worker:
        """The running copy of worker `name`, started (with `DEMO_ENV`) if none runs."""
        running = next((w for w in self.stack.workers if w.name == name), None)
        return running or self.stack.add_worker(name, DEMO_ENV)

    def store(self) -> Store:
        return Store(self.stack.settings.database_url)

    def settings(self) -> AdminSettings:
        with self.store() as store:
            return load(store.engine).settings

    def admin_set(self, key: str, value: object) -> int:
        """Change an admin setting through the audited path of `settings set` (stored,
        audited, published on the broker); returns the new revision."""
        settings = self.stack.settings.model_copy(
            update={"kafka_bootstrap_servers": self.stack.bootstrap}
        )
        with self.store() as store:
            change(settings, store, key, value, "demo")
            return load(store.engine).revision

    def publish(
        self, topic: str, record: str, items: Iterable[tuple[str, Mapping[str, Any]]]
    ) -> int:
        registry = RegistryClient(self.stack.registry_url)
        try:
            publisher = Publisher(self.stack.bootstrap, registry)
            count = publisher.publish(topic, record, items)  # type: ignore[arg-type]
            publisher.flush()
        finally:
            registry.close()
        return count

    def ticks(self) -> Iterator[None]:
        """Yield every 0.25 s until the timeout (said in red); a worker that died raises."""
        deadline = time.monotonic() + self.timeout_s
        while True:
            yield
            self.stack.check_workers()
            if time.monotonic() > deadline:
                self.console.print(f"[red]timed out after {self.timeout_s:.0f}s[/]")
                return
            time.sleep(0.25)

    def follow(self, counters: Mapping[str, Callable[[], tuple[int, int]]]) -> bool:
        """Live progress of each counter (description -> (done, total)) until every one is
        done; False when the timeout came first."""
        with progress_bars(self.console) as progress:
            tasks = {name: progress.add_task(name, total=None) for name in counters}
            for _ in self.ticks():
                finished = True
                for name, counter in counters.items():
                    done, total = counter()
                    progress.update(tasks[name], completed=done, total=total)
                    finished = finished and done >= total
                if finished:
                    return True
        return False

    def wait_applied(self, worker: str, revision: int) -> bool:
        """Wait until worker `worker` applies settings revision `revision` (its metric
        actions_sync_admin_settings_revision): the demo's proof of a live change."""
        url = self.worker(worker).metrics_url
        return self.follow(
            {
                f"{worker}: applies settings revision {revision}": lambda: (
                    min(int(_metric(self.http, url, REVISION)), revision),
                    revision,
                )
            }
        )


REVISION = "actions_sync_admin_settings_revision"


def _metric(http: httpx.Client, url: str, name: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    try:
        text = http.get(url, timeout=2.0).text
    except httpx.TransportError:
        return -1.0
    return max(
        (
            s.value
            for f in text_string_to_metric_families(text)
            for s in f.samples
            if s.name == name
        ),
        default=-1.0,
    )
