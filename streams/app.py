"""The faust application of a stream worker, and the batch-agent glue every agent uses.

An agent here is a plain `handle(records) -> None` function that does its I/O in a worker
thread; `batch_agent` feeds it batches from faust and owns what faust gets wrong by
default for us: faust acknowledges a record whose handler raised, so the handler is
retried here (backoff with jitter) until it succeeds — nothing is acknowledged unhandled.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, cast

import faust

from actions_sync.dead_letter import DeadLetterProducer
from actions_sync.errors import ConfigError
from actions_sync.kafka import ensure_topics
from actions_sync.metrics import BATCH_SECONDS, CONSUMER_LAG, EVENTS_IN, serve_metrics
from actions_sync.retry import retrying
from actions_sync.serialization import Deserializer, RegistryClient
from actions_sync.settings import Settings
from actions_sync.store import Store
from streams.batch import RawRecord
from streams.topics import specs

__all__ = ["batch_agent", "create_app", "run_agent", "run_worker"]

log = logging.getLogger(__name__)

Handler = Callable[[Sequence[RawRecord]], object]


def create_app(settings: Settings, name: str) -> faust.App:
    """A faust app for worker `name`; its consumer group is `<group_prefix>-<name>`."""
    assert settings.kafka_bootstrap_servers, "checked by the CLI"
    return faust.App(
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
        stream_buffer_maxsize=max(4096, settings.people_batch_size * 2),
        broker_max_poll_records=max(500, settings.people_batch_size),
        producer_acks=-1,
        store="memory://",
    )


def batch_agent(
    app: faust.App, topic: str, worker: str, handle: Handler, size: int, within_s: float
) -> Any:
    """Register an agent on `topic` that hands batches of raw records to `handle`."""
    channel = app.topic(topic, key_serializer="raw", value_serializer="raw")

    async def agent(stream: faust.StreamT[Any]) -> None:
        # take_events exists on faust.Stream (the runtime type), not on StreamT.
        async for events in cast(faust.Stream[Any], stream).take_events(size, within=within_s):
            started = time.perf_counter()
            records = [
                RawRecord(e.message.topic, e.message.partition, e.message.offset,
                          e.message.key, e.message.value)
                for e in events
            ]
            await retrying(partial(asyncio.to_thread, handle, records), retry_on=(Exception,))
            BATCH_SECONDS.labels(worker).observe(time.perf_counter() - started)
            EVENTS_IN.labels(worker, topic).inc(len(records))
            _record_lag(app, worker, events)

    agent.__name__ = f"{worker}_agent"
    return app.agent(channel, name=f"{worker}-agent")(agent)


def _record_lag(app: faust.App, worker: str, events: Sequence[Any]) -> None:
    last: dict[Any, int] = {}
    for event in events:
        last[event.message.tp] = event.message.offset
    for tp, offset in last.items():
        highwater = app.consumer.highwater(tp)
        if highwater is not None:
            CONSUMER_LAG.labels(worker, tp.topic, str(tp.partition)).set(
                max(highwater - offset - 1, 0)
            )


def run_worker(app: faust.App, loglevel: str = "info") -> None:
    """Run the faust worker in the foreground until SIGTERM/SIGINT."""
    worker = faust.Worker(app, loglevel=loglevel, quiet=True, override_logging=False)
    worker.execute_from_commandline()


def run_agent(
    settings: Settings, worker: str, topic: str, record: str,
    make_handler: Callable[[Store, Callable[[bytes | None], dict[str, Any]], DeadLetterProducer],
                           Handler],
) -> None:
    """Wire and run one stream worker: topics, store, registry, dead letters, metrics."""
    bootstrap = settings.kafka_bootstrap_servers
    registry_url = settings.schema_registry_url
    if not bootstrap or not registry_url:
        raise ConfigError("KAFKA_BOOTSTRAP_SERVERS and SCHEMA_REGISTRY_URL must be set"
                          " to run a worker (or run `actions-sync up` for the embedded stack)")
    ensure_topics(bootstrap, specs((topic,), settings.partitions, settings.replication_factor))
    store = Store(settings.database_url)
    store.migrate()
    registry = RegistryClient(registry_url)
    dead_letters = DeadLetterProducer(bootstrap)
    handler = make_handler(store, Deserializer(registry, record), dead_letters)
    app = create_app(settings, worker)
    batch_agent(app, topic, worker, handler, settings.people_batch_size,
                settings.people_batch_within_s)
    serve_metrics(settings.metrics_host, settings.metrics_port)
    try:
        run_worker(app, settings.log_level)
    finally:
        dead_letters.close()
        registry.close()
        store.close()
