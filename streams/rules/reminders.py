"""The reminder-task rules of SPEC S11, as pure functions.

- Maps both ways: OPEN <-> `Not Started`, COMPLETE <-> `Completed`; NORMAL/HIGH <->
  `Normal`/`High`; due date <-> `ActivityDate` (a date: never shifted by a time zone);
  details <-> `Description`. Other Salesforce statuses and priority `Low` do not sync (the
  rest of the same change still does). The subject flows Actions -> Salesforce only (a
  task born in Salesforce brings its subject once, when it is imported).
- Conflicts: a task keeps, per field, the side and time of its last change (`Stamp`).
  A change is read per field against what that side last held (compare-before-write), so
  a full record repeating the other fields claims only what it changed; the newer claim
  wins, an equal time goes to Actions (the deterministic tie-break: Actions is where the
  task is owned), and a claim equal to the current value is a no-op. The sync's own
  writes never come back: what it writes becomes the side's last-synced values, so their
  echo claims nothing (the source also drops the integration user's changes). The sync's
  writes to a Task Salesforce holds are conditional (`conditional` records: the Task sink
  compares before writing, `connectors.salesforce.payloads.conditional`): a person's edit
  of the Task newer than the Actions change the write carries wins, and the write is not
  made. So a Salesforce record newer than that change claims what it changed, and one as
  old or older claims nothing in the fields the write carried: the write overwrites them
  in Salesforce, and taking them would leave the two sides different for good. Likewise
  an Actions change older than the newest Salesforce record already read loses every
  field it claims (its write would not be made): Salesforce's newer state stands.
- Deletes win over edits: a deleted Task cannot be edited back to life (Salesforce would
  need a new record), so a delete on either side ends the task on both.
- First enable: Salesforce tasks created or updated in the 24 hours before the first
  enable are imported; Actions changes from before it are not pushed.
- Salesforce deletes reach Actions while they are within Salesforce's 15-day recycle-bin
  horizon; an older one cannot be read any more and is reported, not guessed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Literal, NamedTuple

from actions_sync.admin.model import AdminSettings
from actions_sync.errors import RuleViolation
from connectors.salesforce.ids import to18

__all__ = [
    "BOTH_WAYS",
    "DELETE_HORIZON",
    "FIRST_ENABLE_WINDOW",
    "SF_FIELD",
    "Change",
    "Held",
    "Outcome",
    "Side",
    "Stamp",
    "TaskState",
    "actions_change",
    "actions_value",
    "catch_up",
    "check_reminder",
    "check_salesforce_task",
    "delete_reaches",
    "held",
    "imported_on_first_enable",
    "outcome_of",
    "pushed_after_enable",
    "resolve",
    "salesforce_change",
    "salesforce_value",
    "task_out",
]

Side = Literal["ACTIONS", "SALESFORCE"]
# Why nothing flows (the label of the agent's held counter).
Held = Literal["sync_off", "logging_off"]

STATUS_TO_SF = {"OPEN": "Not Started", "COMPLETE": "Completed"}
PRIORITY_TO_SF = {"NORMAL": "Normal", "HIGH": "High"}
STATUS_FROM_SF = {v: k for k, v in STATUS_TO_SF.items()}
PRIORITY_FROM_SF = {v: k for k, v in PRIORITY_TO_SF.items()}

BOTH_WAYS = ("status", "priority", "due_date", "details")
SF_FIELD = {
    "subject": "Subject",
    "status": "Status",
    "priority": "Priority",
    "due_date": "ActivityDate",
    "details": "Description",
}
ACTIONS_FIELD = {v: k for k, v in SF_FIELD.items()}
DELETED = "deleted"
SF_DELETED = "IsDeleted"
# A new Actions task needs every field: a Salesforce status or priority that does not
# sync gives the Actions default instead.
ACTIONS_DEFAULTS = {
    "status": "OPEN",
    "priority": "NORMAL",
    "due_date": None,
    "details": None,
    "subject": "",
    DELETED: False,
}

FIRST_ENABLE_WINDOW = timedelta(hours=24)
DELETE_HORIZON = timedelta(days=15)  # Salesforce's recycle bin


class Stamp(NamedTuple):
    """The side and time of a field's last change."""

    at: datetime
    side: Side

    def beats(self, other: Stamp | None) -> bool:
        """Newer wins; at an equal time Actions wins (a fixed order, so both replays agree)."""
        if other is None:
            return True
        return (self.at, self.side == "ACTIONS") > (other.at, other.side == "ACTIONS")


