"""No orphans, whatever kills the parent (issue 10, item 7): `kill -9` of `actions-sync up`
or `actions-sync demo` mid-run leaves no broker, sandbox, worker or helper process behind
within 5 s. Processes are found by a marker in their environment (every child inherits
it), not by name, so that other runs on the machine never count."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

MARK = "ACTIONS_SYNC_TEST_ORPHAN_MARK"  # not a setting: only a tag the children inherit
# A people worker's helper spawned just before the kill first imports its modules, then
# sees its parent gone and exits (streams/offload.py): seconds on 2 loaded cores.
GONE_WITHIN_S = 30.0


def marked(mark: str) -> dict[int, str]:
    """pid -> command line of every live process whose environment holds the mark."""
    tag = f"{MARK}={mark}".encode()
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):  # gone meanwhile, or not ours to read
            if tag in (entry / "environ").read_bytes().split(b"\0"):
                found[int(entry.name)] = (
                    (entry / "cmdline")
                    .read_bytes()
                    .replace(b"\0", b" ")
                    .decode(errors="replace")
                    .strip()
                )
    return found


@contextlib.contextmanager
def cli(*args: str, cwd: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """`actions-sync ARGS` with a fresh mark; whatever still carries it at the end is
    killed (these are processes this test started)."""
    mark = uuid.uuid4().hex
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ACTIONS_SYNC_")
        and k not in ("KAFKA_BOOTSTRAP_SERVERS", "SCHEMA_REGISTRY_URL", "DATABASE_URL")
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", *args],
        cwd=cwd,
        env={**clean, MARK: mark, "DATABASE_URL": f"sqlite:///{cwd}/s.db"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield proc, mark
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for pid in marked(mark):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def kinds(processes: dict[int, str]) -> set[str]:
    """Which parts of the stack the command lines are."""
    found = set()
    for line in processes.values():
        if "tansu" in line or " broker " in f" {line} ":
            found.add("broker")
        if " sandbox " in line:
            found.add("sandbox")
        if " worker " in line and "app.guard" not in line:
            found.add("worker")
        if "multiprocessing" in line:
            found.add("helper")
    return found


def kill_9_and_wait(proc: subprocess.Popen[bytes], mark: str) -> dict[int, str]:
    """SIGKILL `proc`; what still carries the mark after GONE_WITHIN_S seconds."""
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + GONE_WITHIN_S
    while (left := marked(mark)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def test_kill_9_of_up_leaves_no_process_behind(tmp_path: Path) -> None:
    endpoints = tmp_path / "stack.json"
    with cli("up", "--endpoints-file", str(endpoints), cwd=tmp_path) as (proc, mark):
        wait_for(endpoints.exists, 90, "the stack to come up")
        # No helper: an idle people worker starts none (streams/app.py _Offloaded); the
        # demo's load below starts one.
        wait_for(
            lambda: kinds(marked(mark)) >= {"broker", "sandbox", "worker"},
            60,
            "a broker, the sandboxes and the workers",
        )
        assert kill_9_and_wait(proc, mark) == {}


def test_kill_9_of_demo_mid_run_leaves_no_process_behind(tmp_path: Path) -> None:
    with cli("demo", "--people", "20000", "--activities", "0", cwd=tmp_path) as (proc, mark):
        wait_for(
            lambda: kinds(marked(mark)) >= {"broker", "sandbox", "worker", "helper"},
            90,
            "the demo's broker, sandboxes, people worker and its helper",
        )
        assert proc.poll() is None  # still running: killed mid-run
        assert kill_9_and_wait(proc, mark) == {}
