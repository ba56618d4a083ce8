"""The one retry policy: exponential backoff with full jitter, through an injected clock.

`retrying` awaits an async call; `retrying_blocking` is the same loop for code that runs
in a thread of its own (a Kafka write in a pipeline's store thread), sleeping through an
injected `sleep`. Both decide when to give up and how long to wait in `_wait`. Each retry
is logged once: by the caller's `on_retry` when it gives one (it knows what failed), else
here.

Who retries what (one owner per failure, never stacked: docs/architecture.md):
a sink's deliveries are retried by `connectors.runner` only (the sinks' API clients make
one attempt per call); a source's or reader's API call by its `connectors.http.ApiClient`;
a source's failed poll by the source's own loop; a stream worker's batch by
`streams.pipeline`; a Kafka write by `actions_sync.kafka.acknowledged` or the dead-letter
producer. Every one of them goes through this module.

Full jitter (a uniform draw in [0, min(cap, base * factor**attempt)]) spreads retries of
many workers apart after a shared failure, instead of synchronising them into bursts.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from actions_sync.clock import Clock, StopClock, SystemClock
from actions_sync.errors import Backpressure, Retriable

__all__ = [
    "POLL_BACKOFF",
    "Backoff",
    "Interrupted",
    "retrying",
    "retrying_blocking",
    "retrying_step",
]

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backoff:
    base_s: float = 0.2
    cap_s: float = 30.0
    factor: float = 2.0
    rng: random.Random = field(default_factory=random.Random, compare=False)

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number `attempt` (0-based)."""
        return self.rng.uniform(0, min(self.cap_s, self.base_s * self.factor**attempt))


# A source's failed poll step, after its client's own retries of the call: 5 s on average
# once capped, as the fixed pause it replaced.
POLL_BACKOFF = Backoff(base_s=2.5, cap_s=10.0)


async def retrying(
    call: Callable[[], Awaitable[T]],
    *,
    backoff: Backoff | None = None,
    clock: Clock | None = None,
    max_attempts: int | None = None,
    retry_on: tuple[type[BaseException], ...] = (Retriable,),
    give_up_on: tuple[type[BaseException], ...] = (),
    on_retry: Callable[[BaseException, float], None] | None = None,
) -> T:
    """Await `call()` until it succeeds; retry the errors in `retry_on`.

    `Backpressure.retry_after` is honoured as a floor on the wait. After `max_attempts`
    (None = forever) the last error propagates; errors in `give_up_on` propagate at once
    (e.g. a daily quota: the caller pauses its work instead of this loop sleeping).
    """
    backoff = backoff or Backoff()
    clock = clock or SystemClock()
    attempt = 0
    while True:
        try:
            return await call()
        except give_up_on:
            raise
        except retry_on as exc:
            attempt += 1
            if max_attempts is not None and attempt >= max_attempts:
                raise
            wait = _wait(exc, attempt, backoff, on_retry)
        await clock.sleep(wait)


class Interrupted(Exception):  # what happened, not an error of the call
    """A source's step was left mid-retries: shutdown, or its setting turned off."""


async def retrying_step(
    call: Callable[[], Awaitable[T]],
    *,
    what: str,
    stop: asyncio.Event,
    running: Callable[[], bool] = lambda: True,
    backoff: Backoff | None = None,
    give_up_on: tuple[type[BaseException], ...] = (),
) -> T:
    """`retrying` for one step of a source's poll loop (the loop owns its poll's retries):
    `call()` until it succeeds, waking at once on `stop`; `Interrupted` when `stop` is set
    or `running()` turns False before an attempt. Each retry is logged as `what` failing."""

    async def step() -> T:
        if stop.is_set() or not running():
            raise Interrupted(what)
        return await call()

    def logged(exc: BaseException, wait: float) -> None:
        # str(exc): a kept log record must not hold the traceback (and the clients in it)
        log.warning("%s: %s; again from the checkpoint in %.1fs", what, str(exc), wait)

    return await retrying(
        step,
        backoff=backoff or POLL_BACKOFF,
        clock=StopClock(stop),
        give_up_on=give_up_on,
        on_retry=logged,
    )


def retrying_blocking(
    call: Callable[[], T],
    *,
    backoff: Backoff | None = None,
    sleep: Callable[[float], None] = time.sleep,
    max_attempts: int | None = None,
    retry_on: tuple[type[BaseException], ...] = (Retriable,),
    on_retry: Callable[[BaseException, float], None] | None = None,
) -> T:
    """`retrying` for a blocking `call`, in a thread that may block: the same policy."""
    backoff = backoff or Backoff()
    attempt = 0
    while True:
        try:
            return call()
        except retry_on as exc:
            attempt += 1
            if max_attempts is not None and attempt >= max_attempts:
                raise
            wait = _wait(exc, attempt, backoff, on_retry)
        sleep(wait)


def _wait(
    exc: BaseException,
    attempt: int,
    backoff: Backoff,
    on_retry: Callable[[BaseException, float], None] | None,
) -> float:
    """Seconds before retry `attempt` (1-based) after `exc`; tells `on_retry`, or else the
    log (not both: a caller's `on_retry` logs the retry its own way, and both made two
    lines per attempt)."""
    wait = backoff.delay(attempt - 1)
    if isinstance(exc, Backpressure):
        wait = max(wait, exc.retry_after)
    if on_retry:
        on_retry(exc, wait)
    else:
        log.warning("retry %d in %.2fs after %s: %s", attempt, wait, type(exc).__name__, exc)
    return wait
