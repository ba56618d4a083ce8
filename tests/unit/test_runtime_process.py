"""`spawn`: a child lives as long as the process that spawned it — not the thread — and
dies with it, however it ends; `stop` and exit statuses see through the guard."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from app.process import spawn, stop, stop_all
from tests.support.checks import present

# A parent that spawns `sleep` from a thread that ends at once, prints its pid, and waits.
PARENT = """
import threading, time
from app.process import spawn
children = []
thread = threading.Thread(target=lambda: children.append(spawn(["sleep", "300"])))
thread.start(); thread.join()
print(children[0].pid, flush=True)
time.sleep(300)
"""


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[1][0] != "Z"  # a zombie has ended
    except FileNotFoundError:
        return False


def command_of(guard: int) -> int:
    """The pid of the command a guard runs, once it has started it."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = subprocess.run(["pgrep", "-P", str(guard)], capture_output=True, text=True)
        if found.stdout.split():
            (pid,) = found.stdout.split()
            return int(pid)
        time.sleep(0.05)
    raise AssertionError(f"guard {guard} started nothing")


def test_a_child_outlives_the_spawning_thread_and_dies_with_the_process() -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    try:
        guard = int(present(parent.stdout).readline())
        command = command_of(guard)
        time.sleep(1.0)
        assert alive(guard) and alive(command)  # the thread that spawned them is gone
        parent.kill()
        deadline = time.monotonic() + 5
        while (alive(guard) or alive(command)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(guard) and not alive(command)
    finally:
        parent.kill()
        parent.wait()
        present(parent.stdout).close()


def test_stop_ends_the_command_and_reports_its_status() -> None:
    proc = spawn(["sleep", "300"])
    command = command_of(proc.pid)
    assert stop(proc) == -signal.SIGTERM
    assert not alive(command)
    assert spawn([sys.executable, "-c", "raise SystemExit(3)"]).wait(30) == 3


def test_a_killed_guard_takes_its_command_with_it() -> None:
    proc = spawn(["sleep", "300"])
    command = command_of(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 5
    while alive(command) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(command)


def test_stop_all_signals_every_process_at_once_and_kills_the_deaf_after_one_grace() -> None:
    deaf = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print(1, flush=True); time.sleep(60)"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", deaf], stdout=subprocess.PIPE) for _ in range(3)
    ]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline()  # the handler is in place
    started = time.monotonic()
    stop_all(procs, grace_s=2.0)
    for proc in procs:
        present(proc.stdout).close()
    assert all(proc.returncode == -signal.SIGKILL for proc in procs)
    assert time.monotonic() - started < 5.0  # one grace for all (one each: 6 s or more)


def test_free_ports_are_drawn_below_the_ephemeral_range_where_outgoing_connections_live() -> None:
    import socket

    from sandboxes.base import _ephemeral_low, free_port

    low = _ephemeral_low()
    for _ in range(20):
        port = free_port()
        assert port < low or low <= 21000
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", port))  # free indeed
