"""The Salesforce source connector: Salesforce -> `salesforce.optouts` (SPEC S9) and
`salesforce.tasks` (SPEC S11).

    actions-sync worker salesforce-source  -> run(settings), until SIGTERM

Every `salesforce_poll_interval_s` it polls the objects of the admin setting
`unsubscribe_objects` (Lead, Contact) for rows whose `unsubscribe_field` reads true, with
the `(SystemModstamp, Id)` cursor and lookback of `cursor.py` (`poller.py` saves each
object's position in the store's checkpoints once the broker has the page's records),
and publishes the persons' opt-outs (`optouts.py`: never a re-subscribe, never the sync's
own write). The Task stream is a second stream of the same poller (`tasks.py`: every
person's change of a Task, with its deletions from `sobjects/Task/deleted`), polled while
`reminder_task_sync` and `salesforce_log_reminder_tasks` are both on; its first position
is 24 hours back (S11's first enable). A deletion window the recycle bin no longer covers
is logged by the poller and counted here (`actions_sync_salesforce_deletion_gaps_total`);
`actions_sync_salesforce_task_poll_age_seconds` is the time since the last Task poll.
The echo of the sync's first write of a task carries the Task's Id: the source records it
in the store (the agent has only the task id), so that a deletion `/deleted/` reports by
Id alone finds its task; the echo itself is dropped as every echo is.
The admin settings are read live: a stream whose setting is off is not polled and its
position waits; turned on, it catches up from it.

The daily API budget is the sink's (`Sforce-Limit-Info`, `budget.py`): the client stops
while only `salesforce_budget_reserve` calls remain, and the source pauses. The client
retries each call; a poll that still fails is this loop's to retry
(`actions_sync.retry.retrying_step`), from the saved positions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from actions_sync.admin.live import LiveSettings
from actions_sync.admin.model import AdminSettings
from actions_sync.kafka import ensure_topics
from actions_sync.metrics import (
    RECORDS_PUBLISHED,
    SALESFORCE_DELETION_GAPS,
    SALESFORCE_TASK_POLL_AGE_SECONDS,
    SKIPPED,
    SOURCE_ENABLED,
    serve_metrics,
)
from actions_sync.publish import Publisher
from actions_sync.retry import Interrupted, retrying_step
from actions_sync.serialization import RegistryClient
from actions_sync.settings import Settings
from actions_sync.store import Store, reminder_tasks
from actions_sync.store.unsubscribes import written_optouts
from actions_sync.topics import RECORD_OF, SALESFORCE_OPTOUTS, SALESFORCE_TASKS, specs
from connectors.errors import QuotaExhausted, Rejected
from connectors.http import CALL_ATTEMPTS
from connectors.salesforce import sink
from connectors.salesforce.client import EXTERNAL_ID
from connectors.salesforce.cursor import Row, Stream
from connectors.salesforce.ids import to18
from connectors.salesforce.optouts import optout_stream, optouts
from connectors.salesforce.poller import Poller
from connectors.salesforce.tasks import deleted_task, task_stream, tasks
from connectors.sink_worker import require, require_broker

__all__ = ["WORKER", "OptOutSource", "run"]

WORKER = "salesforce-source"
OFF_CHECK_S = 1.0  # while unsubscribe_sync is off: how often the setting is looked at
log = logging.getLogger(__name__)


class OptOutSource:
    """Polls the opt-outs of the objects the admin settings name, while they say so."""

    def __init__(
        self,
        poller: Poller,
        admin: Callable[[], AdminSettings],
        poll_interval_s: float,
        stopping: asyncio.Event | None = None,
    ) -> None:
        self.poller = poller
        self.admin = admin
        self.poll_interval_s = poll_interval_s
        self.stopping = stopping or asyncio.Event()
        self.published = 0
        self._was_enabled: bool | None = None
        polled = self._tasks_polled = [time.monotonic()]  # the gauge holds the list, not us
        SALESFORCE_TASK_POLL_AGE_SECONDS.set_function(lambda: time.monotonic() - polled[0])

    async def run(self) -> None:
        while not self.stopping.is_set():
            if not self._check_enabled():
                await self.wait(OFF_CHECK_S)  # the positions wait where they are
                continue
            try:
                await retrying_step(
                    self.cycle,
                    what="opt-out poll",
                    stop=self.stopping,
                    running=self._enabled,
                    give_up_on=(QuotaExhausted,),
                )
            except QuotaExhausted as exc:
                log.warning("Salesforce API budget: %s; pausing %.0f s", str(exc), exc.retry_after)
                await self.wait(exc.retry_after)
                continue
            except Interrupted:
                continue  # stopping, or every stream turned off: the loop's checks say which
            except Rejected as exc:  # INVALID_FIELD: the admin's field is not in the org;
                # INVALID_QUERY_LOCATOR: a page's cursor expired. The next poll starts over.
                log.error(
                    "opt-out poll refused by Salesforce (%s): %s; an INVALID_FIELD "
                    "means the admin setting unsubscribe_field names no field of the "
                    "object; polling again from the checkpoint in %.0f s",
                    exc.code,
                    str(exc),
                    self.poll_interval_s,
                )
            await self.wait(self.poll_interval_s)

    async def cycle(self) -> None:
        """One poll of each object the admin settings name, in the field they name, and
        of the Tasks while reminder tasks sync."""
        admin = self.admin()
        if admin.unsubscribe_sync:
            for sobject in admin.unsubscribe_objects:
                stream = optout_stream(sobject, admin.unsubscribe_field)
                await self.poller.poll(stream, partial(self._publish, admin.unsubscribe_field))
        if _tasks_on(admin):
            stream = task_stream()
            await self.poller.poll(stream, self._publish_tasks)
            self._tasks_polled[0] = time.monotonic()
            await self.poller.deletions(stream, self._publish_deleted, _count_gap)

    def _publish_tasks(self, stream: Stream, rows: Sequence[Row]) -> int:
        mine = [r for r in rows if r.get("LastModifiedById") == self.poller.client.user_id]
        engine = self.poller.store.engine
        synced = reminder_tasks.synced(
            engine, [str(r.get(EXTERNAL_ID) or "") for r in mine], [str(r["Id"]) for r in mine]
        )
        learnt = {
            str(r[EXTERNAL_ID]): to18(str(r["Id"]))
            for r in mine
            if r.get(EXTERNAL_ID) and synced.get(str(r[EXTERNAL_ID]), {}).get("Id", "") is None
        }
        if learnt:
            reminder_tasks.record_task_ids(engine, learnt, datetime.now(UTC))
        records, skipped = tasks(rows, self.poller.client.user_id, synced)
        for reason, n in skipped.items():
            SKIPPED.labels(WORKER, reason).inc(n)
        return self._send_tasks(records)

    def _publish_deleted(self, stream: Stream, items: Sequence[dict[str, Any]]) -> int:
        return self._send_tasks([deleted_task(i) for i in items])

    def _send_tasks(self, records: Sequence[dict[str, Any]]) -> int:
        count = self.poller.publisher.publish(
            SALESFORCE_TASKS, RECORD_OF[SALESFORCE_TASKS], ((r["sfdc_id"], r) for r in records)
        )
        RECORDS_PUBLISHED.labels(WORKER, SALESFORCE_TASKS).inc(count)
        self.published += count
        return count

    def _publish(self, field: str, stream: Stream, rows: Sequence[Row]) -> int:
        poller = self.poller
        written = written_optouts(poller.store.engine, field, [str(r["Id"]) for r in rows])
        records, skipped = optouts(stream.sobject, field, rows, poller.client.user_id, written)
        count = poller.publisher.publish(
            SALESFORCE_OPTOUTS, RECORD_OF[SALESFORCE_OPTOUTS], ((r["sfdc_id"], r) for r in records)
        )
        RECORDS_PUBLISHED.labels(WORKER, SALESFORCE_OPTOUTS).inc(count)
        for reason, n in skipped.items():
            SKIPPED.labels(WORKER, reason).inc(n)
        self.published += count
        return count

    def _enabled(self) -> bool:
        admin = self.admin()
        return admin.unsubscribe_sync or _tasks_on(admin)

    def _check_enabled(self) -> bool:
        enabled = self._enabled()
        if enabled != self._was_enabled:
            SOURCE_ENABLED.labels(WORKER).set(int(enabled))
            log.info(
                "unsubscribe and reminder-task sync are %s",
                "on: polling from the checkpoints"
                if enabled
                else "off (admin settings unsubscribe_sync, reminder_task_sync): waiting",
            )
            self._was_enabled = enabled
        return enabled

    async def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`, waking at once on shutdown; True when stopping."""
        if seconds > 0 and not self.stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), seconds)
        return self.stopping.is_set()


