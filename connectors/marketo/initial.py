"""The initial sync (SPEC S6): every sales-owned lead, by bulk extract, resumable.

1. Before the first export, a paging token for the sync's start is saved as the
   incremental checkpoint, so changes made during the load reach the store afterwards.
2. The `createdAt` range is cut into <= 31-day windows (fixed in the checkpoint). Jobs
   run ahead of the download (`AHEAD`, within Marketo's 2 running + 10 queued), and the
   files are read in window order, chunk by ranged chunk, row by row.
3. After every chunk: flush the publisher, then checkpoint (window, export id, byte
   offset, rows). A killed process resumes the same export's file at that byte offset,
   re-publishing at most one chunk's rows. A job that failed or vanished is re-created.
4. 607 / 1029: checkpoint, pause (`SourceContext.quota_pause`), resume.

Rows without an owner are counted (`SKIPPED{reason=not_owned}`) and not published: the
store is empty before the first load, so they cannot change it; owners lost *during* the
load arrive through the incremental sync, which publishes those removals.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from actions_sync.clock import utcnow
from actions_sync.retry import Interrupted, retrying_step
from connectors.errors import QuotaExhausted, Rejected
from connectors.marketo.context import INCREMENTAL, INITIAL, SourceContext
from connectors.marketo.csvrows import CsvRows
from connectors.marketo.payloads import API_FIELDS, parse_time
from connectors.marketo.progress import LoadProgress
from connectors.marketo.rowcodec import RowEncoder, row_encoder
from connectors.marketo.windows import windows

__all__ = ["AHEAD", "InitialSync", "Position"]

AHEAD = 4  # export jobs enqueued ahead: 2 processing + 2 queued (Marketo: 2 + 10)
STATUS_POLL_S = (0.2, 5.0)  # first and longest wait between status calls
log = logging.getLogger(__name__)


class _Redo(Exception):
    """The window's job failed or is gone: create a new one and read it from the top."""


@dataclass
class Position:
    """The initial sync's checkpoint (JSON in the store)."""

    started_at: str
    windows: list[list[str]]
    next: int = 0  # the first window not wholly published
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)  # window -> {id, enqueued}
    offset: int = 0  # bytes of window `next`'s file already published
    rows: int = 0  # rows of window `next` already read
    header: list[str] | None = None
    published: int = 0
    done: bool = False

    @classmethod
    def new(cls, now: datetime, since: datetime, until: datetime | None) -> Position:
        plan = windows(since, until or now)
        return cls(now.isoformat(), [[s.isoformat(), e.isoformat()] for s, e in plan])


