"""The embedded stack: broker, sandboxes and worker processes, for `up`, `demo` and tests.

Everything runs as child processes tied to this one (they die with it), on free loopback
ports. A Kafka or registry given in the settings is used instead of starting one.
"""

from __future__ import annotations

import atexit
import json
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from actions_sync.errors import Fatal
from actions_sync.kafka import Ends, GroupProgress
from actions_sync.settings import Settings
from app.broker import EmbeddedBroker
from app.process import spawn, stop_all
from sandboxes.base import free_port

__all__ = ["CLI", "Stack", "Worker", "http_client", "scrape_sum", "wait_http"]

CLI = [sys.executable, "-m", "app"]
HANDLED = "actions_sync_events_in_total"

_http: httpx.Client | None = None


def http_client() -> httpx.Client:
    """The process's one HTTP client for probes and scrapes of the stack's processes.
    `httpx.get` makes a client, and its TLS context, per call: ~35 ms of CPU, which a
    loop polling a worker's /metrics every 20 ms paid on every turn."""
    global _http
    if _http is None:
        _http = httpx.Client(timeout=10.0)
        atexit.register(_http.close)  # its kept-alive connections, closed before exit
    return _http


def wait_http(
    url: str, timeout_s: float = 30.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    """Wait until `url` answers HTTP (any status), or the process died."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise Fatal(f"{url}: process exited with {proc.returncode}")
        try:
            http_client().get(url, timeout=1.0)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise Fatal(f"{url} did not answer within {timeout_s:.0f}s")


@dataclass
class Worker:
    name: str
    metrics_url: str
    proc: subprocess.Popen[bytes]
    log: Path


@dataclass
class Stack:
    """Start with `start()`, read `endpoints`, add workers, `stop()` everything."""

    settings: Settings
    # Without a logdir given, the stack makes a temp dir and removes it when it stops
    # (kept with keep_logs, and when it stops on an error, whose message names it).
    logdir: Path = None  # type: ignore[assignment]  # set in __post_init__
    keep_logs: bool = False
    broker: EmbeddedBroker | None = None
    bootstrap: str = ""
    registry_url: str = ""
    marketo_url: str | None = None
    salesforce_url: str | None = None
    admin_url: str | None = None
    admin_token: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    workers: list[Worker] = field(default_factory=list)
    _sandboxes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _own_logdir: bool = False
    _progress: dict[str, GroupProgress] = field(default_factory=dict)  # by group

    def __post_init__(self) -> None:
        if self.logdir is None:
            self.logdir = Path(tempfile.mkdtemp(prefix="actions-sync-"))
            self._own_logdir = True

    def start(self) -> Stack:
        self.bootstrap = self.settings.kafka_bootstrap_servers or ""
        if not self.bootstrap:
            self.broker = EmbeddedBroker(log=self.logdir / "broker.log").start()
            self.bootstrap = self.broker.bootstrap
        self.registry_url = self.settings.schema_registry_url or self.sandbox("registry")
        return self

    def start_vendors(self, seed_people: int = 0) -> Stack:
        """The Marketo and Salesforce sandboxes, unless the settings name real instances."""
        seed = ("--seed-people", str(seed_people))
        self.marketo_url = self.settings.marketo_url or self.sandbox("marketo", *seed)
        self.salesforce_url = self.settings.salesforce_url or self.sandbox("salesforce", *seed)
        return self

    def sandbox(self, name: str, *args: str) -> str:
        """Start `actions-sync sandbox NAME` on a free port; return its base URL."""
        port = free_port()
        proc = spawn(
            [*CLI, "sandbox", name, "--port", str(port), *args],
            log=self.logdir / f"sandbox-{name}.log",
        )
        self._sandboxes.append(proc)
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/_sandbox/journal", timeout_s=120, proc=proc)  # slow on busy cores
        return url

    @property
    def env(self) -> dict[str, str]:
        """What a worker process needs to find the stack."""
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "SCHEMA_REGISTRY_URL": self.registry_url,
            "DATABASE_URL": self.settings.database_url,
            "ACTIONS_SYNC_PARTITIONS": str(self.settings.partitions),
            "ACTIONS_SYNC_GROUP_PREFIX": self.settings.group_prefix,
        }
        if self.marketo_url:
            env["ACTIONS_SYNC_MARKETO_URL"] = self.marketo_url
        if self.salesforce_url:
            env["ACTIONS_SYNC_SALESFORCE_URL"] = self.salesforce_url
        if self.settings.admin_token is None:  # the local stack's admin API gets a fresh one
            env["ACTIONS_SYNC_ADMIN_TOKEN"] = self.admin_token
        return env

    def add_worker(self, name: str, extra_env: dict[str, str] | None = None) -> Worker:
        if name == "admin-api":
            return self._add_admin_api(extra_env)
        port = free_port()
        index = sum(1 for w in self.workers if w.name == name)
        log = self.logdir / f"worker-{name}-{index}.log"
        proc = spawn(
            [*CLI, "worker", name],
            log=log,
            env={**self.env, "ACTIONS_SYNC_METRICS_PORT": str(port), **(extra_env or {})},
        )
        worker = Worker(name, f"http://127.0.0.1:{port}/metrics", proc, log)
        self.workers.append(worker)
        self._write_metrics_targets()
        return worker

    @property
    def metrics_targets(self) -> Path:
        """What the admin page samples for its charts: worker -> /metrics, kept current."""
        return self.settings.admin_metrics_file or self.logdir / "metrics-targets.json"

    def _write_metrics_targets(self) -> None:
        targets = self.endpoints()["metrics"]
        partial = self.metrics_targets.with_name(self.metrics_targets.name + ".partial")
        partial.write_text(json.dumps(targets, indent=2))
        partial.replace(self.metrics_targets)  # whole or not at all: the sampler re-reads it

    def _add_admin_api(self, extra_env: dict[str, str] | None) -> Worker:
        port = free_port()
        log = self.logdir / "admin-api.log"
        proc = spawn(
            [*CLI, "worker", "admin-api"],
            log=log,
            env={
                **self.env,
                "ACTIONS_SYNC_ADMIN_PORT": str(port),
                "ACTIONS_SYNC_ADMIN_METRICS_FILE": str(self.metrics_targets),
                **(extra_env or {}),
            },
        )
        self.admin_url = f"http://127.0.0.1:{port}"
        wait_http(f"{self.admin_url}/health", timeout_s=60, proc=proc)  # loaded machines
        worker = Worker("admin-api", "", proc, log)  # no /metrics of its own
        self.workers.append(worker)
        return worker

    def handled(self) -> float:
        """Records the workers have handled so far, redeliveries included (/metrics)."""
        return scrape_sum([w.metrics_url for w in self.workers if w.metrics_url], HANDLED)

    @staticmethod
    def handled_by(worker: Worker) -> float:
        return scrape_sum([worker.metrics_url], HANDLED)

    def progress(self, worker: str, topic: str, ends: Ends) -> tuple[int, int]:
        """(records committed by worker group `worker`, records written up to `ends`)."""
        group = f"{self.settings.group_prefix}-{worker}"
        if group not in self._progress:
            self._progress[group] = GroupProgress(self.bootstrap, group)
        return self._progress[group].progress(topic, ends)

    def check_workers(self) -> None:
        """Raise if a worker process has exited."""
        for worker in self.workers:
            if worker.proc.poll() is not None:
                raise Fatal(
                    f"worker {worker.name} exited with {worker.proc.returncode}; see {worker.log}"
                    + self.log_tails(worker.name)
                )

    def wait_drained(self, worker: str, topic: str, ends: Ends, timeout_s: float) -> None:
        """Block until worker group `worker` has committed every record up to `ends`."""
        deadline = time.monotonic() + timeout_s
        while (done := self.progress(worker, topic, ends))[0] < done[1]:
            self.check_workers()
            if time.monotonic() > deadline:
                raise Fatal(
                    f"{worker} committed {done[0]} of {done[1]} records of {topic}"
                    f" in {timeout_s:.0f}s; logs in {self.logdir}{self.log_tails(worker)}"
                )
            time.sleep(0.25)

    def log_tails(self, worker: str, lines: int = 20) -> str:
        """The last lines of each log of worker group `worker`: a CI machine's temp dir is
        gone by the time anyone reads the failure, so the failure carries them."""
        tails = []
        for log in sorted(self.logdir.glob(f"worker-{worker}*.log")):
            text = log.read_text(errors="replace").splitlines()[-lines:]
            tails.append(f"\n--- {log.name} (last {len(text)} lines)\n" + "\n".join(text))
        return "".join(tails)

    def endpoints(self) -> dict[str, object]:
        return {
            "kafka": self.bootstrap,
            "schema_registry": self.registry_url,
            "marketo": self.marketo_url,
            "salesforce": self.salesforce_url,
            "admin": self.admin_url,
            "admin_token": (
                None
                if self.settings.admin_token is not None or not self.admin_url
                else self.admin_token
            ),
            # worker (its log file's name: people-0, people-1, ...) -> its /metrics
            "metrics": {
                w.log.stem.removeprefix("worker-"): w.metrics_url
                for w in self.workers
                if w.metrics_url
            },
            "database": self.settings.database_url,
            "logs": str(self.logdir),
        }

    def stop(self) -> None:
        for progress in self._progress.values():
            progress.close()
        self._progress.clear()
        stop_all([worker.proc for worker in self.workers])  # before what they talk to
        stop_all(self._sandboxes)
        if self.broker:
            self.broker.stop()
        if self._own_logdir and not self.keep_logs:
            shutil.rmtree(self.logdir, ignore_errors=True)

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        self.keep_logs |= exc_type is not None  # an error names the logs: keep them
        self.stop()


def scrape_sum(urls: list[str], metric: str) -> float:
    """Sum of every sample of `metric` across the workers' /metrics (unreachable = 0).
    Only `metric` is asked for (prometheus-client's `name[]`): the whole page costs the
    worker and this process ~10x more to make and parse, at every turn of a wait."""
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for url in urls:
        try:
            text = http_client().get(url, params={"name[]": metric}, timeout=2.0).text
        except httpx.TransportError:
            continue
        for family in text_string_to_metric_families(text):
            total += sum(s.value for s in family.samples if s.name == metric)
    return total
