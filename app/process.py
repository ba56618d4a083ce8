"""Child processes that never outlive their parent process, and stop cleanly.

Every child runs under a guard (`app.guard`) holding the read end of
this process's lifeline, a pipe whose write end only this process has (close-on-exec,
never written). When this process ends, however — SIGKILL included — the kernel closes
the write end, each guard reads EOF and stops its child; a guard killed itself takes
its child with it. So a killed `demo`, `up` or test run leaves no broker, sandbox or
worker behind.

Why not PR_SET_PDEATHSIG in a `preexec_fn`, as before: the signal fires when the
*thread* that spawned the child exits, not the process (a child started from a helper
thread died with it), and `preexec_fn` is unsafe in a process that runs threads (it can
deadlock the child between fork and exec). The guard sets it only from its own main
thread, before it has any other.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

__all__ = ["GRACE_S", "lifeline", "spawn", "stop", "stop_all"]

GRACE_S = 2.0  # an orphaned child gets this long after SIGTERM before SIGKILL
GUARD = [sys.executable, "-m", "app.guard"]

_lock = threading.Lock()
_lifeline: tuple[int, int, int] | None = None  # (pid that made it, read end, write end)


def lifeline() -> int:
    """The read end of this process's lifeline (made once per process, kept open)."""
    global _lifeline
    with _lock:
        if _lifeline is None or _lifeline[0] != os.getpid():  # a fork makes its own
            read, write = os.pipe()  # both close-on-exec: only a guard gets `read`
            _lifeline = (os.getpid(), read, write)
        return _lifeline[1]


def spawn(
    argv: Sequence[str],
    log: Path | None = None,
    env: dict[str, str] | None = None,
    **kwargs: Any,
) -> subprocess.Popen[bytes]:
    """Start `argv` under a guard, output to `log` (or discarded), tied to this process's
    life. The returned process is the guard: signals to it reach `argv`, and it exits
    as `argv` did."""
    fd = lifeline()
    out: IO[bytes] | int = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115
    try:
        return subprocess.Popen(
            [*GUARD, str(fd), str(GRACE_S), "--", *argv],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            pass_fds=(fd,),
            **kwargs,
        )
    finally:
        if not isinstance(out, int):
            out.close()  # the child holds its own copy


def stop(proc: subprocess.Popen[bytes], grace_s: float = 10.0) -> int:
    """SIGTERM, then SIGKILL after `grace_s`; return the exit code."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return int(proc.returncode)


def stop_all(procs: Sequence[subprocess.Popen[bytes]], grace_s: float = 10.0) -> None:
    """SIGTERM to every process at once, then SIGKILL to those still running after
    `grace_s` (one grace period for all: stopping ten workers one at a time could take
    ten of them)."""
    running = [p for p in procs if p.poll() is None]
    for proc in running:
        proc.terminate()
    deadline = time.monotonic() + grace_s
    for proc in running:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
