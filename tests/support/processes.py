"""The process behind a local TCP listener, read from /proc (Linux): the broker a test
stops and continues, whether it is the fixture's Tansu or the Apache Kafka of the tier."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

LISTEN = "0A"  # TCP state in /proc/net/tcp


def listener_pid(port: int) -> int:
    """The pid of the process listening on loopback `port` (it must be one of ours)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as rows:
            for row in list(rows)[1:]:
                fields = row.split()
                if fields[3] == LISTEN and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{fields[9]}]")
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if any(os.readlink(fd) in inodes for fd in (proc / "fd").iterdir()):
                return int(proc.name)
        except OSError:  # gone meanwhile, or not ours
            continue
    raise LookupError(f"no process of ours listens on port {port}")


def pause(bootstrap: str, seconds: float, stopped: threading.Event | None = None) -> None:
    """Stop the broker at `bootstrap` (SIGSTOP) for `seconds`, `stopped` set meanwhile,
    then let it go on (SIGCONT)."""
    pid = listener_pid(int(bootstrap.rsplit(":", 1)[1]))
    os.kill(pid, signal.SIGSTOP)
    if stopped is not None:
        stopped.set()
    try:
        time.sleep(seconds)
    finally:
        os.kill(pid, signal.SIGCONT)
