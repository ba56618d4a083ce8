"""The Marketo source connector's entry points: Marketo -> `marketo.person.changes`.

    actions-sync sync start             -> initial_sync(settings): the bulk load (S6, S12)
    actions-sync worker marketo-source  -> run(settings): lead changes, until SIGTERM

Both check their settings before the first call and share the wiring: a paced
`MarketoClient`, a `Publisher` to the topic, the store for checkpoints. SIGTERM/SIGINT
stop at the next checkpoint; a SIGKILL loses at most what follows the last one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from actions_sync.errors import ConfigError
from actions_sync.kafka import ensure_topics
from actions_sync.metrics import serve_metrics
from actions_sync.publish import Publisher
from actions_sync.serialization import RegistryClient
from actions_sync.settings import Settings, env_name
from actions_sync.store import Store
from actions_sync.topics import PERSON_CHANGES, specs
from connectors.marketo.client import MarketoClient, MarketoLimits
from connectors.marketo.context import SourceContext
from connectors.marketo.incremental import LeadChanges
from connectors.marketo.initial import InitialSync

__all__ = ["WORKER", "Endpoints", "initial_sync", "run", "validate"]

WORKER = "marketo-source"
T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Endpoints:
    marketo: str
    kafka: str
    registry: str


def validate(settings: Settings) -> Endpoints:
    """The endpoints the source needs, or a one-line `ConfigError` naming the variable."""
    found = {"marketo_url": settings.marketo_url,
             "kafka_bootstrap_servers": settings.kafka_bootstrap_servers,
             "schema_registry_url": settings.schema_registry_url}
    for field, value in found.items():
        if not value:
            raise ConfigError(f"{env_name(field)} is not set: the Marketo source needs it")
    if settings.marketo_until and settings.marketo_until <= settings.marketo_since:
        raise ConfigError(f"{env_name('marketo_until')} must be after "
                          f"{env_name('marketo_since')}")
    return Endpoints(str(settings.marketo_url), str(settings.kafka_bootstrap_servers),
                     str(settings.schema_registry_url))


def initial_sync(settings: Settings) -> None:
    """`actions-sync sync start`: load every sales-owned person, then return."""
    endpoints = validate(settings)

    async def load(ctx: SourceContext) -> bool:
        return await InitialSync(ctx, settings.marketo_since, settings.marketo_until,
                                 settings.marketo_export_chunk_bytes).run()

    done = asyncio.run(_with_context(settings, endpoints, load))
    log.info("initial sync %s", "complete" if done else "stopped at its checkpoint")


def run(settings: Settings) -> None:
    """`actions-sync worker marketo-source`: follow lead changes until SIGTERM."""
    endpoints = validate(settings)
    serve_metrics(settings.metrics_host, settings.metrics_port)

    async def follow(ctx: SourceContext) -> None:
        await LeadChanges(ctx, settings.marketo_poll_interval_s).run()

    asyncio.run(_with_context(settings, endpoints, follow))


async def _with_context(settings: Settings, endpoints: Endpoints,
                        body: Callable[[SourceContext], Awaitable[T]]) -> T:
    async with _context(settings, endpoints) as ctx:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, ctx.stopping.set)
        return await body(ctx)


@contextlib.asynccontextmanager
async def _context(settings: Settings, endpoints: Endpoints) -> AsyncIterator[SourceContext]:
    ensure_topics(endpoints.kafka, specs((PERSON_CHANGES,), settings.partitions,
                                         settings.replication_factor))
    limits = MarketoLimits(calls_per_window=settings.marketo_calls_per_window,
                           max_in_flight=settings.marketo_max_in_flight)
    client = MarketoClient(endpoints.marketo, settings.marketo_client_id,
                           settings.marketo_client_secret.get_secret_value(), limits)
    with contextlib.ExitStack() as closing:
        store = closing.enter_context(Store(settings.database_url))
        store.migrate()
        registry = RegistryClient(endpoints.registry)
        closing.callback(registry.close)
        publisher = Publisher(endpoints.kafka, registry)
        try:
            yield SourceContext(client, publisher, store, WORKER, settings.marketo_quota_probe_s)
            publisher.flush()
        finally:
            await client.aclose()
