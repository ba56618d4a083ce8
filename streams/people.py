"""The people agent: `marketo.person.changes` -> the Actions store (SPEC S1-S5).

Each batch is decoded, checked, collapsed to the newest change per person and turned
into the store's parameters (`prepare`, pure CPU work), then written in one transaction
(`write`); bad records go to `marketo.person.changes.dlq`. The two steps are separate
so that the agent's pipeline prepares batch N+1, in a helper process, while batch N is
written (`streams.pipeline`, `streams.offload`). Offsets are committed only after
`write` returned, i.e. after the store commit and the dead letters are durable.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial

from actions_sync.dead_letter import DeadLetter, DeadLetterProducer
from actions_sync.metrics import SKIPPED, STORE_WRITES
from actions_sync.settings import Settings
from actions_sync.store import PeopleParams, Store, is_sqlite_url, people_params
from actions_sync.topics import PERSON_CHANGES
from streams.app import Decode, run_agent
from streams.batch import Decoded, RawRecord, split
from streams.rules import people as rules

__all__ = ["WORKER", "PeopleBatch", "PeopleHandler", "prepare", "run"]

WORKER = "people"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PeopleBatch:
    """A prepared batch: the store writes as parameters, what was skipped, the dead
    letters (plain, picklable data)."""

    params: PeopleParams
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
    return PeopleBatch(people_params(plan.upserts, plan.removals, sqlite), plan.superseded, dead)


class PeopleHandler:
    """Turns a batch of raw person-change records into store writes and dead letters."""

    def __init__(
        self, store: Store, decode: Decode, dead_letters: DeadLetterProducer, future_skew_s: float
    ) -> None:
        self.store = store
        self.decode = decode
        self.dead_letters = dead_letters
        self.future_skew_s = future_skew_s

    def __call__(self, records: Sequence[RawRecord]) -> None:
        self.write(records, self.prepare(records))

    def prepare(self, records: Sequence[RawRecord]) -> PeopleBatch:
        return prepare(records, self.decode, self.store.is_sqlite, self.future_skew_s)

    def write(self, records: Sequence[RawRecord], batch: PeopleBatch) -> None:
        """Write the batch in one transaction, then the dead letters; raise to retry (a
        row the store refuses is found by the pipeline, `streams.pipeline`). Counted once
        all of it is durable: a batch retried is counted once."""
        written = self.store.write_people(batch.params)
        if batch.dead:
            self.dead_letters.send(batch.dead)
        STORE_WRITES.labels("persons", "upsert").inc(written.upserted)
        STORE_WRITES.labels("persons", "remove").inc(written.removed)
        SKIPPED.labels(WORKER, "superseded").inc(batch.superseded)
        SKIPPED.labels(WORKER, "not_owned").inc(len(batch.params.removals) - written.removed)


def run(settings: Settings) -> None:
    """`actions-sync worker people`."""
    skew = settings.future_skew_s
    run_agent(
        settings,
        WORKER,
        PERSON_CHANGES,
        "PersonChange",
        partial(PeopleHandler, future_skew_s=skew),
        offload=partial(prepare, sqlite=is_sqlite_url(settings.database_url), future_skew_s=skew),
    )