def salesforce_value(name: str, value: Any) -> Any:
    """An Actions field's value in Salesforce terms (`ActivityDate` as YYYY-MM-DD)."""
    if name == "status":
        return STATUS_TO_SF[value]
    if name == "priority":
        return PRIORITY_TO_SF[value]
    if name == "due_date" and value is not None:
        return value.isoformat()
    return value


def actions_value(sf_name: str, value: Any) -> tuple[str, Any] | None:
    """A Salesforce field's value in Actions terms, or None when it does not sync
    (another status, priority Low, a field outside S11)."""
    name = ACTIONS_FIELD.get(sf_name)
    if name == "status":
        return (name, STATUS_FROM_SF[value]) if value in STATUS_FROM_SF else None
    if name == "priority":
        return (name, PRIORITY_FROM_SF[value]) if value in PRIORITY_FROM_SF else None
    if name == "due_date":  # a date: the first ten characters, whatever a client sent
        return name, None if value is None else date.fromisoformat(str(value)[:10])
    if name in ("details", "subject"):
        return name, value
    return None


@dataclass(frozen=True)
class TaskState:
    """A task as the store holds it.

    `values` is the Actions side (Actions terms, what the Actions app shows: these are
    also the values last synced to Actions); `salesforce` the values last read from or
    written to Salesforce, in Salesforce terms; `stamps` per field.
    """

    values: Mapping[str, Any]
    stamps: Mapping[str, Stamp] = field(default_factory=dict)
    salesforce: Mapping[str, Any] = field(default_factory=dict)
    # The sync's last write to Salesforce: the time of the change it carries (its
    # `occurred_at`, in milliseconds as the record holds it), and its fields.
    written_at: datetime | None = None
    written: frozenset[str] = frozenset()
    # The SystemModstamp of the newest Salesforce record read (a person's edit: the
    # source drops the sync's own): an Actions change older than it is not written.
    salesforce_at: datetime | None = None

    @property
    def deleted(self) -> bool:
        return bool(self.values.get(DELETED))


@dataclass(frozen=True)
class Change:
    """A task as one side holds it after a change: Actions terms from Actions (a
    `ReminderTask`'s fields), Salesforce field names and values from Salesforce."""

    side: Side
    at: datetime
    values: Mapping[str, Any]


@dataclass(frozen=True)
class Outcome:
    """What a change does: the new state, the Actions fields it changed (a store write),
    and the Salesforce fields to write (empty: no write) or a Salesforce delete."""

    state: TaskState
    applied: frozenset[str] = frozenset()
    write: Mapping[str, Any] = field(default_factory=dict)
    delete: bool = False
    # Fields the change claimed and lost to a newer change of the other side (a conflict
    # the other side won), and the Salesforce fields it changed to a value that does not
    # sync (another status, priority Low).
    lost: frozenset[str] = frozenset()
    ignored: frozenset[str] = frozenset()


def _overwritten(state: TaskState | None, change: Change) -> frozenset[str]:
    """The Salesforce fields a record no newer than the change the sync's last write carries
    shows as they were: that write overwrites them, so they neither claim nor count as
    synced (else the sides diverge). A newer record is a person's edit the Task sink does
    not write over (`connectors.salesforce.payloads.conditional`, the same comparison)."""
    if (
        state is None
        or change.side != "SALESFORCE"
        or state.written_at is None
        or change.at > state.written_at
    ):
        return frozenset()
    return state.written


def _claims(state: TaskState | None, change: Change) -> dict[str, Any]:
    """The Actions-term fields a change claims to have changed (compare-before-write
    against what its side last held)."""
    if change.side == "ACTIONS":
        held_ = state.values if state else {}
        names = (*BOTH_WAYS, "subject", DELETED)
        return {
            n: change.values[n]
            for n in names
            if n in change.values and (state is None or change.values[n] != held_.get(n))
        }
    last = state.salesforce if state else {}
    overwritten = _overwritten(state, change)
    out: dict[str, Any] = {}
    for sf_name, value in change.values.items():
        if sf_name == SF_DELETED:
            if value:
                out[DELETED] = True
            continue
        if state is not None and (
            sf_name == "Subject" or last.get(sf_name) == value or sf_name in overwritten
        ):
            continue  # S11: a subject edited in Salesforce does not come back
        mapped = actions_value(sf_name, value)
        if mapped is not None:
            out[mapped[0]] = mapped[1]
    return out


