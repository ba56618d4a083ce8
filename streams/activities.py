"""The activity router: `actions.sales.activities` -> outbound Marketo activities and
Salesforce Tasks (SPEC S4, S7, S8), as the live admin settings allow.

Each batch is decoded and checked, joined with its people from the store, routed by the
pure rules of `streams.rules.activities`, and published; the handler returns (and faust
commits the offsets) only after the broker acknowledged every outbound record, parked
record and dead letter. A retried batch publishes again: both sinks are idempotent by
activity id (Salesforce upserts by ActionsSync_Id__c, the Marketo sink keeps a ledger).

An activity whose person is not in the store yet (the people sync may lag behind Actions)
is parked in the store and retried every `ACTIONS_SYNC_ACTIVITIES_RETRY_S` by a
background sweeper, until the person arrives or `ACTIONS_SYNC_ACTIVITIES_PARK_S` passed:
then it is dead-lettered `person_unknown` with its original position.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from actions_sync.admin.model import AdminSettings
from actions_sync.dead_letter import DeadLetter, DeadLetterProducer
from actions_sync.errors import Skippable
from actions_sync.metrics import ACTIVITIES_PARKED, ACTIVITIES_ROUTED
from actions_sync.periodic import Periodic
from actions_sync.publish import Publisher
from actions_sync.serialization import FastDeserializer, RegistryClient, Serializer
from actions_sync.settings import Settings
from actions_sync.store import Store
from actions_sync.store import parked as parking
from actions_sync.topics import (
    OUTBOUND_MARKETO_ACTIVITIES,
    OUTBOUND_SALESFORCE_TASKS,
    RECORD_OF,
    SALES_ACTIVITIES,
)
from streams.app import Decode, Wiring, run_publishing_agent
from streams.batch import RawRecord, split
from streams.rules import activities as rules

__all__ = ["WORKER", "ActivityRouter", "run", "sweeper"]

WORKER = "activities"
log = logging.getLogger(__name__)


@dataclass
class Outbound:
    """What one batch (or one sweep) sends, and what it counts once that is durable (a
    batch retried would otherwise be counted twice)."""

    marketo: list[tuple[bytes | None, bytes | None]] = field(default_factory=list)
    salesforce: list[tuple[bytes | None, bytes | None]] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    parked: list[parking.Parked] = field(default_factory=list)
    routed: Counter[tuple[str, str]] = field(default_factory=Counter)  # (destination, outcome)
    parking: Counter[str] = field(default_factory=Counter)  # outcome of parked activities

    def count(self) -> None:
        for (destination, outcome), n in self.routed.items():
            ACTIVITIES_ROUTED.labels(destination, outcome).inc(n)
        for outcome, n in self.parking.items():
            ACTIVITIES_PARKED.labels(outcome).inc(n)


class ActivityRouter:
    """The batch handler; also retries parked activities (`retry_parked`)."""

    def __init__(
        self,
        store: Store,
        decode: Decode,
        dead_letters: DeadLetterProducer,
        publisher: Publisher,
        registry: RegistryClient,
        settings: Callable[[], AdminSettings],
        park_s: float,
        retry_s: float,
        future_skew_s: float,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.decode = decode
        self.dead_letters = dead_letters
        self.publisher = publisher
        self.encode_activity = Serializer(
            registry, OUTBOUND_MARKETO_ACTIVITIES, RECORD_OF[OUTBOUND_MARKETO_ACTIVITIES]
        )
        self.encode_task = Serializer(
            registry, OUTBOUND_SALESFORCE_TASKS, RECORD_OF[OUTBOUND_SALESFORCE_TASKS]
        )
        self.settings = settings
        self.park_s = park_s
        self.retry_s = retry_s
        self.now = now
        self.future_skew = timedelta(seconds=future_skew_s)
        # The sweeper thread and the batch thread share the producers: one at a time.
        self._lock = threading.Lock()

    def __call__(self, records: Sequence[RawRecord]) -> None:
        batch = split(
            records, self.decode, partial(rules.check, latest=self.now() + self.future_skew)
        )
        people = self.store.people_by_id([a["marketo_id"] for _, a in batch.good])
        settings = self.settings()  # one snapshot per batch: every record sees the same
        out = Outbound(dead=batch.dead)
        for raw, activity in batch.good:
            person = people.get(activity["marketo_id"])
            if person is None:
                out.parked.append(
                    parking.Parked(
                        rules.activity_id(activity),
                        activity["marketo_id"],
                        raw.topic,
                        raw.partition,
                        raw.offset,
                        raw.key,
                        raw.value,
                        self.now(),
                    )
                )
            else:
                self._route(raw, activity, person, settings, out)
        with self._lock:
            self._emit(out)
        out.count()

    def _route(
        self,
        raw: RawRecord,
        activity: dict[str, Any],
        person: dict[str, Any],
        settings: AdminSettings,
        out: Outbound,
    ) -> None:
        try:
            route = rules.route(activity, person, settings)
            # Encoded here, one by one: a record the schema refuses is this record's
            # problem (dead letter), not a reason to retry the whole batch forever.
            marketo = self.encode_activity(route.marketo)
            task = None if route.salesforce is None else self.encode_task(route.salesforce)
        except Skippable as exc:
            out.dead.append(raw.dead(exc))
            return
        except Exception as exc:  # a rule bug on one record must not stop the stream
            log.exception("routing %s@%d failed", raw.topic, raw.offset)
            out.dead.append(raw.dead(exc, stage="route"))
            return
        out.marketo.append((str(activity["marketo_id"]).encode(), marketo))
        out.routed["marketo", "sent"] += 1
        if task is not None:
            out.salesforce.append((rules.activity_id(activity).encode(), task))
            out.routed["salesforce", "sent"] += 1
        elif route.not_logged:
            out.routed["salesforce", route.not_logged] += 1

    def _emit(self, out: Outbound) -> None:
        """Outbound records first, then parking and dead letters: all durable on return."""
        self.publisher.publish_raw(OUTBOUND_MARKETO_ACTIVITIES, out.marketo)
        self.publisher.publish_raw(OUTBOUND_SALESFORCE_TASKS, out.salesforce)
        self.publisher.flush()
        if out.parked:
            parking.park(self.store.engine, out.parked, self.retry_s)
            out.parking["parked"] += len(out.parked)
        if out.dead:
            self.dead_letters.send(out.dead)

    def retry_parked(self) -> int:
        """Route parked activities whose person arrived; dead-letter the expired ones.
        Returns how many left the parking."""
        now = self.now()
        claimed = parking.claim_due(self.store.engine, now, lease_s=self.retry_s)
        if not claimed:
            return 0
        people = self.store.people_by_id([p.marketo_id for p in claimed])
        settings = self.settings()
        out, done = Outbound(), []
        for item in claimed:
            raw = RawRecord(
                item.source_topic, item.source_partition, item.source_offset, item.key, item.value
            )
            person = people.get(item.marketo_id)
            if person is not None:
                try:
                    self._route(raw, self.decode(raw.value), person, settings, out)
                except Skippable as exc:  # it decoded when parked; a registry change since?
                    out.dead.append(raw.dead(exc))
                out.parking["routed"] += 1
            elif (now - item.parked_at).total_seconds() >= self.park_s:
                out.dead.append(
                    raw.dead(
                        rules.PersonUnknown(
                            f"person_unknown: Marketo ID {item.marketo_id} not in the Actions store"
                            f" after {self.park_s:.0f}s"
                        )
                    )
                )
                out.parking["expired"] += 1
            else:
                continue
            done.append(item.activity_id)
        with self._lock:
            self._emit(out)
            parking.remove(self.store.engine, done)
        out.count()
        return len(done)


def sweeper(router: ActivityRouter, interval_s: float) -> Periodic:
    """Runs `router.retry_parked()` every `interval_s`, draining a backlog without waiting
    (store or broker away: the rows stay parked, the next round tries again)."""

    def step() -> None:
        while router.retry_parked():
            pass

    return Periodic("parked-sweeper", interval_s, step, failed="retrying parked activities failed")


def run(settings: Settings) -> None:
    """`actions-sync worker activities`."""

    def build(w: Wiring) -> tuple[ActivityRouter, list[Periodic]]:
        router = ActivityRouter(
            w.store,
            FastDeserializer(w.registry, RECORD_OF[SALES_ACTIVITIES]),
            w.dead_letters,
            w.publisher,
            w.registry,
            w.admin,
            settings.activities_park_s,
            settings.activities_retry_s,
            settings.future_skew_s,
        )
        return router, [sweeper(router, settings.activities_retry_s)]

    run_publishing_agent(
        settings,
        WORKER,
        (OUTBOUND_MARKETO_ACTIVITIES, OUTBOUND_SALESFORCE_TASKS),
        build,
        [(SALES_ACTIVITIES, lambda router, decode: router)],
        batch_size=settings.router_batch_size,
    )
