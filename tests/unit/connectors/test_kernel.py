"""The shared connector mechanism: pacing, tokens, classification-driven retries."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import httpx
import pytest

from actions_sync.errors import Retriable
from actions_sync.retry import Backoff
from connectors.auth import TokenCache
from connectors.errors import ApiFatal, QuotaExhausted, Rejected
from connectors.http import ApiClient
from connectors.ratelimit import Limiter, Pace, RollingWindow
from connectors.resolution import Action, Resolution, ok
from tests.fakes import FakeClock

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def test_rolling_window_admits_at_most_n_calls_in_any_window() -> None:
    clock = FakeClock()
    window = RollingWindow(calls=100, window_s=20, clock=clock, margin_s=0)

    async def starts() -> list[float]:
        times = []
        for _ in range(250):
            await window.acquire()
            times.append(clock.t)
            window.release()  # answered at once
        return times

    times = run(starts())
    assert all(sum(1 for t in times if s <= t < s + 20) <= 100 for s in times)
    assert times[99] == 0 and times[100] == 20 and times[200] == 40


def test_rolling_window_counts_a_slow_call_from_its_answer() -> None:
    """The server counts a call when it arrives, which may be just before its answer:
    a window counted from our sends would let the next window's calls share the
    server's window with a slow one (a 606 from Marketo)."""
    clock = FakeClock()
    window = RollingWindow(calls=2, window_s=10, clock=clock, margin_s=0)

    async def calls() -> list[float]:
        starts = []
        for duration in (0, 5, 0, 0):  # one after the other; the second answers at 5
            await window.acquire()
            starts.append(clock.t)
            clock.t += duration
            window.release()
        return starts

    starts = run(calls())
    # The slow call, sent at 0, answered at 5: the server may count it at 5, so the
    # fourth call waits for 15, not 10 (its send time + the window).
    assert starts == [0, 0, 10, 15]


def test_pace_spends_the_window_evenly_and_never_trips_it() -> None:
    clock = FakeClock()
    pace = Pace(calls=100, window_s=20, clock=clock)  # 0.25 s margin: every 0.2025 s

    async def starts() -> list[float]:
        times = []
        for _ in range(250):
            await pace.wait()
            times.append(clock.t)
        return times

    times = run(starts())
    assert times[:3] == pytest.approx([0, 0.2025, 0.405])
    assert times[249] == pytest.approx(249 * 0.2025)
    assert all(sum(1 for t in times if s <= t < s + 20) <= 100 for s in times)


def test_pace_says_how_long_until_the_next_call_may_start() -> None:
    clock = FakeClock()
    pace = Pace(calls=50, window_s=19.75, clock=clock)  # one call every 0.4 s

    assert pace.due_in() == 0
    run(pace.wait())
    clock.t += 0.1
    assert pace.due_in() == pytest.approx(0.3)
    clock.t += 1
    assert pace.due_in() == 0


def test_pace_lets_unused_slots_be_used_late_within_the_window() -> None:
    clock = FakeClock()
    pace = Pace(calls=100, window_s=19.75, clock=clock, burst=5)  # every 20 s / 96

    async def starts(n: int) -> list[float]:
        times = []
        for _ in range(n):
            await pace.wait()
            times.append(clock.t)
        return times

    first = run(starts(1))
    clock.t += 10  # busy elsewhere: slots went unused
    times = first + run(starts(300))
    assert times[1:6] == pytest.approx([10] * 5)  # the credit: five at once, then steady
    assert times[6] == pytest.approx(10 + 20 / 96)
    assert all(sum(1 for t in times if s <= t < s + 20 - 1e-9) <= 100 for s in times)


def test_limiter_caps_calls_in_flight() -> None:
    limiter, busy, peak = Limiter("test", max_in_flight=3), 0, 0

    async def call() -> None:
        nonlocal busy, peak
        async with limiter:
            busy += 1
            peak = max(peak, busy)
            await asyncio.sleep(0.01)
            busy -= 1

    async def many() -> None:
        await asyncio.gather(*(call() for _ in range(20)))

    run(many())
    assert peak == 3


