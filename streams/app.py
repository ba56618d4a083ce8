"""The faust application of a stream worker, and the batch-agent glue every agent uses.

An agent here is a plain `handle(records) -> None` function that does its I/O in a worker
thread, or a `StagedHandler` (`prepare` then `write`, pipelined; `prepare` optionally in a
helper process, `streams.offload`). `batch_agent` feeds it batches through faust's
consumer with the batch fast path of `streams.fastpath` (whole fetched batches, no
per-record Event; see bench/RESULTS.md for the figures), and owns what faust gets wrong
by default for us: faust acknowledges a record whose handler raised, so the handler is
retried here (backoff with jitter) — an outage until it ends, another failure until the
records that cause it are found and dead-lettered (`streams.pipeline`); nothing is
acknowledged unhandled, and offsets are committed only after the handler returned.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol, TypeVar, cast, runtime_checkable

import faust
from faust.types import TP

from actions_sync.admin.live import LiveSettings
from actions_sync.admin.model import AdminSettings
from actions_sync.dead_letter import DeadLetterProducer
from actions_sync.errors import ConfigError
from actions_sync.kafka import ensure_topics
from actions_sync.metrics import (
    BATCH_SECONDS,
    CONSUMER_LAG,
    EVENTS_IN,
    forget_lag,
    serve_metrics,
)
from actions_sync.periodic import Periodic
from actions_sync.progress import ProgressMonitor
from actions_sync.publish import Publisher
from actions_sync.serialization import FastDeserializer, RegistryClient
from actions_sync.settings import Settings
from actions_sync.store import Store
from actions_sync.topics import RECORD_OF, specs
from streams import fastpath
from streams.batch import RawRecord
from streams.helper import Decode, Prepare
from streams.helper import columns as helper_columns
from streams.helper import prepare as helper_prepare
from streams.helper import setup as helper_setup
from streams.offload import ProcessStage
from streams.pipeline import Batch, DeadLetters

__all__ = [
    "Decode",
    "StagedHandler",
    "Wiring",
    "batch_agent",
    "create_app",
    "run_agent",
    "run_publishing_agent",
    "run_worker",
]

log = logging.getLogger(__name__)

Handler = Callable[[Sequence[RawRecord]], object]
A = TypeVar("A")  # an agent


@runtime_checkable
class StagedHandler(Protocol):
    """A handler in two steps, so the pipeline can prepare a batch while it writes the
    previous one: `handler(records)` is `handler.write(records, handler.prepare(records))`."""

    def __call__(self, records: Sequence[RawRecord]) -> object: ...
    def prepare(self, records: Sequence[RawRecord]) -> Any: ...
    def write(self, records: Sequence[RawRecord], prepared: Any) -> object: ...


def _faust_dir() -> Path:
    path = Path(tempfile.gettempdir()) / "actions-sync-faust"
    path.mkdir(exist_ok=True)  # faust makes only the last level
    return path


def create_app(settings: Settings, name: str, batch_size: int | None = None) -> faust.App:
    """A faust app for worker `name`; its consumer group is `<group_prefix>-<name>`; its
    buffers fit batches of `batch_size` (None: `Settings.people_batch`)."""
    batch_size = batch_size or settings.people_batch
    assert settings.kafka_bootstrap_servers, "checked by the CLI"
    app = faust.App(
        f"{settings.group_prefix}-{name}",
        broker=[f"kafka://{h}" for h in settings.kafka_bootstrap_servers.split(",")],
        key_serializer="raw",
        value_serializer="raw",  # decoded by the project's own Avro deserializer
        web_enabled=False,  # /metrics is served by prometheus-client
        broker_session_timeout=settings.session_timeout_ms / 1000,
        broker_heartbeat_interval=1,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        topic_allow_declare=False,  # topics are pre-created with our partition count
        consumer_auto_offset_reset="earliest",
        stream_buffer_maxsize=max(4096, batch_size * 2),
        broker_max_poll_records=max(500, batch_size),
        producer_acks=-1,
        store="memory://",
        # Tables live in memory, but faust still makes a data directory: not in the cwd.
        datadir=str(_faust_dir() / "{conf.name}-data"),
    )
    fastpath.install(app, fetch_max_wait_ms=settings.fetch_max_wait_ms)
    return app


def batch_agent(
    app: faust.App,
    topic: str,
    worker: str,
    handle: Handler,
    size: int,
    dead_letters: DeadLetters | None = None,
    attempts: int = 5,
) -> None:
    """Consume `topic` in batches of up to `size` records, each handed to `handle`.

    `handle` runs in the agent's store thread, one batch at a time; a batch is retried
    until `handle` returns, and its offsets are committed only then (an outage without
    end; another failure `attempts` times, then the records that cause it go to
    `dead_letters`: `streams.pipeline`). A `StagedHandler` has its `prepare` step run in
    a second thread, overlapping the previous `write`.
    """

    def written(batch: Batch) -> None:
        BATCH_SECONDS.labels(worker).observe(time.monotonic() - batch.first_at)
        EVENTS_IN.labels(worker, topic).inc(len(batch.records))
        for tp, end in batch.ends.items():
            highwater = app.consumer.highwater(cast(TP, tp))
            if highwater is not None:
                CONSUMER_LAG.labels(worker, topic, str(cast(TP, tp).partition)).set(
                    max(highwater - end, 0)
                )

    @app.on_partitions_revoked.connect
    async def forget_revoked_lag(sender: Any, /, *args: Any, signal: Any, **_: Any) -> None:
        # Sent (with the revoked set) after the batches in flight were finished
        # (streams.fastpath), so no late batch re-sets a revoked partition's lag.
        revoked: set[TP] = args[0]
        forget_lag(worker, ((tp.topic, tp.partition) for tp in revoked if tp.topic == topic))

    if isinstance(handle, StagedHandler):
        route = fastpath.BatchRoute(
            topic, handle.write, size, written, handle.prepare, dead_letters, attempts, worker
        )
    else:
        route = fastpath.BatchRoute(
            topic,
            lambda records, _: handle(records),
            size,
            written,
            None,
            dead_letters,
            attempts,
            worker,
        )
    fastpath.subscribe(app, route)


def run_worker(app: faust.App, loglevel: str = "info") -> None:
    """Run the faust worker in the foreground until SIGTERM/SIGINT."""
    worker = faust.Worker(app, loglevel=loglevel, quiet=True, override_logging=False)
    worker.execute_from_commandline()


MakeHandler = Callable[[Store, Decode, DeadLetterProducer], Handler]


def run_agent(
    settings: Settings,
    worker: str,
    topic: str,
    record: str,
    make_handler: MakeHandler,
    offload: Prepare | None = None,
    more: Sequence[tuple[str, str, MakeHandler]] = (),
    batch_size: int | None = None,
) -> None:
    """Wire and run one stream worker: topics, store, registry, dead letters, metrics.

    With `offload` (a module-level `prepare(records, decode)`, the handler's own), each
    batch is prepared by `offload` in a helper process (`streams.offload`) and written
    by the handler's `write` in the worker. `more` are further (topic, record, handler)
    inputs of the same worker, each consumed in batches of its own. `batch_size` is the
    worker's own batch setting (None: `Settings.people_batch`).
    """
    bootstrap = settings.kafka_bootstrap_servers
    registry_url = settings.schema_registry_url
    if not bootstrap or not registry_url:
        raise ConfigError(
            "KAFKA_BOOTSTRAP_SERVERS and SCHEMA_REGISTRY_URL must be set"
            " to run a worker (or run `actions-sync up` for the embedded stack)"
        )
    ensure_topics(
        bootstrap,
        specs((topic, *(m[0] for m in more)), settings.partitions, settings.replication_factor),
    )
    store = Store(settings.database_url)
    store.migrate()
    registry = RegistryClient(registry_url)
    dead_letters = DeadLetterProducer(bootstrap)
    handler = make_handler(store, FastDeserializer(registry, record), dead_letters)
    helper = None
    if offload is not None:
        assert isinstance(handler, StagedHandler), "offload needs a handler in two steps"
        helper = ProcessStage(
            f"{worker}-prepare",
            helper_setup,
            (registry_url, record),
            partial(helper_prepare, offload),
        )
        handler = _Offloaded(handler, helper, topic)
    size = batch_size or settings.people_batch
    app = create_app(settings, worker, size)
    batch_agent(app, topic, worker, handler, size, dead_letters.send, settings.batch_attempts)
    for other, other_record, make_other in more:
        batch_agent(
            app,
            other,
            worker,
            make_other(store, FastDeserializer(registry, other_record), dead_letters),
            size,
            dead_letters.send,
            settings.batch_attempts,
        )
    topics = (topic, *(m[0] for m in more))
    monitor = ProgressMonitor(
        bootstrap,
        f"{settings.group_prefix}-{worker}",
        worker,
        topics,
        settings.lag_interval_s,
        settings.health_stall_s,
        _assignment(app, topics),
    ).start()
    serve_metrics(settings.metrics_host, settings.metrics_port, monitor.health)
    try:
        run_worker(app, settings.log_level)
    finally:
        monitor.close()
        if helper is not None:
            helper.close()
        dead_letters.close()
        registry.close()
        store.close()


@dataclass(frozen=True)
class Wiring:
    """What an agent that publishes needs, made once per worker by `run_publishing_agent`."""

    store: Store
    dead_letters: DeadLetterProducer
    registry: RegistryClient
    publisher: Publisher
    admin: Callable[[], AdminSettings]  # the live admin settings


def run_publishing_agent(
    settings: Settings,
    worker: str,
    outbound: Sequence[str],
    build: Callable[[Wiring], tuple[A, Sequence[Periodic]]],
    inputs: Sequence[tuple[str, Callable[[A, Decode], Handler]]],
    batch_size: int | None = None,
) -> None:
    """`run_agent` for an agent that publishes to `outbound` (created with their
    dead-letter topics) and follows the admin settings live: one agent per worker, made
    by `build` when the first input is wired and fed by every input (topic, its handler
    on the agent) — a flow both ways reads the Actions app's topic and a vendor's. The
    periodic jobs `build` starts (catch-ups, sweepers) stop first when the worker ends."""
    closers: list[Callable[[], object]] = []
    made: list[A] = []

    def agent(store: Store, dead_letters: DeadLetterProducer) -> A:
        if made:
            return made[0]
        bootstrap, registry_url = settings.kafka_bootstrap_servers, settings.schema_registry_url
        assert bootstrap and registry_url, "checked by run_agent"
        ensure_topics(
            bootstrap, specs(tuple(outbound), settings.partitions, settings.replication_factor)
        )
        registry = RegistryClient(registry_url)
        live = LiveSettings(store.engine, bootstrap, replication=settings.replication_factor)
        closers.extend([live.start().close, registry.close])
        wiring = Wiring(store, dead_letters, registry, Publisher(bootstrap, registry), live.current)
        built, jobs = build(wiring)
        closers[:0] = [job.start().close for job in jobs]
        made.append(built)
        return built

    def wire(handler: Callable[[A, Decode], Handler]) -> MakeHandler:
        return lambda store, decode, dead_letters: handler(agent(store, dead_letters), decode)

    (topic, handler), *rest = inputs
    try:
        run_agent(
            settings,
            worker,
            topic,
            RECORD_OF[topic],
            wire(handler),
            more=[(other, RECORD_OF[other], wire(of)) for other, of in rest],
            batch_size=batch_size,
        )
    finally:
        for close in closers:
            close()


def _assignment(app: faust.App, topics: Sequence[str]) -> Callable[[], set[tuple[str, int]]]:
    """What this process owns of `topics`, followed through the app's rebalance signals
    (read by the progress monitor's thread)."""
    owned: set[tuple[str, int]] = set()

    @app.on_partitions_assigned.connect
    async def assigned(sender: Any, /, *args: Any, signal: Any, **_: Any) -> None:
        owned.update((tp.topic, tp.partition) for tp in args[0] if tp.topic in topics)

    @app.on_partitions_revoked.connect
    async def revoked(sender: Any, /, *args: Any, signal: Any, **_: Any) -> None:
        owned.difference_update((tp.topic, tp.partition) for tp in args[0])

    return lambda: set(owned)


# A batch smaller than this is prepared in the worker: its trip to the helper and back
# (two pickles, two pipe hops, two wake-ups on a busy box) would cost more than the work
# saved, and it would wait behind a loaded core. The helper process starts with the first
# larger batch (an initial load, a backlog), so a worker that only ever sees a trickle of
# changes never starts it: ~1 s of CPU and ~60 MB of RSS not spent. Until it is up,
# batches are prepared here (`ProcessStage.ready`).
OFFLOAD_MIN_RECORDS = 200


class _Offloaded:
    """`handler`, with its `prepare` step run by `offload` in the helper process (for
    batches of `OFFLOAD_MIN_RECORDS` or more)."""

    def __init__(self, handler: StagedHandler, helper: ProcessStage, topic: str) -> None:
        self._handler = handler
        self._helper = helper
        self._topic = topic

    def __call__(self, records: Sequence[RawRecord]) -> object:
        return self.write(records, self.prepare(records))

    def prepare(self, records: Sequence[RawRecord]) -> Any:
        if len(records) < OFFLOAD_MIN_RECORDS or not self._helper.ready():
            return self._handler.prepare(records)
        # Columns pickle far faster than RawRecords; one pipeline serves one topic.
        return self._helper(helper_columns(self._topic, records))

    def write(self, records: Sequence[RawRecord], prepared: Any) -> object:
        return self._handler.write(records, prepared)
