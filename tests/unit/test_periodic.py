"""`actions_sync.periodic.Periodic`: the one way a worker runs a job beside its stream."""

from __future__ import annotations

import logging
import threading

import pytest

from actions_sync.periodic import Periodic

WAIT_S = 30.0  # generous: a loaded machine schedules threads late


def test_steps_repeat_and_a_failing_step_does_not_end_the_job(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[int] = []
    third = threading.Event()

    def step() -> None:
        calls.append(len(calls))
        if len(calls) == 1:
            raise RuntimeError("the store is away")
        if len(calls) == 3:
            third.set()

    job = Periodic("job", 0.01, step, failed="the job failed").start()
    assert third.wait(WAIT_S)
    assert job.close()
    assert [r.message for r in caplog.records if r.levelno == logging.ERROR] == ["the job failed"]
    assert "the store is away" in caplog.text  # with its traceback


def test_the_first_step_waits_an_interval_unless_at_once() -> None:
    ran = threading.Event()
    later = Periodic("later", 3600.0, ran.set).start()
    assert not ran.wait(0.2)
    assert later.close()  # wakes at once from its wait
    assert not ran.is_set()

    now = Periodic("now", 3600.0, ran.set, at_once=True).start()
    assert ran.wait(WAIT_S)
    assert now.close()


def test_close_says_when_a_step_outlives_it() -> None:
    release = threading.Event()
    started = threading.Event()

    def stuck() -> None:
        started.set()
        release.wait(WAIT_S)

    job = Periodic("stuck", 0.01, stuck, at_once=True).start()
    assert started.wait(WAIT_S)
    assert not job.close(timeout_s=0.05)
    release.set()
    assert job.close(timeout_s=WAIT_S)
