"""A pipeline stage run in a helper process: the worker's second core.

Why. A worker process is held to one core by its GIL: draining 200,000 people, the
people worker used 94 % of a core while the broker used 3 % of the other. Decoding,
checking and planning a batch are ~40 % of the worker's per-record CPU and need nothing
of the worker but the records, so a helper process does them on the other core: the
records go over as compact tuples and plain rows come back (~3 us per record of
pickling on the worker's side instead of ~20 us of work; see bench/RESULTS.md).

The helper is a one-process `ProcessPoolExecutor` started with "spawn" (never fork a
process that runs threads) when first needed, in the background (`ready()`: ~0.5-1 s of
imports the caller does not wait for), set up once
by `setup(*setup_args)`, and tied to the life of
the worker process (a thread of the helper waits on multiprocessing's parent sentinel
and ends the helper when the worker ends, even by SIGKILL).
If it dies, the stage raises `Retriable` and starts a new one: the batch is retried.
As with any "spawn" child, the worker's `__main__` is imported again in the helper, so
entry points keep the `if __name__ == "__main__":` guard (`actions-sync` has it).
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
from collections.abc import Callable
from concurrent.futures import BrokenExecutor, Future, ProcessPoolExecutor
from typing import Any

from actions_sync.errors import Retriable

__all__ = ["ProcessStage"]

log = logging.getLogger(__name__)


def _start_helper(setup: Callable[..., None], args: tuple[Any, ...]) -> None:
    _exit_with_parent()
    # Ctrl-C reaches the whole process group: the worker stops the helper itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    setup(*args)


def _exit_with_parent() -> None:
    """End the helper when the worker process ends, however (SIGKILL included): a thread
    of its own waits on multiprocessing's parent sentinel, a pipe the kernel closes when
    the worker process is gone (PR_SET_PDEATHSIG would follow the worker *thread* that
    happened to start the helper)."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _ping() -> None:
    """The first call of a new helper: done once it is up and set up."""


class ProcessStage:
    """`stage(arg)` runs `work(arg)` in the helper process and returns its result;
    `ready()` starts the helper without waiting for it."""

    def __init__(
        self,
        name: str,
        setup: Callable[..., None],
        setup_args: tuple[Any, ...],
        work: Callable[[Any], Any],
    ) -> None:
        self.name = name
        self._setup = setup
        self._setup_args = setup_args
        self._work = work
        self._pool: ProcessPoolExecutor | None = None
        self._up: Future[None] | None = None  # the new helper's first call (`_ping`)
        self._lock = threading.Lock()

    def ready(self) -> bool:
        """Whether the helper is up. The first ask starts it and answers False, as does
        every ask until it is set up: the caller does the work itself meanwhile rather
        than wait ~0.5-1 s (the helper's imports) with a batch in hand, a stall that
        was an incremental stream's p99 when the first large batch started the helper."""
        self._helper()  # sets `_up` with each new helper
        return self._up is not None and self._up.done()

    def __call__(self, arg: Any) -> Any:
        pool = self._helper()
        try:
            return pool.submit(self._work, arg).result()
        except BrokenExecutor as exc:
            log.warning("%s: helper process died (%r); starting a new one", self.name, exc)
            self._discard(pool)
            raise Retriable(f"{self.name} helper process died") from exc

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def _helper(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    1,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_start_helper,
                    initargs=(self._setup, self._setup_args),
                )
                self._up = self._pool.submit(_ping)  # starts the process, not waited on
            return self._pool

    def _discard(self, pool: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._pool is pool:
                self._pool = None
        pool.shutdown(wait=False, cancel_futures=True)
