"""What the benchmarks share: the broker and store they run on (`--broker tansu|apache`,
`--store sqlite|postgres`), a stack on a fresh store, the raw consume rate, CPU time and
memory of processes, a topic's arrival times, percentiles, a worker's metrics, the
machine's load.

Each benchmark is a script run from the repository root (`.venv/bin/python bench/X.py`);
Python puts `bench/` on the path, so they import this module as `_common`.

`--broker apache` runs on the broker named by KAFKA_BOOTSTRAP_SERVERS when it is set (under
`scripts/apache-kafka exec -- ...`, a fresh one), else starts a fresh single-node Apache
Kafka (KRaft) with `scripts/apache-kafka run`, as the tests' tier does. `--store postgres`
starts a PostgreSQL server in a temp dir (the tests' `tests/support/postgres.py`), with
the tests' fast settings (fsync and synchronous_commit off) or, for `durable`, PostgreSQL's
own defaults.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer

from actions_sync.kafka import consumer_config, ensure_topics
from actions_sync.publish import Publisher
from actions_sync.serialization import Deserializer, RegistryClient
from actions_sync.settings import Settings
from actions_sync.store import Store
from actions_sync.topics import PERSON_CHANGES, specs
from app.process import spawn, stop
from app.stack import Stack, http_client

WARM_UP_ID = 9_000_000_000  # a person id no generated population uses
ROOT = Path(__file__).resolve().parents[1]
BROKERS = ("tansu", "apache")
STORES = ("sqlite", "postgres")
DURABILITIES = ("fast", "durable")  # PostgreSQL: the tests' settings, its own defaults


def add_backend_options(parser: argparse.ArgumentParser) -> None:
    """`--broker` and `--store`: every benchmark's choice of what it runs on."""
    parser.add_argument(
        "--broker",
        choices=BROKERS,
        default="apache" if os.environ.get("KAFKA_BOOTSTRAP_SERVERS") else "tansu",
        help="the embedded Tansu, or Apache Kafka (KRaft; default: apache when"
        " KAFKA_BOOTSTRAP_SERVERS is set, else tansu)",
    )
    parser.add_argument(
        "--store",
        choices=STORES,
        default="sqlite",
        help="SQLite file in a temp dir, or a PostgreSQL server started in one",
    )
    parser.add_argument(
        "--pg",
        default="fast",
        metavar="fast,durable",
        help="with --store postgres: PostgreSQL with fsync and synchronous_commit"
        " off (fast, the tests' settings) or on (durable); benchmarks that"
        " measure several configurations take a list",
    )
    parser.add_argument(
        "--json",
        metavar="PATH",
        help="also write the run's figures here (bench/matrix.py reads them)",
    )


def write_json(args: argparse.Namespace, figures: dict[str, Any]) -> None:
    """The figures of a run, with what it ran on, to `--json` (if given)."""
    if args.json:
        Path(args.json).write_text(
            json.dumps({"broker": args.broker, "store": args.store, **figures}, indent=1)
        )


def durabilities(args: argparse.Namespace) -> list[str]:
    """The PostgreSQL configurations asked for (["-"] on SQLite: one store, no choice)."""
    if args.store != "postgres":
        return ["-"]
    asked = [d.strip() for d in args.pg.split(",") if d.strip()]
    if not asked or any(d not in DURABILITIES for d in asked):
        raise SystemExit(f"--pg {args.pg!r}: expected a list of {', '.join(DURABILITIES)}")
    return asked