def _count_gap(stream: Stream, _reason: str) -> None:
    """A deletion window lost to the recycle bin (the poller logged it): counted, so an
    alert or a person can start a full reconciliation; nothing is guessed."""
    SALESFORCE_DELETION_GAPS.labels(stream.sobject).inc()


def _tasks_on(admin: AdminSettings) -> bool:
    return admin.reminder_task_sync and admin.salesforce_log_reminder_tasks


def validate(settings: Settings) -> tuple[str, str, str]:
    """(Salesforce URL, Kafka, registry), or a one-line `ConfigError` naming the variable."""
    what = f"worker {WORKER}"
    url = require(settings.salesforce_url, "ACTIONS_SYNC_SALESFORCE_URL", what)
    return (url, *require_broker(settings, what))


def run(settings: Settings) -> None:
    """`actions-sync worker salesforce-source`: follow opt-outs until SIGTERM."""
    _, kafka, registry = validate(settings)
    serve_metrics(settings.metrics_host, settings.metrics_port)

    async def follow() -> None:
        async with _poller(settings, kafka, registry) as poller:
            with LiveSettings(
                poller.store.engine, kafka, replication=settings.replication_factor
            ) as live:
                source = OptOutSource(poller, live.current, settings.salesforce_poll_interval_s)
                loop = asyncio.get_running_loop()
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.add_signal_handler(sig, source.stopping.set)
                await source.run()

    asyncio.run(follow())


@contextlib.asynccontextmanager
async def _poller(settings: Settings, kafka: str, registry_url: str) -> AsyncIterator[Poller]:
    ensure_topics(
        kafka,
        specs(
            (SALESFORCE_OPTOUTS, SALESFORCE_TASKS), settings.partitions, settings.replication_factor
        ),
    )
    # The sink's budget keeper and limits; a reader's client retries a failed call.
    client = sink.client_from(settings, max_attempts=CALL_ATTEMPTS)
    with contextlib.ExitStack() as closing:
        store = closing.enter_context(Store(settings.database_url))
        store.migrate()
        registry = RegistryClient(registry_url)
        closing.callback(registry.close)
        publisher = Publisher(kafka, registry)
        try:
            await client.auth.get()  # bad credentials fail before the first poll
            yield Poller(
                client,
                store,
                publisher,
                WORKER,
                timedelta(seconds=settings.salesforce_lookback_s),
                deleted_every=timedelta(seconds=settings.salesforce_deleted_every_s),
            )
            publisher.flush()
        finally:
            await client.aclose()
