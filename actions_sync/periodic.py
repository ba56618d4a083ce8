"""The one way a worker runs a job every few seconds beside its stream: a daemon thread.

Catch-ups of failed writes, the parked-activity sweeper, the scheduled reconciliation,
the progress monitor and the admin page's metrics sampler are all `Periodic`s. A step
that raises is logged and the next one runs on time: the store or the broker being away
leaves everything where it is, and the job must outlive it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Self

__all__ = ["Periodic"]

log = logging.getLogger(__name__)


class Periodic:
    """Call `step()` every `every_s` seconds in a daemon thread until `close()`.

    `at_once`: the first call is made at start, not one interval later. `failed` is the
    log message of a step that raised (with its traceback).
    """

    def __init__(
        self,
        name: str,
        every_s: float,
        step: Callable[[], object],
        *,
        failed: str | None = None,
        at_once: bool = False,
    ) -> None:
        self.name = name
        self.every_s = every_s
        self.step = step
        self.failed = failed or f"{name} failed"
        self.at_once = at_once
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> Self:
        self._thread.start()
        return self

    def _run(self) -> None:
        if not self.at_once and self._stop.wait(self.every_s):
            return
        while True:
            try:
                self.step()
            except Exception:
                log.exception(self.failed)
            if self._stop.wait(self.every_s):
                return

    def close(self, timeout_s: float = 30.0) -> bool:
        """Stop; wait up to `timeout_s` for a step under way. True when the thread ended
        (a step stuck in a call to a server that does not answer may outlive it: the
        thread is a daemon and ends with the process)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        return not self._thread.is_alive()
