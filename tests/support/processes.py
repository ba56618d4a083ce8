"""The process behind a local TCP listener, read from /proc (Linux): the broker a test
stops and continues, whether it is the fixture's Tansu or the Apache Kafka of the tier."""

from __future__ import annotations

import os
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
