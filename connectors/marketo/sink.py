"""The Marketo activities sink: `outbound.marketo.activities` -> custom activities (S7).

Exactly-once effect on an API that neither de-duplicates nor updates: every activity goes
through the delivery ledger (`actions_sync.store.ledger`).

1. Already accepted -> skipped (a redelivery after a crash, a DLQ replay).
2. Pending -> once older than the settle time, reconciled against Marketo (read back,
   matched by the ledger attribute): found -> accepted, missing -> sent again; younger
   -> retried later (the call that wrote it may still land). A read-back that fails is a
   failed call for its records, like a failed send.
3. New -> claimed pending (durable), sent 300 per call in ONE attempt, then accepted
   with Marketo's id, or released when Marketo provably did nothing (606/615 limits,
   607 quota, a refused connection, a whole-call 1003/609...), or left pending when the
   answer is unknown (timeout, 5xx, 604/608/611/713): step 2 decides later.

Per-record `skipped` results (1004 lead not found, 1003 invalid, 1006 unknown attribute)
are dead-lettered with their reason and released, so a replay after a fix sends them.

Retries are the runner's (`connectors.runner`): this sink's client makes one attempt per
call (`client_from`), and every call is made once per delivery.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar
from uuid import uuid4

import httpx

from actions_sync.clock import Clock, SystemClock
from actions_sync.errors import Backpressure, Retriable
from actions_sync.settings import Settings
from actions_sync.store import Store
from actions_sync.store.ledger import ACCEPTED, Accepted, Entry, Ledger
from actions_sync.topics import OUTBOUND_MARKETO_ACTIVITIES
from connectors.errors import Rejected
from connectors.http import ONE_ATTEMPT
from connectors.marketo.client import BATCH_MAX, MarketoClient, MarketoLimits
from connectors.marketo.outbound import activity_input, skip_reason
from connectors.marketo.reconcile import find_written
from connectors.marketo.registration import register_types
from connectors.outcome import (
    Counts,
    Outcome,
    accepted,
    call_failed,
    fan_out,
    rejected,
    retry,
    skipped,
)
from connectors.runner import RunnerConfig
from connectors.sink_worker import require, require_broker, run_sink

__all__ = ["WORKER", "ActivitySink", "Timing", "run"]

WORKER = "marketo-sink"
log = logging.getLogger(__name__)
Record = dict[str, Any]
T = TypeVar("T")


@dataclass(frozen=True)
class Timing:
    settle_s: float = 60.0  # an unanswered write may land this long after it was sent
    skew_s: float = 30.0  # our clock vs Marketo's, when reading activities back
    retention_s: float = 30 * 86400.0  # accepted ledger entries are kept this long
    prune_every_s: float = 3600.0


class ActivitySink:
    """`Destination` of Marketo custom activities (see `connectors.runner`)."""

    def __init__(
        self,
        client: MarketoClient,
        ledger: Ledger,
        timing: Timing | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.client = client
        self.ledger = ledger
        self.timing = timing or Timing()
        self.clock = clock or SystemClock()
        self.type_ids: dict[str, int] = {}
        self._pruned_at: datetime | None = None

    async def start(self) -> None:
        self.type_ids = await register_types(self.client)

    async def deliver(self, records: Sequence[Record]) -> list[Outcome]:
        await self._prune()
        out: list[Outcome | None] = [None] * len(records)
        first: dict[str, int] = {}
        for i, record in enumerate(records):
            if record["type"] not in self.type_ids:
                out[i] = rejected(Rejected(f"unknown sales activity type {record['type']!r}"))
            elif record["activity_id"] in first:
                continue  # the same activity twice in a batch: it shares the first's fate
            else:
                first[record["activity_id"]] = i
        fresh = await self._from_ledger([records[i] for i in first.values()], out, first)
        for i, outcome in zip(
            fresh, await fan_out([records[i] for i in fresh], BATCH_MAX, self._send), strict=True
        ):
            out[i] = outcome
        return [
            o if o is not None else out[first[r["activity_id"]]] or skipped()
            for o, r in zip(out, records, strict=True)
        ]

    async def _prune(self) -> None:
        """Now and then, forget what Marketo accepted longer ago than the retention."""
        now = self.clock.now()
        if (
            self._pruned_at is not None
            and (now - self._pruned_at).total_seconds() < self.timing.prune_every_s
        ):
            return
        self._pruned_at = now
        gone = await _off_loop(self.ledger.prune, now - timedelta(seconds=self.timing.retention_s))
        if gone:
            log.info(
                "ledger: %d accepted entries older than %.0f days pruned",
                gone,
                self.timing.retention_s / 86400,
            )

    async def _from_ledger(
        self, records: list[Record], out: list[Outcome | None], first: dict[str, int]
    ) -> list[int]:
        """Resolve what the ledger knows; answer the indexes still to send."""
        entries = await _off_loop(self.ledger.entries, [r["activity_id"] for r in records])
        now = self.clock.now()
        due: list[Entry] = []
        for record in records:
            i, entry = first[record["activity_id"]], entries.get(record["activity_id"])
            if entry is None:
                continue
            if entry.state == ACCEPTED:
                out[i] = skipped()
            elif (wait := self.timing.settle_s - (now - entry.sent_at).total_seconds()) > 0:
                out[i] = retry(
                    Backpressure("an unanswered write may still land: reconciling it later", wait),
                    Counts.NOTHING,
                )
            else:
                due.append(entry)
        await self._reconcile(due, out, first, now)
        return [first[r["activity_id"]] for r in records if out[first[r["activity_id"]]] is None]

    async def _reconcile(
        self, due: list[Entry], out: list[Outcome | None], first: dict[str, int], now: datetime
    ) -> None:
        if not due:
            return
        try:
            written = await find_written(self.client, due, self.timing.skew_s)
        except Retriable as exc:  # Marketo did not answer: try again in the next round
            for entry in due:
                out[first[entry.activity_id]] = call_failed(exc)
            return
        await _off_loop(
            self.ledger.accept,
            [
                Accepted(e.activity_id, e.lead_id, e.type_id, *written[e.activity_id])
                for e in due
                if e.activity_id in written
            ],
            now,
        )
        await _off_loop(
            self.ledger.release,
            [(e.activity_id, e.claim) for e in due if e.activity_id not in written],
        )
        for entry in due:
            if entry.activity_id in written:
                out[first[entry.activity_id]] = skipped()

    async def _send(self, records: Sequence[Record]) -> list[Outcome]:
        claim = uuid4().hex
        rows = [(r["activity_id"], r["lead_id"], self.type_ids[r["type"]]) for r in records]
        held = await _off_loop(self.ledger.claim, rows, claim, self.clock.now())
        mine = [r for r in records if r["activity_id"] in held]
        try:
            results = (
                await self.client.add_custom_activities_once(
                    [activity_input(r, self.type_ids[r["type"]]) for r in mine]
                )
                if mine
                else []
            )
        except (Backpressure, Rejected):  # refused before anything was written
            await _off_loop(self.ledger.release, [(r["activity_id"], claim) for r in mine])
            raise
        except Retriable as exc:
            if isinstance(exc.__cause__, httpx.ConnectError):  # never reached Marketo
                await _off_loop(self.ledger.release, [(r["activity_id"], claim) for r in mine])
            raise  # otherwise unknown: stays pending, reconciled after the settle time
        by_id = dict(zip((r["activity_id"] for r in mine), results, strict=True))
        await _off_loop(self._record, mine, by_id, claim)
        return [self._outcome(by_id.get(r["activity_id"])) for r in records]

    def _record(self, mine: list[Record], results: dict[str, dict[str, Any]], claim: str) -> None:
        added = [
            Accepted(
                r["activity_id"],
                r["lead_id"],
                self.type_ids[r["type"]],
                results[r["activity_id"]].get("id"),
                results[r["activity_id"]].get("marketoGUID"),
            )
            for r in mine
            if results[r["activity_id"]].get("status") == "added"
        ]
        self.ledger.accept(added, self.clock.now())
        self.ledger.release(
            (r["activity_id"], claim)
            for r in mine
            if results[r["activity_id"]].get("status") != "added"
        )

    @staticmethod
    def _outcome(result: dict[str, Any] | None) -> Outcome:
        if result is None:  # another worker holds its claim: look again later
            return retry(Retriable("claimed by another send"))
        if result.get("status") == "added":
            return accepted()
        code, message = skip_reason(result)
        # 1004 lead not found, 1003 invalid data or type, 1006 unknown attribute: record
        # errors, dead-lettered with Marketo's reason.
        return rejected(Rejected(f"Marketo skipped the activity: {code} {message}", code))

    async def aclose(self) -> None:
        await self.client.aclose()


async def _off_loop(call: Callable[..., T], *args: Any) -> T:
    """Run a ledger transaction in a thread: a commit must not hold up the event loop
    between a call's rate-limit slot and its request (the window would drift past
    Marketo's by the commit time), nor the other calls' answers."""
    return await asyncio.to_thread(call, *args)


def client_from(settings: Settings) -> MarketoClient:
    """The sink's client: one attempt per call (the runner retries the delivery)."""
    url = require(settings.marketo_url, "ACTIONS_SYNC_MARKETO_URL", f"worker {WORKER}")
    limits = MarketoLimits(
        calls_per_window=settings.marketo_calls_per_window,
        max_in_flight=settings.marketo_max_in_flight,
    )
    return MarketoClient(
        url,
        settings.marketo_client_id,
        settings.marketo_client_secret.get_secret_value(),
        limits,
        timeout_s=settings.api_timeout_s,
        max_attempts=ONE_ATTEMPT,
    )


def run(settings: Settings) -> None:
    """`actions-sync worker marketo-sink`."""
    require(settings.marketo_url, "ACTIONS_SYNC_MARKETO_URL", f"worker {WORKER}")
    require_broker(settings, f"worker {WORKER}")  # before the store is touched
    store = Store(settings.database_url)
    try:
        store.migrate()
        timing = Timing(
            settings.marketo_settle_s,
            settings.marketo_clock_skew_s,
            settings.marketo_ledger_retention_days * 86400,
        )
        config = RunnerConfig(
            WORKER,
            OUTBOUND_MARKETO_ACTIVITIES,
            batch_size=settings.marketo_sink_batch_size,
            batch_within_s=settings.sink_batch_within_s,
            record_attempts=settings.sink_record_attempts,
            call_attempts=settings.sink_call_attempts or None,
        )
        run_sink(
            settings,
            config,
            "MarketoActivityOut",
            lambda: ActivitySink(client_from(settings), Ledger(store.engine), timing),
        )
    finally:
        store.close()
