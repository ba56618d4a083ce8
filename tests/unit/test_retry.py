"""The one retry policy (`actions_sync.retry`): each retry is logged once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest

from actions_sync.errors import Retriable
from actions_sync.retry import Backoff, retrying, retrying_blocking
from tests.fakes import FakeClock


def failing(times: int) -> Callable[[], str]:
    left = [times]

    def call() -> str:
        if left[0]:
            left[0] -= 1
            raise Retriable("HTTP 503")
        return "done"

    return call


def retry_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "503" in r.getMessage()]


def test_a_retry_is_logged_once_by_the_loop_when_the_caller_says_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        assert (
            retrying_blocking(failing(3), backoff=Backoff(base_s=0.001), sleep=lambda _: None)
            == "done"
        )
    assert len(retry_lines(caplog)) == 3


def test_a_retry_is_logged_once_by_the_caller_that_reports_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    call = failing(3)

    async def attempt() -> str:
        return call()

    def reported(exc: BaseException, wait: float) -> None:
        logging.getLogger("caller").warning("caller: %s, again in %.2fs", exc, wait)

    with caplog.at_level(logging.WARNING):
        assert asyncio.run(retrying(attempt, clock=FakeClock(), on_retry=reported)) == "done"
    lines = retry_lines(caplog)
    assert len(lines) == 3 and all(line.startswith("caller: ") for line in lines)
