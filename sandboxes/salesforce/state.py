"""The org's data and bookkeeping: records, ids, stamps, deletions, sessions, budget, cursors.

Everything is guarded by one re-entrant lock, `SalesforceState.lock`: HTTP handlers run on
the sandbox's event-loop thread while in-process tests read and edit from theirs. Callers of
the mutating methods (`insert`, `modify`, `remove`) hold the lock and pass a `Transaction`,
which can undo them (allOrNone). Deleted records stay in place with `IsDeleted=true`, as in
Salesforce's recycle bin, so that `queryAll` and the deleted endpoint can see them.
"""

from __future__ import annotations

import random
import secrets
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sandboxes.population import sfdc_id
from sandboxes.salesforce.budget import Clock, RollingBudget
from sandboxes.salesforce.config import SalesforceConfig
from sandboxes.salesforce.schema import CLOSED_STATUSES, KEY_PREFIXES, build_schemas
from sandboxes.salesforce.timefmt import format_datetime

__all__ = ["Clock", "Cursor", "Deletion", "SalesforceState", "Transaction"]

Record = dict[str, Any]
# Options that reshape the objects cannot change on a running org.
# (Faults are replaced through `POST /_sandbox/faults`.)
_SCHEMA_OPTIONS = {"opt_out_field", "task_external_id_field", "faults"}


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Deletion:
    sobject: str
    id: str
    deleted_date: str  # canonical datetime


@dataclass
class Cursor:
    """A query's remaining rows; `rows` are live records, projected when a page is read."""

    sobject: str
    fields: list[str]
    rows: list[Record]
    page_size: int
    touched: datetime


class Transaction:
    """Undo log of one write call: `rollback()` restores every record it touched."""

    def __init__(self, state: SalesforceState, parent: Transaction | None = None) -> None:
        self._state = state
        self._parent = parent  # a composite call's allOrNone transaction around this one
        self._before: dict[str, tuple[str, Record | None]] = {}
        self._deletions = len(state.deletions)

    def save(self, sobject: str, record_id: str, record: Record | None) -> None:
        """Remember `record` as it is now (None: it is being created) unless already saved."""
        if record_id not in self._before:
            self._before[record_id] = (sobject, dict(record) if record is not None else None)
        if self._parent is not None:
            self._parent.save(sobject, record_id, record)

    def rollback(self) -> None:
        state = self._state
        for record_id, (sobject, before) in self._before.items():
            current = state.records[sobject].get(record_id)
            if current is not None:
                state.unindex(current)
            if before is None:
                state.records[sobject].pop(record_id, None)
            elif current is not None:
                current.clear()
                current.update(before)
                state.index(current)
        del state.deletions[self._deletions :]
        self._before.clear()


