"""pytest plugin (`-p tests.support.progress`): progress lines while `make test` holds a
tier's output.

`make test` runs the tiers side by side with `--output-sync`, which prints each tier's
output whole when it ends: ~5 minutes of silence. The Makefile hands the terminal to the
tiers as file descriptor PROGRESS_FD (3); this writes one line there every
PROGRESS_EVERY_S seconds (30) and when the run ends, named `[tansu]` or `[apache]` (or
PROGRESS_TIER). Without PROGRESS_FD it does nothing.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import Counter

import pytest

_EVERY_S = float(os.environ.get("PROGRESS_EVERY_S", "30"))


class Progress:
    def __init__(self, fd: int, tier: str) -> None:
        self.fd, self.tier = fd, tier
        self.started = self.last = time.monotonic()
        self.total = 0
        self.outcomes: Counter[str] = Counter()

    def line(self, final: bool = False) -> None:
        done = sum(self.outcomes.values())
        counts = ", ".join(f"{n} {what}" for what, n in sorted(self.outcomes.items()))
        elapsed = time.monotonic() - self.started
        text = (
            f"[{self.tier}] {'finished: ' if final else ''}{done} of {self.total} tests"
            f" ({counts or 'none yet'}) in {elapsed // 60:.0f}m{elapsed % 60:02.0f}s\n"
        )
        with contextlib.suppress(OSError):  # the descriptor is gone: stay quiet
            os.write(self.fd, text.encode())
        self.last = time.monotonic()

    @pytest.hookimpl(trylast=True)
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.total = len(session.items)

    def pytest_xdist_node_collection_finished(self, node: object, ids: list[str]) -> None:
        self.total = len(ids)  # the controller of an xdist run collects nothing itself

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
            self.outcomes[report.outcome] += 1
            if time.monotonic() - self.last >= _EVERY_S:
                self.line()

    def pytest_sessionfinish(self) -> None:
        self.line(final=True)


def pytest_configure(config: pytest.Config) -> None:
    fd = os.environ.get("PROGRESS_FD")
    if not fd or hasattr(config, "workerinput"):  # the xdist controller reports, not workers
        return
    try:
        os.fstat(int(fd))
    except (OSError, ValueError):
        return
    apache = os.environ.get("ACTIONS_SYNC_TEST_BROKER") == "apache" or os.environ.get(
        "KAFKA_BOOTSTRAP_SERVERS"
    )
    tier = os.environ.get("PROGRESS_TIER") or ("apache" if apache else "tansu")
    config.pluginmanager.register(Progress(int(fd), tier), "actions-sync-progress")