@dataclass
class Backends:
    """The broker (None: the stack starts the embedded Tansu) and the store servers of a
    run; `database_url()` makes a fresh, empty database on them."""

    broker: str
    store: str
    durabilities: list[str]
    bootstrap: str | None = None
    broker_pid: int | None = None  # ours to meter (an external broker's is not)
    servers: dict[str, Any] = field(default_factory=dict)  # durability -> PostgresServer
    tmp: str = ""
    _exit: ExitStack = field(default_factory=ExitStack)

    def __enter__(self) -> Backends:
        self.tmp = self._exit.enter_context(tempfile.TemporaryDirectory())
        try:
            if self.broker == "apache":
                self._start_apache_kafka()
            if self.store == "postgres":
                from _postgres import DURABLE_SETTINGS, SERVER_SETTINGS, PostgresServer

                for durability in self.durabilities:
                    server = PostgresServer(
                        settings=SERVER_SETTINGS if durability == "fast" else DURABLE_SETTINGS
                    )
                    self.servers[durability] = self._exit.enter_context(server)
        except BaseException:
            self._exit.close()
            raise
        return self

    def _start_apache_kafka(self) -> None:
        self.bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or None
        if self.bootstrap:
            return
        ready = Path(self.tmp) / "kafka.ready"
        proc = spawn(
            [str(ROOT / "scripts" / "apache-kafka"), "run", "--ready-file", str(ready)],
            log=Path(self.tmp) / "apache-kafka.log",
        )
        self._exit.callback(stop, proc, 30.0)
        deadline = time.monotonic() + 180
        while not ready.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                log = (Path(self.tmp) / "apache-kafka.log").read_text(errors="replace")
                raise SystemExit(f"Apache Kafka did not start:\n{log[-3000:]}")
            time.sleep(0.2)
        self.bootstrap = ready.read_text().strip()
        self.broker_pid = proc.pid

    def __exit__(self, *exc: object) -> None:
        self._exit.close()

    def database_url(self, durability: str = "") -> str:
        """A fresh, empty database (migrated by its user)."""
        name = f"bench_{uuid.uuid4().hex[:8]}"
        if self.store == "sqlite":
            return f"sqlite:///{self.tmp}/{name}.db"
        return str(self.servers[durability or self.durabilities[0]].create_database(name))

    def settings(self, durability: str = "", **settings: Any) -> Settings:
        """Settings on these backends: a fresh database, a fresh group prefix."""
        return Settings(
            kafka_bootstrap_servers=self.bootstrap,
            database_url=self.database_url(durability),
            group_prefix=f"bench-{uuid.uuid4().hex[:6]}",
            **settings,
        )

    def broker_pids(self, bootstrap: str) -> list[int]:
        """The broker's processes, to meter its CPU (none for an external broker)."""
        if self.broker == "apache":
            return [self.broker_pid] if self.broker_pid else []
        return [
            int(pid)
            for pid in subprocess.run(  # the embedded Tansu, by its port
                ["pgrep", "-f", f"listener-url tcp://{bootstrap} "], capture_output=True, text=True
            ).stdout.split()
        ]

    def store_pids(self, durability: str = "") -> list[int]:
        """PostgreSQL's postmaster (its backends are its children); SQLite: none."""
        if self.store != "postgres":
            return []
        from _postgres import postmaster_pid

        return [postmaster_pid(self.servers[durability or self.durabilities[0]])]

    def label(self, durability: str = "") -> str:
        broker = "Apache Kafka (KRaft)" if self.broker == "apache" else "Tansu (embedded)"
        if self.store == "sqlite":
            return f"broker {broker}, store SQLite (WAL)"
        durability = durability or self.durabilities[0]
        how = (
            "fsync and synchronous_commit off"
            if durability == "fast"
            else "fsync and synchronous_commit on"
        )
        return f"broker {broker}, store PostgreSQL ({durability}: {how})"


@contextmanager
def bench_stack(
    args: argparse.Namespace, topics: tuple[str, ...], **settings: Any
) -> Iterator[Stack]:
    """The broker asked for (`args.broker`), the registry and a migrated store of
    `args.store`, `topics` created; prints what it runs on. The stack's `backends` make
    more fresh stores on the same servers."""
    with Backends(args.broker, args.store, durabilities(args)) as backends:
        config = backends.settings(**settings)
        with Stack(config, keep_logs=True) as stack:
            stack.backends = backends  # type: ignore[attr-defined]
            ensure_topics(stack.bootstrap, specs(topics, config.partitions))
            with Store(config.database_url) as store:
                store.migrate()
            print(
                f"running on: {backends.label()} ({stack.bootstrap});"
                f" load average {load_average()}",
                flush=True,
            )
            yield stack


def warm_up_people(stack: Stack, timeout_s: float = 60) -> None:
    """Publish one person change and wait until the store holds it: from then on the
    people worker(s) have joined their group and write (the person stays in the store:
    count it)."""
    registry = RegistryClient(stack.registry_url)
    publisher = Publisher(stack.bootstrap, registry)
    change = {
        "event_id": str(uuid.uuid4()),
        "marketo_id": WARM_UP_ID,
        "changed_at": datetime.now(UTC),
        "deleted": False,
        "sfdc_lead_owner_id": "005000000000000001",
        "email": "warm-up@example.com",
    }
    publisher.publish(PERSON_CHANGES, "PersonChange", [(str(WARM_UP_ID), change)])
    publisher.flush()
    registry.close()
    deadline = time.monotonic() + timeout_s
    with Store(stack.settings.database_url) as store:
        while store.person(WARM_UP_ID) is None:
            stack.check_workers()
            if time.monotonic() > deadline:
                raise SystemExit(f"the warm-up change did not reach the store in {timeout_s}s")
            time.sleep(0.05)


def raw_rate(bootstrap: str, registry: RegistryClient, total: int) -> float:
    """Consume and decode `total` person changes with confluent-kafka + fastavro (the
    rate a plain consumer reaches on this machine now); records/s."""
    decode = Deserializer(registry, "PersonChange")
    consumer = Consumer(
        consumer_config(
            bootstrap, f"bench-raw-{uuid.uuid4().hex[:6]}", **{"fetch.max.bytes": 52_428_800}
        )
    )
    consumer.subscribe([PERSON_CHANGES])
    seen, started = 0, None
    try:
        while seen < total:
            for msg in consumer.consume(10_000, timeout=1.0):
                if msg.error():
                    continue
                if started is None:
                    started = time.perf_counter()
                decode(msg.value())
                seen += 1
    finally:
        consumer.close()
    assert started is not None
    return seen / (time.perf_counter() - started)


