"""Dead letters that fit their topic (issue 10, item 3), and the blocking retry loop the
Kafka writes share with the async one: pure parts, no broker."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actions_sync.dead_letter import HEADERS, DeadLetter, _room, _runs, dead_letter
from actions_sync.errors import Backpressure, Retriable, RuleViolation
from actions_sync.retry import Backoff, retrying_blocking
from tests.support.checks import present


def letter(key: bytes | None, value: bytes | None) -> DeadLetter:
    return dead_letter("people", 3, 41, key, value, RuleViolation("x" * 500))


@given(
    key=st.integers(0, 3_000_000),
    value=st.integers(0, 3_000_000),
    limit=st.integers(20_000, 2_000_000),
)
def test_a_fitted_letter_fits_keeps_its_headers_and_says_what_was_cut(
    key: int, value: int, limit: int
) -> None:
    original = letter(b"k" * key, b"v" * value)
    fitted = original.fitted(limit)
    assert fitted.size <= _room(limit) < limit
    assert fitted.headers[: len(HEADERS)] == original.headers  # the reason, untouched
    assert present(original.value).startswith(present(fitted.value))
    assert present(original.key).startswith(present(fitted.key))
    extra = dict(fitted.headers[len(HEADERS) :])
    for name, data in (("key", present(original.key)), ("value", present(original.value))):
        cut = len(getattr(fitted, name)) < len(data)
        assert (f"{name}.truncated" in extra) == cut
        if cut:
            assert extra[f"{name}.truncated"] == b"true"
            assert extra[f"{name}.original_size"] == str(len(data)).encode()


def test_a_letter_that_fits_is_sent_as_it_is() -> None:
    original = letter(b"7", b"v" * 900_000)
    assert original.fitted(1_048_588) is original
    assert original.fitted(500_000).value == b"v" * len(present(original.fitted(500_000).value))


def test_runs_never_add_up_to_more_than_one_batch() -> None:
    pairs = [(x, x) for x in (letter(b"k", b"v" * n) for n in (400, 900, 100, 1000, 10))]
    runs = list(_runs(pairs, room=2_000))
    assert [p for run in runs for p in run] == pairs  # all, in order
    assert all(sum(f.size for _, f in run) <= 2_000 for run in runs if len(run) > 1)


def test_blocking_retries_wait_by_the_shared_policy_and_honour_retry_after() -> None:
    calls: list[int] = []
    sleeps: list[float] = []

    def call() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise Backpressure("slow down", retry_after=7.0)
        if len(calls) < 4:
            raise Retriable("broker away")
        return "done"

    backoff = Backoff(base_s=1, cap_s=8, rng=random.Random(1))
    assert retrying_blocking(call, backoff=backoff, sleep=sleeps.append) == "done"
    assert len(sleeps) == 3 and sleeps[0] >= 7.0 and all(0 <= s <= 8 for s in sleeps)


def test_blocking_retries_stop_after_max_attempts_and_let_other_errors_through() -> None:
    sleeps: list[float] = []

    def away() -> None:
        raise Retriable("broker away")

    with pytest.raises(Retriable):
        retrying_blocking(away, sleep=sleeps.append, max_attempts=3)
    assert len(sleeps) == 2

    def broken() -> None:
        raise ValueError("a bug")

    with pytest.raises(ValueError):
        retrying_blocking(broken, sleep=sleeps.append)
    assert len(sleeps) == 2
