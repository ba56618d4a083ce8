"""Wiring of one sink worker process: topics, registry, dead letters, consumer, metrics.

`run_sink` is what `actions-sync worker <sink>` ends in: it validates what every sink
needs (one `ConfigError` line naming the variable), then runs `SinkRunner` until SIGTERM
or SIGINT, and closes every client on the way out.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

from confluent_kafka import Consumer

from actions_sync.dead_letter import DeadLetterProducer
from actions_sync.errors import ConfigError
from actions_sync.kafka import consumer_config, ensure_topics
from actions_sync.metrics import serve_metrics
from actions_sync.progress import ProgressMonitor
from actions_sync.serialization import Deserializer, RegistryClient
from actions_sync.settings import Settings
from actions_sync.topics import specs
from connectors.runner import Destination, RunnerConfig, SinkRunner

__all__ = ["require", "require_broker", "run_sink"]


def require(value: str | None, variable: str, what: str) -> str:
    """`value`, or a one-line `ConfigError` naming `variable`."""
    if not value:
        raise ConfigError(
            f"{variable} must be set to run {what} "
            "(or run `actions-sync up` for the embedded stack)"
        )
    return value


def require_broker(settings: Settings, what: str) -> tuple[str, str]:
    """(Kafka bootstrap servers, schema registry URL), or a one-line `ConfigError`."""
    return (
        require(settings.kafka_bootstrap_servers, "KAFKA_BOOTSTRAP_SERVERS", what),
        require(settings.schema_registry_url, "SCHEMA_REGISTRY_URL", what),
    )


def run_sink(
    settings: Settings,
    config: RunnerConfig,
    record: str,
    make_destination: Callable[[], Destination],
) -> None:
    """Run sink `config.worker` on `config.topic` (Avro record `record`) until stopped."""
    what = f"worker {config.worker}"
    bootstrap, registry_url = require_broker(settings, what)
    ensure_topics(
        bootstrap, specs((config.topic,), settings.partitions, settings.replication_factor)
    )
    asyncio.run(_main(settings, config, record, bootstrap, registry_url, make_destination))


async def _main(
    settings: Settings,
    config: RunnerConfig,
    record: str,
    bootstrap: str,
    registry_url: str,
    make_destination: Callable[[], Destination],
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    registry = RegistryClient(registry_url)
    dead_letters = DeadLetterProducer(bootstrap)
    group = f"{settings.group_prefix}-{config.worker}"
    consumer = Consumer(
        consumer_config(
            bootstrap,
            group,
            settings.session_timeout_ms,
            **{"fetch.wait.max.ms": settings.fetch_max_wait_ms},
        )
    )
    destination = make_destination()
    runner = SinkRunner(
        consumer, config, Deserializer(registry, record), destination, dead_letters, stop
    )
    monitor = ProgressMonitor(
        bootstrap,
        group,
        config.worker,
        (config.topic,),
        settings.lag_interval_s,
        settings.health_stall_s,
        lambda: set(runner.owned),
    ).start()
    serve_metrics(settings.metrics_host, settings.metrics_port, monitor.health)
    try:
        await runner.run()
    finally:
        monitor.close()
        consumer.close()
        await destination.aclose()
        dead_letters.close()
        registry.close()
