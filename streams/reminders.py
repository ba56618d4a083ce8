"""The reminder agent (SPEC S11): `actions.reminder.tasks` and `salesforce.tasks` -> the
store's `reminder_tasks` and `outbound.salesforce.tasks`, under `streams.rules.reminders`.

- Actions -> Salesforce: a `ReminderTask` is resolved against the stored task; what it
  changes is stored and its Salesforce write (only the fields Salesforce does not hold
  yet; all of them, with WhoId/WhatId, for a Task Salesforce never had) is published as a
  `SalesforceTaskOut` upsert by `ActionsSync_Id__c` (= the task id), or a delete.
  A change made before the first enable of `reminder_task_sync` is stored, never pushed.
  With `reminder_task_sync` or `salesforce_log_reminder_tasks` off, changes are stored
  `unpushed`, and the catch-up pushes them once both are on again.
- Salesforce -> Actions: a `SalesforceTask` (the source drops the integration user's own
  writes) finds its task by external id, else by Task id; a Task born in Salesforce
  becomes the task `sf-<Task id>` of the person whose Lead/Contact is its WhoId, if it
  was changed at most 24 h before the first enable or later. The settings do not gate
  this side: the source reads Tasks only while they are on. A deletion older than
  Salesforce's 15-day horizon is reported (logged), not applied.
- The store write is compare-and-set (`revision`): a task resolved by two inputs at once
  is resolved again from what the other stored. Writes are published before the row is
  saved: a crash in between re-resolves the redelivered change to the same write (same
  fields, same `occurred_at`), which the Task sink recognises and does not send again
  (`connectors.salesforce.sink`).
- Each change is counted once its row is saved (`actions_sync_reminder_tasks_synced_total`
  by direction and outcome, `actions_sync_reminder_conflicts_total` by the side that won),
  and each Salesforce change written to Actions is logged at debug (`written to Actions`).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from actions_sync.admin.model import AdminSettings
from actions_sync.dead_letter import DeadLetterProducer
from actions_sync.metrics import REMINDER_CONFLICTS, REMINDER_TASKS_SYNCED
from actions_sync.periodic import Periodic
from actions_sync.publish import Publisher
from actions_sync.serialization import RegistryClient, Serializer
from actions_sync.settings import Settings
from actions_sync.store import Store
from actions_sync.store import reminder_tasks as table
from actions_sync.store.unsubscribes import people_by_salesforce_id
from actions_sync.topics import (
    OUTBOUND_SALESFORCE_TASKS,
    RECORD_OF,
    REMINDER_TASKS,
    SALESFORCE_TASKS,
)
from connectors.salesforce.ids import to18
from streams.app import Decode, Handler, Wiring, run_publishing_agent
from streams.batch import split
from streams.rules import reminders as rules
from streams.rules.activities import who_and_what

__all__ = ["WORKER", "ReminderAgent", "catch_up", "run"]

WORKER = "reminders"
CATCH_UP_PAGE = 500
CAS_ATTEMPTS = 5
SF_BORN = "sf-"  # task id prefix of a Task born in Salesforce
log = logging.getLogger(__name__)

Record = Mapping[str, Any]
Row = dict[str, Any]
# (task id, outcome label, side that won a conflict) of one resolved change
Tally = tuple[str, str, str | None]
Resolved = tuple[list[Row], list[Record], list[Tally]]
TO = {"ACTIONS": "to_salesforce", "SALESFORCE": "to_actions"}
VALUES = ("subject", "status", "priority", "due_date", "details", "deleted")


def state_of(row: Row) -> rules.TaskState:
    """A stored row as the rules see it."""
    stamps = {
        n: rules.Stamp(datetime.fromisoformat(at), side) for n, (at, side) in row["stamps"].items()
    }
    return rules.TaskState(
        {n: row[n] for n in VALUES},
        stamps,
        dict(row["salesforce_synced"]),
        row["written_at"],
        frozenset(row["written"]),
        row["salesforce_version"],
    )


def row_of(state: rules.TaskState, base: Row) -> Row:
    """`base` (the stored row, or a new one's identity) with `state` in it."""
    return (
        base
        | dict(state.values)
        | {
            "salesforce_synced": dict(state.salesforce),
            "stamps": {n: [s.at.isoformat(), s.side] for n, s in state.stamps.items()},
            "written_at": state.written_at,
            "written": sorted(state.written),
        }
    )


def _known(row: Row) -> rules.TaskState | None:
    """The state of a stored (or earlier in the batch resolved) row; None for a new one."""
    return state_of(row) if "stamps" in row else None


def _new_row(task_id: str, marketo_id: int | None) -> Row:
    return {
        "task_id": task_id,
        "marketo_id": marketo_id,
        "sfdc_task_id": None,
        "actions_version": None,
        "salesforce_version": None,
        "unpushed": False,
        "revision": 0,
    }


class ReminderAgent:
    """Both batch handlers (`tasks`, `salesforce_tasks`) and the catch-up (`catch_up`)."""

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
            registry, OUTBOUND_SALESFORCE_TASKS, RECORD_OF[OUTBOUND_SALESFORCE_TASKS]
        )
        self.settings = settings
        self.dead_letters = dead_letters
        self.now = now
        self._enabled_at: datetime | None = None
        # Two handler threads and the catch-up share the producer and the rows.
        self._lock = threading.Lock()

    def enabled_at(self) -> datetime | None:
        """The first enable of `reminder_task_sync` (it never moves once found)."""
        if self._enabled_at is None:
            self._enabled_at = table.first_enabled(self.store.engine)
        return self._enabled_at

    # -- Actions -> Salesforce ------------------------------------------------------------

    def tasks(self, decode: Decode) -> Handler:
        def handle(records: Sequence[Any]) -> None:
            batch = split(records, decode, rules.check_reminder)
            with self._lock:
                self._resolve_and_save([t for _, t in batch.good], self._from_actions, "ACTIONS")
            if batch.dead:
                self.dead_letters.send(batch.dead)

        return handle

    def _from_actions(self, tasks: Sequence[Record]) -> Resolved:
        held = rules.held(self.settings())
        enabled_at = self.enabled_at()
        rows = table.load(self.store.engine, (t["task_id"] for t in tasks))
        people = self.store.people_by_id(list({t["marketo_id"] for t in tasks}))
        changed: dict[str, Row] = {}
        writes: list[Record] = []
        tallies: list[Tally] = []
        for task in tasks:
            task_id = task["task_id"]
            base = (
                changed.get(task_id) or rows.get(task_id) or _new_row(task_id, task["marketo_id"])
            )
            before = _known(base)
            change = rules.actions_change(task)
            out = rules.resolve(before, change)
            if not out.applied:
                tallies.append(
                    (task_id, rules.outcome_of(before, out, "ACTIONS"), _winner(out, "ACTIONS"))
                )
                continue
            pushed = (
                held is None
                and enabled_at is not None
                and rules.pushed_after_enable(change.at, enabled_at)
            )
            unsent = before.salesforce if before else {}
            if pushed and base["unpushed"] and before is not None:
                # earlier changes were stored while off: send what Salesforce lacks
                out = rules.catch_up(
                    dataclasses.replace(
                        out.state,
                        salesforce=unsent,
                        written_at=before.written_at,
                        written=before.written,
                    ),
                    change.at,  # the time of the write: the record's `occurred_at`
                )
            state = out.state
            if pushed:
                extra = self._identity(base, before, people.get(task["marketo_id"]))
                held_ = _in_salesforce(before, extra)
                if (record := rules.task_out(task_id, out, change.at, extra, held_)) is not None:
                    writes.append(record)
                tallies.append(
                    (task_id, rules.outcome_of(before, out, "ACTIONS"), _winner(out, "ACTIONS"))
                )
            else:
                tallies.append((task_id, "held", None))
                state = dataclasses.replace(
                    state,
                    salesforce=unsent,
                    written_at=before.written_at if before else None,
                    written=before.written if before else frozenset(),
                )
            version = max(filter(None, (base["actions_version"], change.at)))
            changed[task_id] = row_of(state, base) | {
                "actions_version": version,
                "unpushed": not pushed and held is not None and enabled_at is not None,
            }
        return list(changed.values()), writes, tallies

    @staticmethod
    def _identity(
        base: Row, before: rules.TaskState | None, person: Record | None
    ) -> dict[str, Any]:
        """WhoId/WhatId for a Task Salesforce does not have yet; the Task Id of one born
        in Salesforce (its external id is written with it)."""
        if base.get("sfdc_task_id") and base["task_id"].startswith(SF_BORN):
            return {"Id": base["sfdc_task_id"]}
        if before is not None and before.salesforce:
            return {}
        who, what = who_and_what(person or {})
        return {"WhoId": who, "WhatId": what}

    # -- Salesforce -> Actions ------------------------------------------------------------

    def salesforce_tasks(self, decode: Decode) -> Handler:
        def handle(records: Sequence[Any]) -> None:
            batch = split(records, decode, rules.check_salesforce_task)
            with self._lock:
                self._resolve_and_save(
                    [t for _, t in batch.good], self._from_salesforce, "SALESFORCE"
                )
            if batch.dead:
                self.dead_letters.send(batch.dead)

        return handle

    def _from_salesforce(self, tasks: Sequence[Record]) -> Resolved:
        # No settings gate here: the source is the gate (it reads Tasks only while both
        # settings are on, and its position waits while they are off). This agent's view
        # of a change lags the source's by up to a refresh, so a gate here dropped the
        # first changes read after an enable, for good (the source had moved past them).
        enabled_at, now = self.enabled_at(), self.now()
        ids = [to18(t["sfdc_id"]) for t in tasks]
        by_id = table.by_salesforce_id(self.store.engine, ids)
        by_task = table.load(
            self.store.engine, (t["external_id"] for t in tasks if t.get("external_id"))
        )
        people = people_by_salesforce_id(
            self.store.engine, [to18(t["who_id"]) for t in tasks if t.get("who_id")]
        )
        rows: dict[str, Row] = {}
        tallies: list[Tally] = []
        for task, sfdc_id in zip(tasks, ids, strict=True):
            change = rules.salesforce_change(task)
            task_id = task.get("external_id") or None
            base = (
                rows.get(task_id or "")
                or by_task.get(task_id or "")
                or next((r for r in rows.values() if r["sfdc_task_id"] == sfdc_id), None)
                or by_id.get(sfdc_id)
            )
            if base is None:
                base = self._born(task, sfdc_id, change, enabled_at, people)
                if base is None:
                    tallies.append(
                        (_task_key(task), "no_op" if task["is_deleted"] else "not_imported", None)
                    )
                    continue
            if task["is_deleted"] and not rules.delete_reaches(change.at, now):
                log.warning(
                    "Task %s deleted at %s, beyond Salesforce's 15-day horizon: "
                    "reported, not applied",
                    sfdc_id,
                    change.at.isoformat(),
                )
                tallies.append((base["task_id"], "delete_too_old", None))
                continue
            before = _known(base)
            out = rules.resolve(before, change)
            tallies.append(
                (
                    base["task_id"],
                    rules.outcome_of(before, out, "SALESFORCE"),
                    _winner(out, "SALESFORCE"),
                )
            )
            if (
                before is not None
                and not out.applied
                and base["sfdc_task_id"] == sfdc_id
                and out.state.salesforce == before.salesforce
                and before.salesforce_at is not None
                and change.at <= before.salesforce_at
            ):
                continue  # an echo or a replay: no store write (a newer one moves the
                # version: an older Actions change is not written over it, S11)
            version = max(filter(None, (base["salesforce_version"], change.at)))
            rows[base["task_id"]] = row_of(out.state, base) | {
                "sfdc_task_id": sfdc_id,
                "salesforce_version": version,
            }
        return list(rows.values()), [], tallies

    def _born(
        self,
        task: Record,
        sfdc_id: str,
        change: rules.Change,
        enabled_at: datetime | None,
        people: Mapping[str, list[dict[str, Any]]],
    ) -> Row | None:
        """The new row of a Task born in Salesforce, or None when it is not imported."""
        if task["is_deleted"]:
            return None
        if enabled_at is None or not rules.imported_on_first_enable(change.at, enabled_at):
            log.info(
                "Task %s changed at %s, more than 24 h before the first enable: not imported",
                sfdc_id,
                change.at.isoformat(),
            )
            return None
        found = people.get(to18(task["who_id"])) if task.get("who_id") else None
        if not found:
            log.info(
                "Task %s: no person in Actions has its WhoId %s: not imported",
                sfdc_id,
                task.get("who_id"),
            )
            return None
        return _new_row(SF_BORN + sfdc_id, int(found[0]["marketo_id"]))

    # -- both -----------------------------------------------------------------------------

    def _resolve_and_save(
        self,
        items: Sequence[Record],
        resolve: Callable[[Sequence[Record]], Resolved],
        side: rules.Side,
    ) -> None:
        """Resolve, publish the writes, save; what lost a compare-and-set is resolved again
        from the row the other writer stored. What was saved is counted."""
        for _ in range(CAS_ATTEMPTS):
            rows, writes, tallies = resolve(items)
            self._publish(writes)
            lost = table.save(self.store.engine, rows, self.now())
            _count(side, [t for t in tallies if t[0] not in lost])
            if not lost:
                return
            items = [i for i in items if _task_key(i) in lost or i.get("external_id") in lost]
        raise RuntimeError(f"reminder tasks kept changing under this worker: {sorted(lost)}")

    def _publish(self, writes: Sequence[Record]) -> None:
        if writes:
            self.publisher.publish_raw(
                OUTBOUND_SALESFORCE_TASKS,
                [(w["external_id"].encode(), self.encode(dict(w))) for w in writes],
            )
            self.publisher.flush()

    # -- catch-up -------------------------------------------------------------------------

    def catch_up(self) -> int:
        """Push the tasks stored while the sync was off; how many went."""
        if rules.held(self.settings()) is not None:
            return 0
        moved, after = 0, ""
        while page := table.unpushed(self.store.engine, after, CATCH_UP_PAGE):
            with self._lock:
                people = self.store.people_by_id(
                    [r["marketo_id"] for r in page if r["marketo_id"] is not None]
                )
                rows, writes, tallies = [], [], []
                for row in page:
                    before = state_of(row)
                    now = self.now()  # the write's time, in its state and its record
                    out = rules.catch_up(before, now)
                    extra = self._identity(row, before, people.get(row["marketo_id"]))
                    record = rules.task_out(
                        row["task_id"], out, now, extra, _in_salesforce(before, extra)
                    )
                    if record is not None:
                        writes.append(record)
                    tallies.append((row["task_id"], rules.outcome_of(before, out, "ACTIONS"), None))
                    rows.append(row_of(out.state, row) | {"unpushed": False})
                self._publish(writes)
                lost = table.save(self.store.engine, rows, self.now())  # a loser goes next time
                _count("ACTIONS", [t for t in tallies if t[0] not in lost])
            moved += len(writes)
            after = page[-1]["task_id"]
        return moved


