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
    against the record's attempts (the API is down, the record may be fine), `Rejected`
    -> rejected. Other errors (`Fatal`) propagate once every call has ended, so that no
    call is left running unobserved.
    """
    parts = chunks(items, size)
    answers = await asyncio.gather(*(send(part) for part in parts), return_exceptions=True)
    out: list[Outcome] = []
    for part, answer in zip(parts, answers, strict=True):
        if isinstance(answer, Rejected):
            out += [rejected(answer)] * len(part)
        elif isinstance(answer, Retriable):
            out += [retry(answer, counted=False)] * len(part)
        elif isinstance(answer, BaseException):
            raise answer
        else:
            out += answer
    return out