def _ignored(state: TaskState | None, change: Change) -> frozenset[str]:
    """The Salesforce status/priority a change set to a value that does not sync."""
    if change.side != "SALESFORCE":
        return frozenset()
    last = state.salesforce if state else {}
    return frozenset(
        n
        for n in ("Status", "Priority")
        if n in change.values
        and change.values[n] is not None
        and last.get(n) != change.values[n]
        and actions_value(n, change.values[n]) is None
    )


def resolve(state: TaskState | None, change: Change) -> Outcome:
    """Apply one side's change to a task (None: not known yet) under S11's rules."""
    if state is not None and state.deleted:
        return Outcome(state)  # deletes win: nothing revives a deleted task
    stamp = Stamp(change.at, change.side)
    values = dict(state.values) if state else dict(ACTIONS_DEFAULTS)
    stamps = dict(state.stamps) if state else {}
    applied, lost = set(), set()
    # The Task sink does not write over a person's edit newer than the Actions change.
    behind = (
        change.side == "ACTIONS"
        and state is not None
        and state.salesforce_at is not None
        and state.salesforce_at > _millis(change.at)
    )
    for name, value in _claims(state, change).items():
        if state is not None and values.get(name) == value:
            continue
        if not (name == DELETED or (stamp.beats(stamps.get(name)) and not behind)):
            lost.add(name)
            continue
        values[name], stamps[name] = value, stamp
        applied.add(name)
    if state is None:
        applied = set(values)  # a new task: the store writes all of it
    synced = dict(state.salesforce) if state else {}
    written_at, written = (state.written_at, state.written) if state else (None, frozenset())
    salesforce_at = state.salesforce_at if state else None
    write: dict[str, Any] = {}
    if change.side == "SALESFORCE":
        salesforce_at = max(filter(None, (salesforce_at, change.at)))
        stale = _overwritten(state, change) | {SF_DELETED}
        synced |= {k: v for k, v in change.values.items() if k not in stale}
    else:
        # Salesforce never had it (new, or stored before the first enable): all of it.
        names = sorted(applied) if synced or not applied else sorted(SF_FIELD)
        write = _differing(values, synced, names)
        synced |= write
    delete = change.side == "ACTIONS" and DELETED in applied and bool(values[DELETED])
    if delete:
        write = {}
    if write:
        written_at, written = _millis(change.at), frozenset(write)
    return Outcome(
        TaskState(values, stamps, synced, written_at, written, salesforce_at),
        frozenset(applied),
        write,
        delete,
        frozenset(lost),
        _ignored(state, change),
    )


def outcome_of(before: TaskState | None, out: Outcome, side: Side) -> str:
    """What a resolved change did on the other side (the `outcome` label of
    `actions_sync_reminder_tasks_synced_total`): created, completed, updated, deleted, or
    why nothing went (conflict_lost, ignored_status, ignored_priority, no_op)."""
    if side == "ACTIONS":
        changed, created = bool(out.write), not (before and before.salesforce)
        deleted, completed = out.delete, out.write.get("Status") == "Completed"
    else:
        changed, created = bool(out.applied), before is None
        deleted = DELETED in out.applied and out.state.deleted
        completed = "status" in out.applied and out.state.values["status"] == "COMPLETE"
    if deleted:
        return "deleted"
    if changed:
        return "created" if created else "completed" if completed else "updated"
    if out.lost:
        return "conflict_lost"
    if "Status" in out.ignored:
        return "ignored_status"
    if "Priority" in out.ignored:
        return "ignored_priority"
    return "no_op"


def _differing(
    values: Mapping[str, Any], synced: Mapping[str, Any], names: Iterable[str]
) -> dict[str, Any]:
    """The Salesforce fields of `names` whose value differs from the last synced one."""
    out = {}
    for name in names:
        if name in SF_FIELD and synced.get(SF_FIELD[name]) != salesforce_value(name, values[name]):
            out[SF_FIELD[name]] = salesforce_value(name, values[name])
    return out


def catch_up(state: TaskState, now: datetime) -> Outcome:
    """The write of a task stored while the sync was off: every field Salesforce does not
    hold yet (all of them when it never had the task), or its delete."""
    if state.deleted:
        return Outcome(state, delete=bool(state.salesforce))
    write = _differing(state.values, state.salesforce, SF_FIELD)
    if not write:
        return Outcome(state)
    return Outcome(
        TaskState(
            state.values,
            state.stamps,
            {**state.salesforce, **write},
            _millis(now),
            frozenset(write),
            state.salesforce_at,
        ),
        write=write,
    )