def test_token_is_fetched_once_for_concurrent_callers() -> None:
    calls = 0

    async def fetch() -> tuple[str, float]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        return f"t{calls}", 3600.0

    cache = TokenCache(fetch)

    async def many() -> list[str]:
        return await asyncio.gather(*(cache.get() for _ in range(10)))

    assert run(many()) == ["t1"] * 10 and calls == 1


def test_token_is_refreshed_ahead_of_expiry_and_once_per_invalidation() -> None:
    clock, tokens = FakeClock(), iter(["a", "b", "c"])

    async def fetch() -> tuple[str, float]:
        return next(tokens), 3600.0

    cache = TokenCache(fetch, clock, refresh_ahead_s=60)

    async def scenario() -> tuple[str, str, str]:
        first = await cache.get()
        clock.t = 3550  # within the refresh-ahead window
        second = await cache.get()
        await cache.invalidate("a")  # stale: someone already refreshed
        await cache.invalidate("b")  # current: refresh
        return first, second, await cache.get()

    assert run(scenario()) == ("a", "b", "c")


def test_same_token_returned_early_is_kept_until_it_expires() -> None:
    clock, fetched = FakeClock(), list[float]()

    async def fetch() -> tuple[str, float]:
        fetched.append(clock.t)
        return "same", 3600.0 - clock.t

    cache = TokenCache(fetch, clock, refresh_ahead_s=60)

    async def scenario() -> str:
        await cache.get()
        clock.t = 3560
        await cache.get()  # refresh: same token, 40 s left
        clock.t = 3590
        return await cache.get()  # no further fetch until it really expires

    assert run(scenario()) == "same" and fetched == [0, 3560]


def classify(response: httpx.Response) -> Resolution:
    table = {
        "retry": Action.RETRY,
        "slow": Action.RATE_LIMITED,
        "expired": Action.REFRESH_AUTH,
        "quota": Action.QUOTA_EXHAUSTED,
        "bad": Action.REJECTED,
        "denied": Action.FATAL,
    }
    code = response.json().get("code")
    return ok() if code is None else Resolution(table[code], code, retry_after=5.0)


def client(
    answers: list[dict[str, Any]], clock: FakeClock | None = None, auth: TokenCache | None = None
) -> tuple[ApiClient, list[str | None]]:
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization"))
        return httpx.Response(200, json=answers.pop(0))

    api = ApiClient(
        "test",
        "http://api.invalid",
        classify,
        Limiter("test", 5),
        auth=auth,
        backoff=Backoff(base_s=1, cap_s=8),
        clock=clock or FakeClock(),
        max_attempts=4,
        transport=httpx.MockTransport(handler),
    )
    return api, seen


def test_transient_errors_are_retried_with_backoff_until_success() -> None:
    clock = FakeClock()
    api, seen = client([{"code": "retry"}, {"code": "slow"}, {}], clock)
    response = run(api.request("GET", "/x", "x"))
    assert response.json() == {} and len(seen) == 3
    assert clock.sleeps[1] >= 5.0  # rate-limited: at least the retry_after the API asked
    run(api.aclose())


def test_expired_token_is_refreshed_and_the_call_replayed_once() -> None:
    tokens = iter(["old", "new"])

    async def fetch() -> tuple[str, float]:
        return next(tokens), 3600.0

    api, seen = client([{"code": "expired"}, {}], auth=TokenCache(fetch))
    run(api.request("GET", "/x", "x"))
    assert seen == ["Bearer old", "Bearer new"]
    run(api.aclose())


@pytest.mark.parametrize(
    ("code", "error"), [("quota", QuotaExhausted), ("bad", Rejected), ("denied", ApiFatal)]
)
def test_non_retryable_answers_raise_what_the_caller_must_do(
    code: str, error: type[Exception]
) -> None:
    api, seen = client([{"code": code}, {}])
    with pytest.raises(error):
        run(api.request("GET", "/x", "x"))
    assert len(seen) == 1  # not retried
    run(api.aclose())


def test_retries_stop_after_max_attempts() -> None:
    api, seen = client([{"code": "retry"}] * 4)
    with pytest.raises(Retriable):
        run(api.request("GET", "/x", "x"))
    assert len(seen) == 4
    run(api.aclose())
