"""`Poller`: follows Salesforce objects with the cursor of `cursor.py`, page by page.

Each page of a poll is handed to the caller's `handle(stream, rows)` (which publishes what
it makes of them), then the publisher is flushed and only then the position saved in the
store's checkpoints: a saved position never runs ahead of what the broker acknowledged.
A crash between the two re-reads that page; the lookback's `seen` or the consumer (event
ids derive from the row version) absorbs the duplicates, and nothing is skipped.

Hard deletions (`sobjects/{type}/deleted/`, for objects whose deletions matter, e.g. the
S11 Tasks) are read at most every `deleted_every` (default `DELETED_EVERY`, Salesforce's
advice: 5 minutes; the setting `salesforce_deleted_every_s`) from
where the last read stopped (`latestDateCovered`; seconds are ignored, so a window starts
at its minute and may hand a deletion on twice). A window older than the recycle bin
keeps (INVALID_REPLICATION_DATE) is reported, `on_gap` is called (the caller's full
reconciliation), and reading resumes from now.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from actions_sync.clock import Clock, SystemClock
from actions_sync.metrics import CHECKPOINT_AGE_SECONDS
from actions_sync.publish import Publisher
from actions_sync.store import Store
from connectors.errors import Rejected
from connectors.salesforce.client import SalesforceClient
from connectors.salesforce.cursor import Position, Row, Stream, advance, fresh, parse_stamp, soql

__all__ = ["DELETED_EVERY", "Handle", "HandleDeleted", "Poller"]

DELETED_EVERY = timedelta(minutes=5)
Handle = Callable[[Stream, Sequence[Row]], int]  # publishes (unacknowledged); returns how many
HandleDeleted = Callable[[Stream, Sequence[dict[str, Any]]], int]
log = logging.getLogger(__name__)


class Poller:
    def __init__(
        self,
        client: SalesforceClient,
        store: Store,
        publisher: Publisher,
        worker: str,
        lookback: timedelta,
        batch_size: int | None = None,
        clock: Clock | None = None,
        deleted_every: timedelta = DELETED_EVERY,
    ) -> None:
        self.client = client
        self.deleted_every = deleted_every
        self.store = store
        self.publisher = publisher
        self.lookback = lookback
        self.batch_size = batch_size
        self._clock = clock or SystemClock()
        saved_at = self._saved_at = [time.monotonic()]  # the gauge holds the list, not us
        CHECKPOINT_AGE_SECONDS.labels(worker).set_function(lambda: time.monotonic() - saved_at[0])

    async def poll(self, stream: Stream, handle: Handle) -> int:
        """Read `stream` from its position to the newest row; returns the rows handed on."""
        position = self.position(stream)
        query = soql(stream, position, self.lookback)
        handed = 0
        async for page in self.client.pages(
            query, include_deleted=stream.include_deleted, batch_size=self.batch_size
        ):
            rows = fresh(page, position)
            if rows:
                handle(stream, rows)
                handed += len(rows)
            moved = advance(position, page, self.lookback)
            if moved != position:
                self.commit(stream.name, moved.dump())
                position = moved
        # Read to the end: the saved position is current even when a quiet org moved it
        # nowhere (the stale-checkpoint alert means "stuck", not "nothing changed").
        self._saved_at[0] = time.monotonic()
        return handed

    def position(self, stream: Stream) -> Position:
        """The saved position, or "now" (less the stream's `first_back`) for a stream never
        polled (saved at once, so a restart before the first change does not move it)."""
        saved = self.store.checkpoint(stream.name)
        if saved is not None:
            return Position.load(saved)
        position = Position.start(self._now() - stream.first_back)
        self.commit(stream.name, position.dump())
        return position

    async def deletions(
        self,
        stream: Stream,
        handle: HandleDeleted,
        on_gap: Callable[[Stream, str], None] | None = None,
    ) -> int:
        """Hand on the records of `stream.sobject` deleted since the last read."""
        name = f"{stream.name}.deleted"
        now = self._now()
        saved = self.store.checkpoint(name)
        if saved is None:
            self.commit(name, {"through": now.isoformat()})
            return 0
        start = parse_stamp(str(saved["through"]))
        if now - start < self.deleted_every or _minute(now) <= _minute(start):
            # Salesforce ignores the seconds: a window within one minute is refused
            # (INVALID_REPLICATION_DATE, as a lost window is), so wait for the next minute
            return 0
        try:
            answer = await self.client.deleted(stream.sobject, start, now)
        except Rejected as exc:
            if exc.code != "INVALID_REPLICATION_DATE":
                raise
            self._gap(stream, name, start, now, str(exc), on_gap)
            return 0
        rows = list(answer.get("deletedRecords") or [])
        if rows:
            handle(stream, rows)
        through = parse_stamp(str(answer.get("latestDateCovered") or now.isoformat()))
        self.commit(name, {"through": through.isoformat()})
        return len(rows)

    def _gap(
        self,
        stream: Stream,
        name: str,
        start: datetime,
        now: datetime,
        reason: str,
        on_gap: Callable[[Stream, str], None] | None,
    ) -> None:
        log.error(
            "%s: deletions since %s can no longer be read (%s): a full reconciliation "
            "is needed; reading on from now",
            stream.name,
            start.isoformat(),
            reason,
        )
        if on_gap is not None:
            on_gap(stream, reason)
        self.commit(name, {"through": now.isoformat()})

    def commit(self, name: str, position: dict[str, Any]) -> None:
        """Flush what was published, then save `position` (never the other way round)."""
        self.publisher.flush()
        self.store.save_checkpoint(name, position)
        self._saved_at[0] = time.monotonic()

    def _now(self) -> datetime:
        return self._clock.now().astimezone(UTC)


def _minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)