def _millis(at: datetime) -> datetime:
    """`at` as a `SalesforceTaskOut` carries it (`occurred_at` is timestamp-millis): the
    rules and the Task sink compare Salesforce's modstamps with the same instant."""
    return at.replace(microsecond=at.microsecond // 1000 * 1000)


def salesforce_change(task: Mapping[str, Any]) -> Change:
    """A `SalesforceTask` (the source's record) as a change from Salesforce."""
    due = task.get("activity_date")
    values = {
        "Subject": task.get("subject"),
        "Status": task.get("status"),
        "Priority": task.get("priority"),
        "ActivityDate": due.isoformat() if due is not None else None,
        "Description": task.get("description"),
        SF_DELETED: bool(task["is_deleted"]),
    }
    return Change("SALESFORCE", task["system_modstamp"], values)


def actions_change(task: Mapping[str, Any]) -> Change:
    """A `ReminderTask` (from Actions) as a change from Actions."""
    return Change(
        "ACTIONS", task["changed_at"], {n: task.get(n) for n in (*BOTH_WAYS, "subject", DELETED)}
    )


def check_reminder(key: bytes | None, task: Mapping[str, Any]) -> None:
    """Reject a `ReminderTask` that breaks the topic's contract (`RuleViolation` -> DLQ)."""
    task_id = task["task_id"]
    if not task_id or len(task_id) > 64:
        raise RuleViolation(f"task_id must be 1-64 characters, got {task_id!r}")
    if key != task_id.encode():
        raise RuleViolation(
            f"key {key!r} is not the task id {task_id!r}: the changes of"
            " one task must share a key to stay in order"
        )
    if len(task["subject"]) > 255:
        raise RuleViolation(f"subject is {len(task['subject'])} characters, Salesforce allows 255")


def check_salesforce_task(key: bytes | None, task: Mapping[str, Any]) -> None:
    """Reject a `SalesforceTask` whose Id is not a Salesforce id or not its key."""
    try:
        sfdc_id = to18(task["sfdc_id"])
    except ValueError as exc:
        raise RuleViolation(str(exc)) from exc
    if key is None or key.decode(errors="replace")[:15] != sfdc_id[:15]:
        raise RuleViolation(
            f"key {key!r} is not the Task id {sfdc_id}: the changes of one"
            " Task must share a key to stay in order"
        )


def task_out(
    task_id: str,
    outcome: Outcome,
    at: datetime,
    extra: Mapping[str, Any] | None = None,
    held: bool = True,
) -> dict[str, Any] | None:
    """The `SalesforceTaskOut` record of an outcome's write (None: nothing to write).
    `extra`: WhoId/WhatId for a Task Salesforce does not have yet, Id for one born
    there (it has no external id until the sync writes one). `held`: Salesforce holds
    the Task already, so the write is conditional (a person's newer edit wins)."""
    if not outcome.write and not outcome.delete:
        return None
    fields = {} if outcome.delete else {k: v for k, v in outcome.write.items()}
    fields |= {k: v for k, v in (extra or {}).items() if v is not None}
    return {
        "external_id": task_id,
        "operation": "DELETE" if outcome.delete else "UPSERT",
        "fields": fields,
        "occurred_at": at,
        "conditional": held and not outcome.delete,
        "origin": f"reminder:{task_id}",
    }


def held(settings: AdminSettings) -> Held | None:
    """None when reminder tasks flow now, else why not (both settings must be on)."""
    if not settings.reminder_task_sync:
        return "sync_off"
    if not settings.salesforce_log_reminder_tasks:
        return "logging_off"
    return None


def imported_on_first_enable(last_changed: datetime, enabled_at: datetime) -> bool:
    """A Salesforce task created or updated in the 24 h before the first enable."""
    return enabled_at - last_changed <= FIRST_ENABLE_WINDOW


def pushed_after_enable(changed_at: datetime, enabled_at: datetime) -> bool:
    """An Actions change made before the first enable is not pushed (existing tasks stay)."""
    return changed_at >= enabled_at


def delete_reaches(deleted_at: datetime, now: datetime) -> bool:
    """A Salesforce delete can still be read (recycle bin); older ones are reported."""
    return now - deleted_at <= DELETE_HORIZON
