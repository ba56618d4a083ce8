"""The Marketo source connector's entry points: Marketo -> `marketo.person.changes`.

    actions-sync sync start             -> initial_sync(settings): turns the people sync
                                           on, then the bulk load (S6, S12)
    actions-sync worker marketo-source  -> run(settings): lead changes, until SIGTERM,
                                           while the people sync is on

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

from actions_sync.admin.commands import change, cli_user
from actions_sync.admin.live import LiveSettings
from actions_sync.admin.live import load as load_settings
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
from connectors.marketo.incremental import OFF_CHECK_S, LeadChanges
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
    found = {
        "marketo_url": settings.marketo_url,
        "kafka_bootstrap_servers": settings.kafka_bootstrap_servers,
        "schema_registry_url": settings.schema_registry_url,
    }
    for field, value in found.items():
        if not value:
            raise ConfigError(f"{env_name(field)} is not set: the Marketo source needs it")
    if settings.marketo_until and settings.marketo_until <= settings.marketo_since:
        raise ConfigError(f"{env_name('marketo_until')} must be after {env_name('marketo_since')}")
    return Endpoints(
        str(settings.marketo_url),
        str(settings.kafka_bootstrap_servers),
        str(settings.schema_registry_url),
    )


def initial_sync(settings: Settings) -> None:
    """`actions-sync sync start`: initiate the data sync (SPEC S12): turn the people sync
    on, then load every sales-owned person and return. An admin turning it off stops the
    load at its next checkpoint; `sync start` again resumes it."""
    endpoints = validate(settings)

    async def load(ctx: SourceContext) -> bool:
        _turn_on(settings, ctx.store)
        with _live(settings, ctx.store, endpoints) as live:
            watch = asyncio.create_task(_stop_when_turned_off(ctx, live))
            try:
                return await InitialSync(
                    ctx,
                    settings.marketo_since,
                    settings.marketo_until,
                    settings.marketo_export_chunk_bytes,
                ).run()
            finally:
                watch.cancel()

    done = asyncio.run(_with_context(settings, endpoints, load))
    log.info("initial sync %s", "complete" if done else "stopped at its checkpoint")


def run(settings: Settings) -> None:
    """`actions-sync worker marketo-source`: follow lead changes until SIGTERM, while the
    people sync is turned on (it waits, checkpoint kept, while an admin has it off)."""
    endpoints = validate(settings)
    serve_metrics(settings.metrics_host, settings.metrics_port)

    async def follow(ctx: SourceContext) -> None:
        with _live(settings, ctx.store, endpoints) as live:
            await LeadChanges(
                ctx, settings.marketo_poll_interval_s, enabled=lambda: live.current().people_sync
            ).run()

    asyncio.run(_with_context(settings, endpoints, follow))


def _turn_on(settings: Settings, store: Store) -> None:
    """The admin setting people_sync on, audited, as `settings set people_sync on` does."""
    if not load_settings(store.engine).settings.people_sync:
        change(settings, store, "people_sync", True, f"{cli_user()} (sync start)")
        log.info("people sync turned on (admin setting people_sync)")


def _live(settings: Settings, store: Store, endpoints: Endpoints) -> LiveSettings:
    """The admin settings, kept current (enter it to start following them)."""
    return LiveSettings(store.engine, endpoints.kafka, replication=settings.replication_factor)


async def _stop_when_turned_off(ctx: SourceContext, live: LiveSettings) -> None:
    while not await ctx.wait(OFF_CHECK_S):
        if not live.current().people_sync:
            log.warning(
                "people sync turned off by an admin: the initial sync stops at its "
                "next checkpoint; `actions-sync sync start` resumes it"
            )
            ctx.stopping.set()
            return


async def _with_context(
    settings: Settings, endpoints: Endpoints, body: Callable[[SourceContext], Awaitable[T]]
) -> T:
    async with _context(settings, endpoints) as ctx:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, ctx.stopping.set)
        return await body(ctx)


@contextlib.asynccontextmanager
async def _context(settings: Settings, endpoints: Endpoints) -> AsyncIterator[SourceContext]:
    ensure_topics(
        endpoints.kafka, specs((PERSON_CHANGES,), settings.partitions, settings.replication_factor)
    )
    limits = MarketoLimits(
        calls_per_window=settings.marketo_calls_per_window,
        max_in_flight=settings.marketo_max_in_flight,
    )
    client = MarketoClient(
        endpoints.marketo,
        settings.marketo_client_id,
        settings.marketo_client_secret.get_secret_value(),
        limits,
    )
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
