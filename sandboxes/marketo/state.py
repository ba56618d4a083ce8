"""Everything one sandboxed Marketo instance holds, behind one lock.

`MarketoState` is shared by the server thread and by tests (in-process, through
`app[STATE_KEY]`): every method takes the lock. Its parts (`leads`, `log`, `types`,
`exports`) are plain single-threaded structures; `tokens` and `limits` lock themselves.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from sandboxes.marketo import writes
from sandboxes.marketo.activities import Activity, ActivityLog, Family, decode_token
from sandboxes.marketo.auth import TokenStore
from sandboxes.marketo.config import MarketoConfig
from sandboxes.marketo.custom import ActivityType, ActivityTypes
from sandboxes.marketo.errors import MarketoError
from sandboxes.marketo.export_file import ChunkCache, ExportFile
from sandboxes.marketo.exports import ExportJob, ExportJobs
from sandboxes.marketo.fields import BY_NAME, json_value
from sandboxes.marketo.leads import LeadTable
from sandboxes.marketo.limits import Limits
from sandboxes.population import generate

__all__ = ["MarketoState"]

_SEED_BATCH = 20_000  # people generated outside the lock, then stored in one go


class MarketoState:
    def __init__(
        self, config: MarketoConfig | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.config = config or MarketoConfig()
        self.clock = clock
        self.lock = threading.RLock()
        self.leads = LeadTable()
        self.log = ActivityLog()
        self.types = ActivityTypes(self.config.max_activity_types, self.config.max_type_attributes)
        self.exports = ExportJobs(self.config)
        self.chunks = ChunkCache(self.config.export_cache_bytes)
        self.tokens = TokenStore(self.config.token_ttl_s, self.config.token_expiry_s, clock)
        self.limits = Limits(self.config)
        if self.config.seed_people:
            self.seed(self.config.seed_people, self.config.seed)

    # -- people -------------------------------------------------------------------------

    def seed(self, count: int, seed: int | None = None, **population: Any) -> range:
        """Add `count` people of `sandboxes.population` after the last lead; no activities
        are logged (they existed before anyone asked for changes). Returns their ids."""
        first = self.leads.next_id
        people = generate(
            count, seed=self.config.seed if seed is None else seed, start_id=first, **population
        )
        with self.lock:  # kept up to date from here: no second-long pause on first lookup
            self.leads.ensure_index("email")
        while batch := list(itertools.islice(people, _SEED_BATCH)):
            with self.lock:
                self.leads.extend_people(batch)
        return range(first, first + count)

    def lead(self, lead_id: int) -> dict[str, Any] | None:
        """Every field of one live lead, as GET leads.json answers it."""
        found = self.find_leads("id", [lead_id], list(BY_NAME))
        return found[0] if found else None

    def find_leads(
        self, filter_type: str, values: Iterable[Any], names: Sequence[str]
    ) -> list[dict[str, Any]]:
        fields = [BY_NAME[n] for n in names]
        with self.lock:
            rows = self.leads.find(filter_type, values)
            return [
                {
                    f.name: json_value(f, v)
                    for f, v in zip(fields, self.leads.get(r, names), strict=True)
                }
                for r in rows
            ]

    def sync_leads(
        self, records: Sequence[Any], action: str = "createOrUpdate", lookup: str = "email"
    ) -> list[dict[str, Any]]:
        with self.lock:
            return writes.sync_leads(self.leads, self.log, records, action, lookup, self.clock())

    def delete_leads(self, ids: Sequence[Any]) -> list[dict[str, Any]]:
        with self.lock:
            return writes.delete_leads(self.leads, self.log, ids, self.clock())

    # -- activities ---------------------------------------------------------------------

    def add_activities(self, records: Sequence[Any]) -> list[dict[str, Any]]:
        with self.lock:
            return writes.add_activities(self.leads, self.types, self.log, records, self.clock())

    def paging_token(self, since: float) -> str:
        with self.lock:
            return self.log.token_since(since)

    def activities(
        self, families: Iterable[Family], token: str, limit: int
    ) -> tuple[list[Activity], int, bool]:
        try:
            next_id = decode_token(token)
        except ValueError as exc:
            raise MarketoError("1003", str(exc)) from exc
        with self.lock:
            return self.log.page(families, next_id, limit)

    def activity_type(self, type_id: int) -> ActivityType | None:
        with self.lock:
            return self.types.by_id(type_id)

    # -- bulk export --------------------------------------------------------------------

    def snapshot(self, job: ExportJob) -> ExportFile:
        """Freeze the rows of `job` and measure its file (slow: call it off the loop)."""
        with self.lock:
            rows = self.leads.select(job.filter_field, job.start, job.end)
            file = ExportFile(self.leads, self.lock, rows, job.fields, job.headers, self.chunks)
            self.leads.watchers.append(file)
        file.measure()
        return file

    # -- controls -----------------------------------------------------------------------

    def reset_daily_limits(self) -> None:
        """What midnight US Central does: the call quota and the export budget start over."""
        self.limits.quota.reset()
        with self.lock:
            self.exports.bytes_used = 0

    def counts(self) -> dict[str, Any]:
        with self.lock:
            return {
                "leads": len(self.leads),
                "deleted_leads": self.leads.deleted,
                "next_lead_id": self.leads.next_id,
                "lead_change_activities": self.log.count(Family.LEAD_CHANGES),
                "deleted_lead_activities": self.log.count(Family.DELETED_LEADS),
                "custom_activities": self.log.count(Family.OTHER),
                "activity_types": len(self.types),
                "exports": self.exports.counts(),
                "export_bytes_used": self.exports.bytes_used,
                "quota_used": self.limits.quota.used,
                "quota_limit": self.limits.quota.limit,
                "calls_in_window": self.limits.window.count(),
                "in_flight": self.limits.in_flight.current,
                "live_tokens": self.tokens.live(),
            }