def _winner(out: rules.Outcome, side: rules.Side) -> str | None:
    """The side that won a conflict the change lost (None: it lost none)."""
    if not out.lost:
        return None
    return "salesforce" if side == "ACTIONS" else "actions"


def _count(side: rules.Side, tallies: Sequence[Tally]) -> None:
    for task_id, outcome, winner in tallies:
        REMINDER_TASKS_SYNCED.labels(TO[side], outcome).inc()
        if winner is not None:
            REMINDER_CONFLICTS.labels(winner).inc()
        if side == "SALESFORCE" and outcome in WRITTEN:
            log.debug("reminder task %s: %s, written to Actions", task_id, outcome)


WRITTEN = frozenset({"created", "updated", "completed", "deleted"})


def _in_salesforce(before: rules.TaskState | None, extra: Mapping[str, Any]) -> bool:
    """Salesforce holds the Task: the sync has written it, or it was born there (`extra`
    carries its Id). A write to it is conditional (`rules.task_out`)."""
    return bool(before and before.salesforce) or "Id" in extra


def _task_key(item: Record) -> str:
    return str(item.get("task_id") or (SF_BORN + to18(item["sfdc_id"])))


def catch_up(agent: ReminderAgent, interval_s: float) -> Periodic:
    """Runs `agent.catch_up()` every `interval_s` (store or broker away: everything stays
    where it is, the next round tries again)."""

    def step() -> None:
        if moved := agent.catch_up():
            log.info("catch-up: %d reminder tasks pushed", moved)

    return Periodic("reminders-catch-up", interval_s, step, failed="reminder catch-up failed")


def run(settings: Settings) -> None:
    """`actions-sync worker reminders`."""

    def build(w: Wiring) -> tuple[ReminderAgent, list[Periodic]]:
        made = ReminderAgent(w.store, w.publisher, w.registry, w.admin, w.dead_letters)
        return made, [catch_up(made, settings.reminders_retry_s)]

    run_publishing_agent(
        settings,
        WORKER,
        (OUTBOUND_SALESFORCE_TASKS,),
        build,
        [(REMINDER_TASKS, ReminderAgent.tasks), (SALESFORCE_TASKS, ReminderAgent.salesforce_tasks)],
    )
