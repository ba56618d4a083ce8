"""The unsubscribe agent (SPEC S9): `actions.unsubscribes` and `salesforce.optouts` -> the
store's `unsubscribes` and `outbound.salesforce.optouts`, as the live admin settings allow.

- An `Unsubscribe` captured in Actions is stored, then its opt-outs (one per Lead/Contact
  target of `streams.rules.unsubscribes.push`) are published at once for the opt-out sink,
  whatever the activity-logging settings say. One that cannot go (sync off, person not in
  the store, no Salesforce id) is stored with the reason and counted
  (`actions_sync_unsubscribes_unsynced_total`), never failed.
- A `SalesforceOptOut` (a person ticked the field in Salesforce) finds its people by
  `persons.sfdc_lead_id` / `sfdc_contact_id` (15 or 18 characters) and is stored for each
  with source SALESFORCE_SYNC. One for a record no person in the store has is *held*
  (`salesforce_optouts_held`), not dead-lettered: Salesforce records reach Actions
  through Marketo's own sync and the people sync, minutes later, so an opt-out often
  arrives before its person; held, it applies itself when the person arrives, where a
  dead letter would wait for someone to replay it. Held opt-outs are counted
  (`actions_sync_salesforce_optouts_held_total`).
- The catch-up (`catch_up`, every `ACTIONS_SYNC_UNSUBSCRIBES_RETRY_S`) pushes what was
  stored and never pushed once it can go — the sync turned back on, the person arrived or
  gained a Salesforce id — and applies held opt-outs the same way. "Catching up" means
  exactly that: nothing stored while the sync was off is lost, and what was pushed is not
  pushed again.

The full reconciliation runs daily in this worker at the admin's `unsubscribe_reconcile_at`
(`reconcile_daily`), and on demand with `actions-sync reconcile unsubscribes`.

Offsets are committed after the store and the broker hold the effect; a redelivered
batch stores nothing new and publishes again, which the sink absorbs (its write record).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from actions_sync.admin.model import AdminSettings
from actions_sync.dead_letter import DeadLetter, DeadLetterProducer
from actions_sync.metrics import (
    SALESFORCE_OPTOUTS_HELD,
    UNSUBSCRIBES_SYNCED,
    UNSUBSCRIBES_UNSYNCED,
)
from actions_sync.periodic import Periodic
from actions_sync.publish import Publisher
from actions_sync.serialization import RegistryClient, Serializer
from actions_sync.settings import Settings
from actions_sync.store import Store
from actions_sync.store import unsubscribes as table
from actions_sync.topics import (
    OUTBOUND_SALESFORCE_OPTOUTS,
    RECORD_OF,
    SALESFORCE_OPTOUTS,
    UNSUBSCRIBES,
)
from connectors.salesforce.ids import to18
from streams import unsubscribe_reconcile as reconciliation
from streams.app import Decode, Handler, Wiring, run_publishing_agent
from streams.batch import RawRecord, split
from streams.rules import unsubscribes as rules

__all__ = ["WORKER", "UnsubscribeAgent", "catch_up", "reconcile_daily", "run"]

WORKER = "unsubscribes"
CATCH_UP_PAGE = 500
log = logging.getLogger(__name__)

Record = Mapping[str, Any]


@dataclass
class _Out:
    writes: list[tuple[bytes | None, bytes | None]] = field(default_factory=list)
    pushed: dict[int, str | None] = field(default_factory=dict)  # Marketo id -> why not
    dead: list[DeadLetter] = field(default_factory=list)


class UnsubscribeAgent:
    """Both batch handlers (`unsubscribes`, `optouts`) and the catch-up (`catch_up`)."""

    def __init__(
        self,
        store: Store,
        publisher: Publisher,
        registry: RegistryClient,
        settings: Callable[[], AdminSettings],
        dead_letters: DeadLetterProducer,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.encode = Serializer(
            registry, OUTBOUND_SALESFORCE_OPTOUTS, RECORD_OF[OUTBOUND_SALESFORCE_OPTOUTS]
        )
        self.settings = settings
        self.dead_letters = dead_letters
        self.now = now
        # Two handler threads and the catch-up share the producer and the store rows.
        self._lock = threading.Lock()

    # -- Actions -> Salesforce ------------------------------------------------------------

    def unsubscribes(self, decode: Decode) -> Handler:
        def handle(records: Sequence[RawRecord]) -> None:
            batch = split(records, decode, rules.check_unsubscribe)
            with self._lock:
                self._stored([u for _, u in batch.good], batch.dead)

        return handle

    def _stored(self, unsubscribes: Sequence[Record], dead: list[DeadLetter]) -> None:
        rows = [
            {
                "marketo_id": u["marketo_id"],
                "email": u["email"],
                "source": u["source"],
                "occurred_at": u["occurred_at"],
                "event_id": str(u["event_id"]),
            }
            for u in unsubscribes
        ]
        table.store_unsubscribes(self.store.engine, rows)
        out = _Out(dead=dead)
        self._plan(unsubscribes, out)
        self._emit(out)

    def _plan(self, unsubscribes: Sequence[Record], out: _Out, fresh: bool = True) -> None:
        """Opt-out writes of `unsubscribes` into `out`; `fresh`: just arrived (an unsynced
        one is counted once, not at every catch-up)."""
        settings = self.settings()  # one snapshot per batch: every record sees the same
        people = self.store.people_by_id([u["marketo_id"] for u in unsubscribes])
        for u in unsubscribes:
            plan = rules.push(u, people.get(u["marketo_id"]), settings)
            if plan.unsynced is not None:
                if fresh:
                    UNSUBSCRIBES_UNSYNCED.labels(plan.unsynced).inc()
                out.pushed[u["marketo_id"]] = plan.unsynced
                continue
            if not plan.targets:
                continue  # came from Salesforce
            origin = f"unsubscribe:{u['event_id']}"
            for target in plan.targets:
                out.writes.append(
                    (
                        target.sfdc_id.encode(),
                        self.encode(
                            rules.optout_write(target, u["marketo_id"], u["occurred_at"], origin)
                        ),
                    )
                )
            out.pushed[u["marketo_id"]] = None
            UNSUBSCRIBES_SYNCED.labels("to_salesforce").inc()

    def _emit(self, out: _Out) -> None:
        """Opt-outs on the topic first, then what the rows say of them, then dead letters."""
        if out.writes:
            self.publisher.publish_raw(OUTBOUND_SALESFORCE_OPTOUTS, out.writes)
            self.publisher.flush()
        table.mark_pushed(self.store.engine, out.pushed, self.now())
        if out.dead:
            self.dead_letters.send(out.dead)

    # -- Salesforce -> Actions ------------------------------------------------------------

    def optouts(self, decode: Decode) -> Handler:
        def handle(records: Sequence[RawRecord]) -> None:
            batch = split(records, decode, rules.check_optout)
            with self._lock:
                self._pulled([o for _, o in batch.good])
                if batch.dead:
                    self.dead_letters.send(batch.dead)

        return handle

    def _pulled(self, optouts: Sequence[Record], fresh: bool = True) -> set[tuple[str, str]]:
        """Apply the opt-outs that can be, hold the others; the (id, field) applied or
        ignored (no longer to hold). `fresh`: just arrived (counted when held)."""
        settings = self.settings()
        now = self.now()
        apply, held, done = [], [], set()
        for o in optouts:
            reason = rules.pull(o, settings)
            key = (to18(o["sfdc_id"]), o["field"])
            if reason is None:
                apply.append(o)
            elif reason == "sync_off":
                held.append(_held(o, reason, now))
            else:
                SALESFORCE_OPTOUTS_HELD.labels(reason).inc()
                done.add(key)
        people = table.people_by_salesforce_id(
            self.store.engine, [to18(o["sfdc_id"]) for o in apply]
        )
        rows = []
        for o in apply:
            found = people.get(to18(o["sfdc_id"]), [])
            if not found:
                held.append(_held(o, "salesforce_record_unknown", now))
                continue
            rows += [rules.from_salesforce(o, person) for person in found]
            done.add((to18(o["sfdc_id"]), o["field"]))
        new = table.store_unsubscribes(self.store.engine, rows)
        UNSUBSCRIBES_SYNCED.labels("from_salesforce").inc(len(new))
        table.hold_optouts(self.store.engine, held)
        for h in held if fresh else ():
            SALESFORCE_OPTOUTS_HELD.labels(h.reason).inc()
        return done

    # -- catch-up -------------------------------------------------------------------------

    def catch_up(self) -> int:
        """Push what can go now and apply held opt-outs that can be; how many moved."""
        settings = self.settings()
        if not settings.unsubscribe_sync:
            return 0
        columns = [rules.ID_COLUMN[o] for o in settings.unsubscribe_objects]
        moved, after = 0, 0
        while True:
            out = _Out()
            # The page is read under the lock: read outside, it could hold a row that a
            # handler was storing, pushing and marking at that moment, pushed twice then.
            with self._lock:
                page = table.to_push(self.store.engine, columns, after, CATCH_UP_PAGE)
                if not page:
                    break
                self._plan(page, out, fresh=False)
                self._emit(out)
            moved += sum(1 for reason in out.pushed.values() if reason is None)
            after = page[-1]["marketo_id"]
        position = ("", "")
        while held := table.held(self.store.engine, CATCH_UP_PAGE, position):
            with self._lock:
                done = self._pulled([h.as_optout() for h in held], fresh=False)
                table.drop_held(self.store.engine, done)
            moved += len(done)
            position = (held[-1].sfdc_id, held[-1].field)
        return moved


def _held(optout: Record, reason: str, now: datetime) -> table.HeldOptOut:
    return table.HeldOptOut(
        to18(optout["sfdc_id"]),
        optout["field"],
        optout["sobject"],
        optout.get("email"),
        str(optout["event_id"]),
        optout["system_modstamp"],
        reason,
        now,
    )


def catch_up(agent: UnsubscribeAgent, interval_s: float) -> Periodic:
    """Runs `agent.catch_up()` every `interval_s` (store or broker away: everything stays
    where it is, the next round tries again)."""

    def step() -> None:
        if moved := agent.catch_up():
            log.info("catch-up: %d unsubscribes/opt-outs synced", moved)

    return Periodic("unsubscribes-catch-up", interval_s, step, failed="unsubscribe catch-up failed")


def reconcile_daily(
    settings: Settings,
    store: Store,
    admin: Callable[[], AdminSettings],
    check_s: float = 60.0,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Periodic:
    """Runs the full reconciliation (`streams.unsubscribe_reconcile`) when the admin's
    `unsubscribe_reconcile_at` comes, or at once when the last run did not finish (a
    crash: it resumes from its checkpoint), checked every `check_s`. Two worker copies
    may both start it; every step is idempotent (stored unsubscribes stay, the sink skips
    what was written)."""

    def due() -> bool:
        saved = store.checkpoint(reconciliation.CHECKPOINT) or {}
        if saved and saved.get("phase") != "done":
            return True
        finished = saved.get("finished_at")
        return reconciliation.due(
            admin().unsubscribe_reconcile_at,
            now(),
            datetime.fromisoformat(finished) if finished else None,
        )

    def check() -> None:
        # Salesforce or the store away: the next check resumes it from its checkpoint
        if admin().unsubscribe_sync and due():
            asyncio.run(reconciliation.run_once(settings, store, log.info))

    return Periodic(
        "unsubscribes-reconcile",
        check_s,
        check,
        failed="scheduled unsubscribe reconciliation failed",
    )


def run(settings: Settings) -> None:
    """`actions-sync worker unsubscribes`."""

    def build(w: Wiring) -> tuple[UnsubscribeAgent, list[Periodic]]:
        made = UnsubscribeAgent(w.store, w.publisher, w.registry, w.admin, w.dead_letters)
        jobs = [catch_up(made, settings.unsubscribes_retry_s)]
        if settings.salesforce_url:
            jobs.insert(0, reconcile_daily(settings, w.store, w.admin))
        else:
            log.warning(
                "ACTIONS_SYNC_SALESFORCE_URL is not set: no scheduled unsubscribe "
                "reconciliation in this worker"
            )
        return made, jobs

    run_publishing_agent(
        settings,
        WORKER,
        (OUTBOUND_SALESFORCE_OPTOUTS,),
        build,
        [
            (UNSUBSCRIBES, UnsubscribeAgent.unsubscribes),
            (SALESFORCE_OPTOUTS, UnsubscribeAgent.optouts),
        ],
    )