class InitialSync:
    def __init__(
        self, ctx: SourceContext, since: datetime, until: datetime | None, chunk_bytes: int
    ) -> None:
        self.ctx = ctx
        self.since, self.until = since, until
        self.chunk_bytes = chunk_bytes
        self.records: dict[int, int] = {}  # window -> rows, from Completed statuses
        self._header: list[str] | None = None
        self._encode: RowEncoder | None = None  # rows -> (key, value), for `_header`

    async def run(self) -> bool:
        """Load everything (True), or stop early on shutdown with a checkpoint (False)."""
        pos = await self._start()
        with LoadProgress(len(pos.windows)) as progress:
            while not pos.done:
                try:
                    # The client retried each call; a step that still fails is retried
                    # here, from the checkpoint (resumed at its byte offset).
                    await retrying_step(
                        partial(self._step, pos, progress),
                        what="initial sync",
                        stop=self.ctx.stopping,
                        give_up_on=(QuotaExhausted,),
                    )
                except QuotaExhausted as exc:
                    self.ctx.commit(INITIAL, asdict(pos))
                    await self.ctx.quota_pause(exc)
                except _Redo as exc:  # at once: a new job, nothing failed transiently
                    log.warning("initial sync: %s; resuming from the checkpoint", str(exc))
                except Interrupted:
                    pass  # stopping
                if self.ctx.stopping.is_set():
                    return False
        return True

    async def _step(self, pos: Position, progress: LoadProgress) -> None:
        await self._fill(pos)
        await self._window(pos, progress)

    async def _start(self) -> Position:
        saved = self.ctx.store.checkpoint(INITIAL)
        if saved is not None:
            pos = Position(**saved)
            log.info(
                "initial sync: resuming at window %d/%d, byte %d",
                pos.next + 1,
                len(pos.windows),
                pos.offset,
            )
            return pos
        now = utcnow()
        if self.ctx.store.checkpoint(INCREMENTAL) is None:
            token = await self.ctx.client.paging_token(now)
            self.ctx.store.save_checkpoint(
                INCREMENTAL, {"lead_token": token, "deleted_token": token}
            )
        pos = Position.new(now, self.since, self.until)
        self.ctx.store.save_checkpoint(INITIAL, asdict(pos))
        return pos

    async def _fill(self, pos: Position) -> None:
        """Create and enqueue jobs for the next `AHEAD` windows that have none."""
        for index in range(pos.next, min(pos.next + AHEAD, len(pos.windows))):
            job = pos.jobs.get(str(index))
            try:
                if job is None:
                    start, end = (parse_time(t) for t in pos.windows[index])
                    job = {
                        "id": await self.ctx.client.create_export(API_FIELDS, start, end),
                        "enqueued": False,
                    }
                    pos.jobs[str(index)] = job
                if not job["enqueued"]:
                    job["enqueued"] = await self._enqueue(job["id"])
                    if not job["enqueued"]:
                        pos.jobs.pop(str(index))  # gone: the next fill makes a new one
            except QuotaExhausted:
                if index == pos.next:
                    raise  # nothing runs: pause
                break  # 1029 too many jobs: the ones running go first
        self.ctx.commit(INITIAL, asdict(pos))  # no job is ever orphaned in Marketo's queue

    async def _enqueue(self, job_id: str) -> bool:
        """Enqueue; False when the job is gone. A job enqueued just before a crash (the
        checkpoint does not know yet) answers 1003 'not Created': it is on its way."""
        try:
            await self.ctx.client.enqueue_export(job_id)
            return True
        except Rejected:
            try:
                status = await self.ctx.client.export_status(job_id)
            except Rejected:
                return False
            return status["status"] in ("Queued", "Processing", "Completed")

    async def _window(self, pos: Position, progress: LoadProgress) -> None:
        """Read window `pos.next` from its checkpointed offset to the end."""
        job_id = pos.jobs[str(pos.next)]["id"]
        status = await self._completed(pos, job_id)
        if status is None:
            return  # stopping
        self.records[pos.next] = int(status.get("numberOfRecords", 0))
        progress.window(pos.next + 1, self._estimate(len(pos.windows)))
        if self.records[pos.next] and pos.offset < int(status.get("fileSize", 0)):
            await self._read(pos, job_id, progress)
            if self.ctx.stopping.is_set():
                return  # checkpointed mid-file: resume there
        pos.jobs.pop(str(pos.next), None)
        pos.next, pos.offset, pos.rows, pos.header = pos.next + 1, 0, 0, None
        pos.done = pos.next >= len(pos.windows)
        self.ctx.commit(INITIAL, asdict(pos))

    async def _completed(self, pos: Position, job_id: str) -> dict[str, Any] | None:
        wait, longest = STATUS_POLL_S
        while True:
            try:
                status = await self.ctx.client.export_status(job_id)
            except Rejected as exc:  # 610: the job is gone (Marketo keeps them 7 days)
                self._drop(pos)
                raise _Redo(f"export {job_id}: {exc}") from exc
            if status["status"] == "Completed":
                return status
            if status["status"] in ("Failed", "Cancelled"):
                self._drop(pos)
                raise _Redo(f"export {job_id} {status['status']}: {status.get('errorMsg')}")
            if await self.ctx.wait(wait):
                return None
            wait = min(wait * 1.5, longest)

    def _drop(self, pos: Position) -> None:
        pos.jobs.pop(str(pos.next), None)
        pos.offset, pos.rows, pos.header = 0, 0, None
        self.ctx.commit(INITIAL, asdict(pos))

    async def _read(self, pos: Position, job_id: str, progress: LoadProgress) -> None:
        """Download chunk k+1 while chunk k is parsed and published in a thread: Marketo
        (or the sandbox) renders the next range while this process works on the last."""
        parser = CsvRows(pos.offset)
        chunks = self.ctx.client.export_file(job_id, pos.offset, self.chunk_bytes)
        ahead = asyncio.ensure_future(anext(chunks, b""))
        try:
            while chunk := await ahead:
                ahead = asyncio.ensure_future(anext(chunks, b""))
                await asyncio.to_thread(self._feed, pos, parser, chunk, progress)
                if self.ctx.stopping.is_set():
                    return
            self._handle(pos, parser.finish(), parser.offset, progress)
        finally:
            ahead.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await ahead
            await chunks.aclose()

    def _feed(self, pos: Position, parser: CsvRows, chunk: bytes, progress: LoadProgress) -> None:
        self._handle(pos, parser.feed(chunk), parser.offset, progress)

    def _handle(
        self, pos: Position, rows: Sequence[list[bytes]], offset: int, progress: LoadProgress
    ) -> None:
        """Publish the owned rows, then checkpoint past them."""
        if pos.header is None and rows:
            pos.header, rows = [cell.decode() for cell in rows[0]], rows[1:]
        if self._encode is None or self._header != pos.header:
            self._header = pos.header
            self._encode = row_encoder(pos.header or API_FIELDS, self.ctx.serializer())
        # Row by row from the split to the producer: no list of records in between.
        owned = self.ctx.publish_encoded(filter(None, map(self._encode, rows)))
        self.ctx.skip(len(rows) - owned)
        pos.offset, pos.rows, pos.published = offset, pos.rows + len(rows), pos.published + owned
        self.ctx.commit(INITIAL, asdict(pos))
        progress.advance(len(rows), pos.published)

    def _estimate(self, total_windows: int) -> int | None:
        known = sum(self.records.values())
        average = known / len(self.records) if self.records else 0
        return round(known + average * (total_windows - len(self.records))) or None
