"""Moves bulk export jobs through Queued -> Processing -> Completed | Failed.

Runs on the app's event loop (started and stopped with the app). A processing job takes
a snapshot of its rows and measures its file in a worker thread, then stays Processing
until `export_processing_s` has passed. The seeded fault stream decides which jobs end
Failed (`export_fail_rate`) and which complete with a late file (`late_file_rate`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from sandboxes.base import Faults
from sandboxes.marketo.exports import ExportJob
from sandboxes.marketo.state import MarketoState

__all__ = ["ExportRunner"]

POLL_S = 0.02  # how often queued jobs are looked at


class ExportRunner:
    def __init__(self, state: MarketoState, faults: Faults) -> None:
        self.state = state
        self.faults = faults
        self._tasks: set[asyncio.Task[None]] = set()

    async def cleanup_ctx(self, _: web.Application) -> AsyncIterator[None]:
        """For `app.cleanup_ctx`: run while the app runs."""
        main = asyncio.create_task(self._run())
        yield
        for task in (main, *self._tasks):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(main, *self._tasks, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            with self.state.lock:
                job = self.state.exports.start_next(self.state.clock())
            if job is None:
                await asyncio.sleep(POLL_S)
                continue
            task = asyncio.create_task(self._process(job))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _process(self, job: ExportJob) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            file = await loop.run_in_executor(None, self.state.snapshot, job)
        except Exception as exc:  # a bug: say so on the job rather than hang it
            with self.state.lock:
                self.state.exports.fail(job, self.state.clock(), f"Export failed: {exc}")
            raise
        await asyncio.sleep(max(self.state.config.export_processing_s - (loop.time() - started), 0))
        config = self.state.config
        failed = self.faults.roll(config.export_fail_rate)
        late = self.faults.roll(config.late_file_rate)
        with self.state.lock:
            self.state.exports.finish(job, file, self.state.clock(), failed=failed, late=late)
