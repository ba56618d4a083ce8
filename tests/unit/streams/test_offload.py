"""The helper-process stage: results come back, and a dead helper is replaced."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from actions_sync.errors import Retriable
from streams.offload import ProcessStage

_prefix = ""


def set_prefix(prefix: str) -> None:
    global _prefix
    _prefix = prefix


def work(arg: str) -> tuple[str, int]:
    return _prefix + arg, os.getpid()


def stage() -> ProcessStage:
    return ProcessStage("test", set_prefix, ("set up once: ",), work)


def test_work_runs_in_a_helper_process_set_up_once() -> None:
    helper = stage()
    try:
        (first, pid), (second, same) = helper("a"), helper("b")
    finally:
        helper.close()
    assert (first, second) == ("set up once: a", "set up once: b")
    assert pid == same != os.getpid()


def test_ready_starts_the_helper_without_waiting_for_it() -> None:
    helper = stage()
    try:
        started = time.monotonic()
        first = helper.ready()  # starts it: a spawned interpreter is not up this soon
        asked_in = time.monotonic() - started
        while not helper.ready():
            assert time.monotonic() - started < 60, "the helper never came up"
            time.sleep(0.01)
        up_in = time.monotonic() - started
        result, pid = helper("a")
    finally:
        helper.close()
    assert first is False and asked_in < up_in / 2
    assert result == "set up once: a" and pid != os.getpid()


def test_a_dead_helper_fails_the_call_retriably_and_is_replaced() -> None:
    helper = stage()
    try:
        _, pid = helper("a")
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(Retriable, match="helper process died"):
            helper("b")
        result, new_pid = helper("c")
    finally:
        helper.close()
    assert result == "set up once: c" and new_pid != pid


def test_the_people_helper_imports_none_of_the_worker() -> None:
    """What the people worker's helper unpickles (`streams.helper`, the people `prepare`)
    imports no faust, aiokafka, SQLAlchemy, psycopg or the CLI: each would be MBs of RSS
    per worker."""
    heavy = ("faust", "aiokafka", "sqlalchemy", "alembic", "psycopg", "typer", "app.cli")
    probe = (
        "import sys, streams.helper, streams.people_prepare;"
        f" print(sorted(m for m in {heavy!r} if m in sys.modules))"
    )
    found = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert found == "[]"


def test_a_batch_reaches_the_helper_as_the_records_it_was(monkeypatch: pytest.MonkeyPatch) -> None:
    import pickle

    from streams import helper
    from streams.batch import RawRecord

    records = [RawRecord("t", 3, 10, b"10", b"\x00v"), RawRecord("t", 5, 2**40, None, None)]
    monkeypatch.setattr(helper, "_decode", lambda value: {})
    shipped = pickle.loads(pickle.dumps(helper.columns("t", records)))
    received = helper.prepare(lambda got, decode: got, shipped)
    assert received == records and all(type(r) is RawRecord for r in received)
    assert received[1].dead(ValueError("x")).header("source.offset") == str(2**40)
