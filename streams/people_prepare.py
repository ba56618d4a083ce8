"""The people agent's `prepare` step (`streams.people`): decode, check and plan a batch,
down to the store's parameters. It runs in the worker's helper process, which imports
this module and nothing of the worker's I/O (`streams.helper`): keep it that way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial

from actions_sync.dead_letter import DeadLetter
from actions_sync.person_rows import PeopleCopy, PeopleParams, people_rows
from streams.batch import Decoded, RawRecord, split
from streams.helper import Decode
from streams.rules import people as rules

__all__ = ["PeopleBatch", "prepare"]


@dataclass(frozen=True)
class PeopleBatch:
    """A prepared batch: the store writes (on PostgreSQL as COPY data: bytes), how many
    removals it offers, what was skipped, the dead letters (plain, picklable data)."""

    rows: PeopleParams | PeopleCopy
    removals: int
    superseded: int
    dead: list[DeadLetter]


def prepare(
    records: Sequence[RawRecord], decode: Decode, sqlite: bool, future_skew_s: float
) -> PeopleBatch:
    """Decode, check and plan a batch, down to the store's parameters: CPU work only (and
    the registry, once per schema id), so it may run in a helper process
    (`streams.offload`); the worker is left the write itself."""
    decoded = _decoded(records, decode, future_skew_s)
    return _batch(rules.plan([change for _, change in decoded.good]), sqlite, decoded.dead)


def _decoded(records: Sequence[RawRecord], decode: Decode, future_skew_s: float) -> Decoded:
    """The batch decoded and checked, each good change with its `log_position` (its
    offset: of two changes of a person with one `changed_at`, the later one wins)."""
    latest = datetime.now(UTC) + timedelta(seconds=future_skew_s)
    decoded = split(records, decode, partial(rules.check, latest=latest))
    for raw, change in decoded.good:
        change["log_position"] = raw.offset
    return decoded


def _batch(plan: rules.PeoplePlan, sqlite: bool, dead: list[DeadLetter]) -> PeopleBatch:
    rows = people_rows(plan.upserts, plan.removals, sqlite)
    return PeopleBatch(rows, len(plan.removals), plan.superseded, dead)
