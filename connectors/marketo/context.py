"""What the initial and the incremental sync share: the client, the topic, the checkpoints.

`SourceContext.commit(name, position)` is the one way a position is saved: it flushes the
publisher first (waits until the broker acknowledged every record sent so far), so a
saved position never runs ahead of what is durably on the topic. A crash therefore
re-publishes at most the records sent since the last commit; the people agent absorbs
them (idempotent upserts guarded by `changed_at`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from actions_sync.metrics import CHECKPOINT_AGE_SECONDS, RECORDS_PUBLISHED, SKIPPED
from actions_sync.publish import Publisher
from actions_sync.serialization import Serializer
from actions_sync.store import Store
from actions_sync.topics import PERSON_CHANGES
from connectors.errors import QuotaExhausted
from connectors.marketo.client import MarketoClient

__all__ = ["INCREMENTAL", "INITIAL", "RECORD", "SourceContext"]

INITIAL = "marketo.initial_sync"  # checkpoint: windows, export jobs, bytes published
INCREMENTAL = "marketo.lead_changes"  # checkpoint: paging tokens
RECORD = "PersonChange"
log = logging.getLogger(__name__)


@dataclass
class SourceContext:
    client: MarketoClient
    publisher: Publisher
    store: Store
    worker: str
    quota_probe_s: float = 300.0
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    published: int = 0
    _unacknowledged: int = 0  # published, counted in RECORDS_PUBLISHED at the next commit
    _saved_at: list[float] = field(default_factory=lambda: [time.monotonic()])

    def __post_init__(self) -> None:
        # The gauge holds the one-item list, not the context (and its producer).
        saved_at = self._saved_at
        CHECKPOINT_AGE_SECONDS.labels(self.worker).set_function(
            lambda: time.monotonic() - saved_at[0]
        )

    def publish(self, changes: Sequence[dict[str, Any]]) -> int:
        """Send person changes keyed by Marketo ID (not yet acknowledged: see `commit`)."""
        return self._count(
            self.publisher.publish(
                PERSON_CHANGES, RECORD, ((str(c["marketo_id"]), c) for c in changes)
            )
        )

    def serializer(self) -> Serializer:
        """The topic's serializer, for person changes encoded ahead (`publish_encoded`)."""
        return self.publisher.serializer(PERSON_CHANGES, RECORD)

    def publish_encoded(self, records: Iterable[tuple[bytes, bytes]]) -> int:
        """`publish` for (key, value) bytes framed by `serializer()`'s schema id."""
        return self._count(self.publisher.publish_raw(PERSON_CHANGES, records))

    def _count(self, published: int) -> int:
        self._unacknowledged += published
        self.published += published
        return published

    def skip(self, count: int, reason: str = "not_owned") -> None:
        SKIPPED.labels(self.worker, reason).inc(count)

    def commit(self, name: str, position: dict[str, Any]) -> None:
        """Flush what was published, then save `position` (never the other way round).
        Records are counted once acknowledged: those re-sent after a failed flush (the
        source goes back to its checkpoint) count once."""
        sent, self._unacknowledged = self._unacknowledged, 0
        self.publisher.flush()  # raises if any failed: published again from the checkpoint
        RECORDS_PUBLISHED.labels(self.worker, PERSON_CHANGES).inc(sent)
        self.store.save_checkpoint(name, position)
        self._saved_at[0] = time.monotonic()

    async def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`, waking at once on shutdown; True when stopping."""
        if seconds > 0 and not self.stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), seconds)
        return self.stopping.is_set()

    async def quota_pause(self, exc: QuotaExhausted) -> None:
        """607/1029: the caller has checkpointed; idle until the quota may be back.

        Marketo resets the daily quota at midnight US Central, but an admin can raise it
        any time, so wait at most `quota_probe_s` before the next (free: 6xx answers do
        not count) attempt instead of sleeping until midnight.
        """
        wait = min(exc.retry_after, self.quota_probe_s)
        # str(exc): a kept log record must not hold the traceback (and the producer in it)
        log.warning("Marketo quota used up (%s); pausing %.0f s", str(exc), wait)
        await self.wait(wait)
