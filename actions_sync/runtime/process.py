"""Child processes that never outlive their parent, and stop cleanly."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

__all__ = ["die_with_parent", "spawn", "stop"]

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:  # pragma: no cover - runs in the child
    # Linux: the kernel sends SIGTERM to the child when the parent dies, even by SIGKILL,
    # so a crashed `demo` or test run leaves no broker or worker behind.
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(
    argv: Sequence[str],
    log: Path | None = None,
    env: dict[str, str] | None = None,
    **kwargs: Any,
) -> subprocess.Popen[bytes]:
    """Start `argv`, output to `log` (or discarded), tied to this process's life."""
    out: IO[bytes] | int = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115
    try:
        return subprocess.Popen(
            list(argv), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            preexec_fn=die_with_parent if os.name == "posix" else None,
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