def process_tree(pids: list[int]) -> set[int]:
    """These processes and all their descendants (Linux /proc): a spawned worker is a
    guard, its worker and the worker's helper; PostgreSQL, its postmaster and backends."""
    seen: set[int] = set()
    todo = list(pids)
    while todo:
        pid = todo.pop()
        if pid not in seen:
            seen.add(pid)
            todo += map(
                int,
                subprocess.run(
                    ["pgrep", "-P", str(pid)], capture_output=True, text=True
                ).stdout.split(),
            )
    return seen


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of these processes and all their descendants, each counted once."""
    total = 0.0
    for one in process_tree(pids):
        try:
            fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        # utime + stime, and cutime + cstime: the children it reaped (a helper process
        # replaced, a PostgreSQL backend that ended) would go uncounted otherwise
        total += sum(map(int, fields[11:15])) / os.sysconf("SC_CLK_TCK")
    return total


def memory_mb(pids: list[int]) -> tuple[float, float]:
    """(RSS, PSS) of these processes and their descendants, MB. RSS counts a page shared
    by two of them (the helper's and the worker's libraries, forked or mapped from one
    file) in each; PSS gives each its share, so the PSS of a group is what it costs the
    machine (`/proc/PID/smaps_rollup`)."""
    rss = pss = 0
    for one in process_tree(pids):
        try:
            rss += int(Path(f"/proc/{one}/statm").read_text().split()[1])
            rollup = Path(f"/proc/{one}/smaps_rollup").read_text()
        except (FileNotFoundError, ProcessLookupError, IndexError, PermissionError):
            continue
        pss += next(
            (int(line.split()[1]) for line in rollup.splitlines() if line.startswith("Pss:")), 0
        )
    return rss * os.sysconf("SC_PAGE_SIZE") / 1e6, pss * 1024 / 1e6


class PeakRss:
    """Samples the memory of groups of processes (each with its descendants) in a thread
    every `every_s`: `peak` (RSS) and `peak_pss` per group so far, `reading()` both."""

    def __init__(self, groups: dict[str, list[int]], every_s: float = 0.5) -> None:
        self.groups = groups
        self.peak = dict.fromkeys(groups, 0.0)
        self.peak_pss = dict.fromkeys(groups, 0.0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every_s,), daemon=True)
        self._thread.start()

    def _run(self, every_s: float) -> None:
        while not self._stop.is_set():
            for name, pids in self.groups.items():
                rss, pss = memory_mb(pids)
                self.peak[name] = max(self.peak[name], rss)
                self.peak_pss[name] = max(self.peak_pss[name], pss)
            self._stop.wait(every_s)

    def reading(self) -> str:
        return ", ".join(
            f"{name} {mb:,.0f} MB (PSS {self.peak_pss[name]:,.0f})"
            for name, mb in self.peak.items()
        )

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


class Arrivals:
    """Reads `topic` from its start in a thread: key -> wall-clock time (`time.time()`)
    the record was first consumed, and how many records were read (duplicates included)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.first: dict[str, float] = {}
        self.records = 0
        self._stop = threading.Event()
        self._consumer = Consumer(
            consumer_config(bootstrap, f"bench-{uuid.uuid4().hex[:6]}", **{"fetch.wait.max.ms": 10})
        )
        self._consumer.subscribe([topic])
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                for msg in self._consumer.consume(1000, timeout=0.1):
                    if not msg.error():
                        self.records += 1
                        self.first.setdefault((msg.key() or b"").decode(), time.time())
        finally:
            self._consumer.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def pct(values: list[float], q: float) -> float:
    """The `q` quantile (0..1) of `values`, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def load_average() -> str:
    """The machine's 1/5/15-minute load averages: other sessions share its cores."""
    return " / ".join(f"{v:.2f}" for v in os.getloadavg())


def metric_sum(url: str, metric: str, **labels: str) -> float:
    """Sum of a worker's samples of `metric` (its /metrics) whose labels include `labels`."""
    from prometheus_client.parser import text_string_to_metric_families

    text = http_client().get(url, params={"name[]": metric}, timeout=10).text  # see scrape_sum
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == metric and labels.items() <= s.labels.items()
    )


def journal(url: str) -> list[dict[str, Any]]:
    """A sandbox's request journal (every call it answered, with its code and time)."""
    return list(http_client().get(f"{url}/_sandbox/journal", timeout=60).json())


def busiest_window(stamps: list[float], window_s: float = 20.0) -> int:
    """The most calls answered in any `window_s` seconds (`stamps` sorted)."""
    best, start = 0, 0
    for end, stamp in enumerate(stamps):
        while stamp - stamps[start] >= window_s:
            start += 1
        best = max(best, end - start + 1)
    return best
