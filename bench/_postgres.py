"""The tests' throwaway PostgreSQL server (`tests/support/postgres.py`) for the benchmarks.

One implementation for both: the benchmarks run from the repository root with `bench/` on
the path, so the repository root is put on it too to import the tests' module.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(1, str(Path(__file__).resolve().parents[1]))

from tests.support.postgres import (
    DURABLE_SETTINGS,
    SERVER_SETTINGS,
    PostgresServer,
    _postmaster_pid,
)

__all__ = ["DURABLE_SETTINGS", "SERVER_SETTINGS", "PostgresServer", "postmaster_pid"]


def postmaster_pid(server: PostgresServer) -> int:
    """The server's postmaster (its backends are its children)."""
    pid = _postmaster_pid(server.data_dir)
    if pid is None:
        raise RuntimeError(f"no postmaster.pid in {server.data_dir}")
    return pid