class SalesforceState:
    """One org's records and bookkeeping; thread-safe through `lock`."""

    def __init__(self, config: SalesforceConfig | None = None, clock: Clock | None = None) -> None:
        self.lock = threading.RLock()
        self.config = config or SalesforceConfig()
        self._base_clock: Clock = clock or _utc_now
        # The org's time runs `clock_offset` ahead of its clock: a test moves a sandbox in
        # another process days on (the recycle bin's horizon) without waiting for them.
        self.clock_offset = timedelta(0)
        self.clock: Clock = self._offset_now
        self.schemas = build_schemas(self.config)
        self.records: dict[str, dict[str, Record]] = {name: {} for name in self.schemas}
        self.deletions: list[Deletion] = []
        self.budget = RollingBudget(self.config.daily_budget, self.clock)
        self.sessions: dict[str, datetime] = {}
        self._session_users: dict[str, str] = {}  # token -> the user its writes are made as
        self.cursors: OrderedDict[str, Cursor] = OrderedDict()
        self._external: dict[str, set[str]] = {}  # casefolded ActionsSync_Id__c -> Task ids
        self._counters: dict[str, int] = {}
        self._lock_rng = random.Random(self.config.faults.seed)
        self._late_rng = random.Random(self.config.faults.seed + 1)

    # -- configuration --------------------------------------------------------------------

    def reconfigure(self, **changes: Any) -> SalesforceConfig:
        """Change options of the running org (limits, faults); not the objects' shape."""
        refused = sorted(_SCHEMA_OPTIONS & set(changes))
        if refused:
            raise ValueError(f"cannot change {', '.join(refused)} on a running sandbox")
        with self.lock:
            self.config = replace(self.config, **changes)
            self.budget.limit = self.config.daily_budget
            if "seed" in changes:
                self._lock_rng = random.Random(self.config.faults.seed)
                self._late_rng = random.Random(self.config.faults.seed + 1)
            return self.config

    def roll_lock_error(self) -> bool:
        """True for the share `lock_error_rate` of draws (seeded, so runs repeat)."""
        rate = self.config.lock_error_rate
        return rate > 0 and self._lock_rng.random() < rate

    def _offset_now(self) -> datetime:
        return self._base_clock() + self.clock_offset

    def now(self) -> str:
        return format_datetime(self.clock())

    def write_time(self, late_by_s: float | None = None) -> str:
        """The SystemModstamp of one write call: now, or `late_by_s` ago for a late commit
        (by default the seeded share `late_commit_rate` is `late_commit_s` late)."""
        rate = self.config.late_commit_rate
        if late_by_s is None and rate > 0 and self._late_rng.random() < rate:
            late_by_s = self.config.late_commit_s
        return format_datetime(self.clock() - timedelta(seconds=late_by_s or 0.0))

    def recycled_since(self) -> str:
        """Deleted records stamped before this are purged from the recycle bin."""
        return format_datetime(self.clock() - timedelta(days=self.config.deleted_horizon_days))

    # -- sessions -------------------------------------------------------------------------

    def issue_session(self, user: str | None = None) -> str:
        """A new session acting as `user` (default: the integration user)."""
        token = f"{self.config.org_id[:15]}!{secrets.token_urlsafe(48)}"
        with self.lock:
            self.sessions[token] = self.clock()
            self._session_users[token] = user or self.config.integration_user_id
        return token

    def session_user(self, token: str) -> str | None:
        """The user a live session acts as, or None when it is unknown or expired."""
        with self.lock:
            issued = self.sessions.get(token)
            if issued is None:
                return None
            ttl = self.config.session_ttl_s
            if ttl is not None and (self.clock() - issued).total_seconds() >= ttl:
                del self.sessions[token]
                return None
            return self._session_users.get(token)

    def session_valid(self, token: str) -> bool:
        return self.session_user(token) is not None

    def expire_sessions(self) -> int:
        """Invalidate every session (the next data call answers 401 INVALID_SESSION_ID)."""
        with self.lock:
            count = len(self.sessions)
            self.sessions.clear()
            self._session_users.clear()
            return count

    # -- records --------------------------------------------------------------------------

    def sobject_of(self, record_id: str) -> str | None:
        prefix = record_id[:3]
        return next((name for name, p in KEY_PREFIXES.items() if p == prefix), None)

    def get(self, record_id: str) -> Record | None:
        """The record with `record_id`, deleted or not."""
        sobject = self.sobject_of(record_id)
        return self.records[sobject].get(record_id) if sobject else None

    def live(self, sobject: str) -> Iterator[Record]:
        return (r for r in self.records[sobject].values() if not r["IsDeleted"])

    def external_matches(self, value: str) -> list[str]:
        """Ids of the live Tasks whose external id equals `value` (case-insensitive)."""
        return sorted(self._external.get(value.casefold(), ()))

    def new_id(self, sobject: str) -> str:
        prefix = KEY_PREFIXES[sobject]
        number = self._counters.get(prefix, 0)
        while True:
            number += 1
            candidate = sfdc_id(prefix, number)
            if candidate not in self.records[sobject]:
                self._counters[prefix] = number
                return candidate

    def insert(
        self,
        sobject: str,
        values: Record,
        user: str,
        now: str,
        tx: Transaction | None,
        record_id: str | None = None,
    ) -> Record:
        """Create a record from validated `values`; stamps and derived fields are set here."""
        record = self.schemas[sobject].blank()
        record.update(values)
        record["Id"] = record_id or self.new_id(sobject)
        record["CreatedDate"], record["CreatedById"] = now, user
        if tx is not None:
            tx.save(sobject, record["Id"], None)
        self.records[sobject][record["Id"]] = record
        self._stamp(sobject, record, user, now)
        self.index(record)
        return record

    def modify(self, record: Record, values: Record, user: str, now: str, tx: Transaction) -> None:
        sobject = self._sobject(record)
        tx.save(sobject, record["Id"], record)
        self.unindex(record)
        record.update(values)
        self._stamp(sobject, record, user, now)
        self.index(record)

    def remove(self, record: Record, user: str, now: str, tx: Transaction) -> None:
        sobject = self._sobject(record)
        tx.save(sobject, record["Id"], record)
        self.unindex(record)
        record["IsDeleted"] = True
        self._stamp(sobject, record, user, now)
        self.deletions.append(Deletion(sobject, record["Id"], now))

    def empty_recycle_bin(self) -> int:
        """Hard-delete the deleted records (as emptying the recycle bin does): `queryAll`
        no longer shows them; `/deleted/` still reports them within its horizon."""
        with self.lock:
            purged = 0
            for table in self.records.values():
                for record_id in [i for i, r in table.items() if r["IsDeleted"]]:
                    del table[record_id]
                    purged += 1
            return purged

    def clear(self) -> None:
        """Forget every record, deletion and cursor (sessions and budget stay)."""
        with self.lock:
            for table in self.records.values():
                table.clear()
            self.deletions.clear()
            self.cursors.clear()
            self._external.clear()
            self._counters.clear()

    def counts(self) -> dict[str, dict[str, int]]:
        with self.lock:
            out = {}
            for sobject, table in self.records.items():
                deleted = sum(1 for r in table.values() if r["IsDeleted"])
                out[sobject] = {"live": len(table) - deleted, "deleted": deleted}
            return out

    # -- indexes and stamps ---------------------------------------------------------------

    def index(self, record: Record) -> None:
        value = record.get(self.config.task_external_id_field)
        if value and not record["IsDeleted"] and self._sobject(record) == "Task":
            self._external.setdefault(value.casefold(), set()).add(record["Id"])

    def unindex(self, record: Record) -> None:
        value = record.get(self.config.task_external_id_field)
        if value and self._sobject(record) == "Task":
            ids = self._external.get(value.casefold())
            if ids is not None:
                ids.discard(record["Id"])
                if not ids:
                    del self._external[value.casefold()]

    def _sobject(self, record: Record) -> str:
        sobject = self.sobject_of(record["Id"])
        assert sobject is not None
        return sobject

    @staticmethod
    def _stamp(sobject: str, record: Record, user: str, now: str) -> None:
        record["LastModifiedById"] = user
        record["LastModifiedDate"] = record["SystemModstamp"] = now
        if sobject == "Task":
            record["IsClosed"] = record["Status"] in CLOSED_STATUSES

    # -- query cursors --------------------------------------------------------------------

    def open_cursor(self, cursor: Cursor) -> str:
        """Keep `cursor` for later pages; beyond `max_open_cursors` the oldest is dropped."""
        locator = f"01g{secrets.token_hex(8)[:15].upper()}"
        with self.lock:
            self.cursors[locator] = cursor
            while len(self.cursors) > self.config.max_open_cursors:
                self.cursors.popitem(last=False)
        return locator

    def cursor(self, locator: str) -> Cursor | None:
        """The live cursor called `locator`, or None if unknown or idle too long."""
        with self.lock:
            cursor = self.cursors.get(locator)
            now = self.clock()
            if cursor is None or (now - cursor.touched).total_seconds() > self.config.cursor_ttl_s:
                self.cursors.pop(locator, None)
                return None
            cursor.touched = now
            self.cursors.move_to_end(locator)
            return cursor
