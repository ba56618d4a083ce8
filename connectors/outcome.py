"""What became of one record handed to a destination API: a closed set of outcomes.

A sink's `deliver(records)` answers one `Outcome` per record, in input order; the runner
(`connectors.runner`) acts on them: accepted and skipped records are done, rejected ones
go to the dead-letter topic with their reason, and retry ones are delivered again after
the shared backoff (or after `retry_after`, e.g. a rate limit). A retry outcome whose
error is `QuotaExhausted` makes the runner stop fetching until the quota comes back.

The runner is the one owner of a delivery's retries: nothing below it retries a sink's
call (`fan_out` sends each call once, the sinks' API clients make one attempt). What a
retry outcome `counts` against tells the runner which bound applies (`Counts`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TypeVar

from actions_sync.errors import Backpressure, Retriable
from connectors.errors import QuotaExhausted, Rejected
from connectors.resolution import Scope

__all__ = [
    "SPLIT_CALLS_MAX",
    "Counts",
    "Kind",
    "Outcome",
    "accepted",
    "call_failed",
    "chunks",
    "fan_out",
    "rejected",
    "retry",
    "skipped",
]

T = TypeVar("T")

# More calls one batch may spend on finding refused records: one Marketo rate window
# (100 calls in 20 s). k bad records in a call of n cost at most 2·k·log2(n) more calls:
# ~17 for one in 300, so about 6 are found in one batch, the rest in the next attempt.
SPLIT_CALLS_MAX = 100


class Kind(Enum):
    ACCEPTED = "accepted"  # the API holds the effect now
    SKIPPED = "skipped"  # the effect was already there (ledger) or superseded in the batch
    REJECTED = "rejected"  # the API refuses this record: dead-letter it with the reason
    RETRY = "retry"  # transient: deliver it again later


class Counts(Enum):
    """What a retry outcome counts against (the runner bounds each of a record's counts)."""

    RECORD_ATTEMPT = "record_attempt"  # the API refused this record for now: `record_attempts`
    FAILED_CALL = "failed_call"  # its call failed as a whole (the API is down, 5xx, a
    # timeout), which says nothing of the record: `call_attempts`
    NOTHING = "nothing"  # no call failed: the API asked to wait (rate limit), or a wait of
    # our own (the Marketo sink's settle time, another worker's claim)


@dataclass(frozen=True, slots=True)
class Outcome:
    kind: Kind
    error: BaseException | None = None
    retry_after: float = 0.0  # seconds, a floor on the wait before the retry
    counts: Counts = Counts.RECORD_ATTEMPT  # (read for RETRY only)

    @property
    def quota(self) -> bool:
        """A daily quota is used up: stop fetching, not just back off."""
        return isinstance(self.error, QuotaExhausted)

    @property
    def counts_as_attempt(self) -> bool:
        """Counts against the record's attempts (`RunnerConfig.record_attempts`)."""
        return self.counts is Counts.RECORD_ATTEMPT


_ACCEPTED = Outcome(Kind.ACCEPTED)
_SKIPPED = Outcome(Kind.SKIPPED)


def accepted() -> Outcome:
    return _ACCEPTED


def skipped() -> Outcome:
    return _SKIPPED


def rejected(error: BaseException) -> Outcome:
    return Outcome(Kind.REJECTED, error)


def retry(error: BaseException, counts: Counts = Counts.RECORD_ATTEMPT) -> Outcome:
    after = error.retry_after if isinstance(error, Backpressure) else 0.0
    return Outcome(Kind.RETRY, error, after, counts)


def call_failed(error: Retriable) -> Outcome:
    """The outcome of each record of a call that failed as a whole with `error`: a failed
    call (an unavailable API), or nothing when the API only asked to wait (606, 615,
    `Retry-After`; a used-up quota pauses the runner instead)."""
    return retry(error, Counts.NOTHING if isinstance(error, Backpressure) else Counts.FAILED_CALL)


def chunks(items: Sequence[T], size: int) -> list[Sequence[T]]:
    """`items` in slices of at most `size` (an API's batch maximum)."""
    return [items[i : i + size] for i in range(0, len(items), size)]


async def fan_out(
    items: Sequence[T],
    size: int,
    send: Callable[[Sequence[T]], Awaitable[list[Outcome]]],
    split_calls: int = SPLIT_CALLS_MAX,
) -> list[Outcome]:
    """Send `items` in calls of at most `size`, concurrently (the client's limiter caps
    calls in flight), and answer one outcome per item, in order.

    Each call is sent once: retrying is the runner's. A call that fails as a whole gives
    each of its records the outcome of the error: a transient one (`Retriable`, including
    rate limits and quotas) -> retry (`call_failed`), not counted against the record's
    attempts (the API is down, the record may be fine). A `Rejected`
    call is rejected whole when the refusal is about the call (`Scope.CALL`); when it is
    about some of its records, it is split in halves until they are found (`_bisect`),
    with at most `split_calls` more calls for all of `items`. Other errors (`Fatal`)
    propagate once every call has ended, so that no call is left running unobserved.
    """
    splits = _Splits(split_calls)
    return _joined(
        await asyncio.gather(
            *(_answer(part, send, splits) for part in chunks(items, size)), return_exceptions=True
        )
    )


Send = Callable[[Sequence[T]], Awaitable[list[Outcome]]]


class _Splits:
    """The calls one batch has left for splitting refused calls."""

    def __init__(self, left: int) -> None:
        self.left = left

    def take(self) -> bool:
        """Two calls for the two halves of a call, if there are two left."""
        if self.left < 2:
            return False
        self.left -= 2
        return True


def _joined(answers: Sequence[list[Outcome] | BaseException]) -> list[Outcome]:
    out: list[Outcome] = []
    for answer in answers:
        if isinstance(answer, BaseException):
            raise answer
        out += answer
    return out


async def _answer(part: Sequence[T], send: Send[T], splits: _Splits) -> list[Outcome]:
    """Send one call and resolve what its answer means for each of its records."""
    try:
        answer: list[Outcome] | BaseException = await send(part)
    except (Retriable, Rejected) as exc:
        answer = exc
    if isinstance(answer, Rejected):
        return await _bisect(part, send, answer, splits)
    if isinstance(answer, Retriable):
        return [call_failed(answer)] * len(part)
    if isinstance(answer, BaseException):
        raise answer
    return answer


async def _bisect(
    part: Sequence[T], send: Send[T], refusal: Rejected, splits: _Splits
) -> list[Outcome]:
    """`part` was refused as a whole: find the records that cause it, send the rest.

    A refusal about the call (auth, configuration, a field every record carries) rejects
    every record: halves would be refused alike. One about records, or about the size,
    splits the call until each refusal holds one record, which is rejected on its own:
    one bad record costs ~2 log2(n) more calls. When the batch's split calls are spent,
    the records not found yet are retried later (counted), not dead-lettered.
    """
    if refusal.scope is Scope.CALL or len(part) == 1:
        return [rejected(refusal)] * len(part)
    if not splits.take():
        later = Retriable(
            f"refused call not split further (the batch spent its split calls): {refusal}"
        )
        return [retry(later)] * len(part)
    middle = len(part) // 2
    return _joined(
        await asyncio.gather(
            *(_answer(half, send, splits) for half in (part[:middle], part[middle:])),
            return_exceptions=True,
        )
    )
