"""What became of one record handed to a destination API: a closed set of outcomes.

A sink's `deliver(records)` answers one `Outcome` per record, in input order; the runner
(`connectors.runner`) acts on them: accepted and skipped records are done, rejected ones
go to the dead-letter topic with their reason, and retry ones are delivered again after
the shared backoff (or after `retry_after`, e.g. a rate limit). A retry outcome whose
error is `QuotaExhausted` makes the runner stop fetching until the quota comes back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TypeVar

from actions_sync.errors import Backpressure, Retriable
from connectors.errors import QuotaExhausted, Rejected

__all__ = ["Kind", "Outcome", "accepted", "chunks", "fan_out", "rejected", "retry", "skipped"]

T = TypeVar("T")


class Kind(Enum):
    ACCEPTED = "accepted"  # the API holds the effect now
    SKIPPED = "skipped"  # the effect was already there (ledger) or superseded in the batch
    REJECTED = "rejected"  # the API refuses this record: dead-letter it with the reason
    RETRY = "retry"  # transient: deliver it again later


@dataclass(frozen=True, slots=True)
class Outcome:
    kind: Kind
    error: BaseException | None = None
    retry_after: float = 0.0  # seconds, a floor on the wait before the retry
    counted: bool = True  # False: the whole call failed, which says nothing of the record

    @property
    def quota(self) -> bool:
        """A daily quota is used up: stop fetching, not just back off."""
        return isinstance(self.error, QuotaExhausted)


_ACCEPTED = Outcome(Kind.ACCEPTED)
_SKIPPED = Outcome(Kind.SKIPPED)


def accepted() -> Outcome:
    return _ACCEPTED


def skipped() -> Outcome:
    return _SKIPPED


def rejected(error: BaseException) -> Outcome:
    return Outcome(Kind.REJECTED, error)


def retry(error: BaseException, counted: bool = True) -> Outcome:
    after = error.retry_after if isinstance(error, Backpressure) else 0.0
    return Outcome(Kind.RETRY, error, after, counted)


def chunks(items: Sequence[T], size: int) -> list[Sequence[T]]:
    """`items` in slices of at most `size` (an API's batch maximum)."""
    return [items[i:i + size] for i in range(0, len(items), size)]


async def fan_out(items: Sequence[T], size: int,
                  send: Callable[[Sequence[T]], Awaitable[list[Outcome]]]) -> list[Outcome]:
    """Send `items` in calls of at most `size`, concurrently (the client's limiter caps
    calls in flight), and answer one outcome per item, in order.

    A call that fails as a whole gives each of its records the outcome of the error: a
    transient one (`Retriable`, including rate limits and quotas) -> retry, not counted
    against the record's attempts (the API is down, the record may be fine). A `Rejected`
    call of several records is split in halves and each sent again (`_bisect`), so that
    one bad record does not take the others to the dead-letter topic. Other errors
    (`Fatal`) propagate once every call has ended, so that no call is left running
    unobserved.
    """
    parts = chunks(items, size)
    answers = await asyncio.gather(*(_answer(part, send) for part in parts),
                                   return_exceptions=True)
    out: list[Outcome] = []
    for answer in answers:
        if isinstance(answer, BaseException):
            raise answer
        out += answer
    return out


# Refusals of a request's size: halves are smaller, so they are always worth sending.
_SIZE_CODES = frozenset({"413", "414"})


Send = Callable[[Sequence[T]], Awaitable[list[Outcome]]]


async def _answer(part: Sequence[T], send: Send[T]) -> list[Outcome]:
    try:
        answer: list[Outcome] | BaseException = await send(part)
    except (Retriable, Rejected) as exc:
        answer = exc
    return await _settle(part, answer, send)


async def _settle(part: Sequence[T], answer: list[Outcome] | BaseException,
                  send: Send[T]) -> list[Outcome]:
    """What the answer to one call of `part` means for each of its records."""
    if isinstance(answer, Rejected):
        return await _bisect(part, send, answer)
    if isinstance(answer, Retriable):
        return [retry(answer, counted=False)] * len(part)
    if isinstance(answer, BaseException):
        raise answer
    return answer


async def _bisect(part: Sequence[T], send: Send[T], refusal: Rejected) -> list[Outcome]:
    """`part` was refused as a whole: find the records that cause it, send the rest.

    One bad record costs ~2 log2(n) more calls. When both halves are refused with the
    same code the refusal is about something they share (a field every record has, a
    configuration): all are rejected after those two calls, as the first refusal said —
    no storm of calls against the rate limit. Too large a request is always split.
    """
    if len(part) == 1:
        return [rejected(refusal)]
    middle = len(part) // 2
    halves = (part[:middle], part[middle:])
    answers = await asyncio.gather(*(send(half) for half in halves), return_exceptions=True)
    if refusal.code not in _SIZE_CODES and all(
            isinstance(a, Rejected) and a.code == refusal.code for a in answers):
        return [rejected(refusal)] * len(part)
    out: list[Outcome] = []
    for half, answer in zip(halves, answers, strict=True):
        out += await _settle(half, answer, send)
    return out
