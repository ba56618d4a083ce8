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
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from sqlalchemy.exc import DBAPIError, OperationalError

from actions_sync.dead_letter import DeadLetter, DeadLetterProducer
from actions_sync.errors import RuleViolation
from actions_sync.metrics import SKIPPED, STORE_WRITES
from actions_sync.settings import Settings
from actions_sync.store import PeopleParams, Store, is_sqlite_url, people_params
from actions_sync.topics import PERSON_CHANGES
from streams.app import run_agent
from streams.batch import RawRecord, split
from streams.rules import people as rules

__all__ = ["WORKER", "PeopleBatch", "PeopleHandler", "prepare", "run"]

WORKER = "people"
log = logging.getLogger(__name__)

Decode = Callable[[bytes | None], dict[str, Any]]


@dataclass(frozen=True)
class PeopleBatch:
    """A prepared batch: the store writes as parameters, what was skipped, the dead
    letters (plain, picklable data)."""

    params: PeopleParams
    superseded: int
    dead: list[DeadLetter]


def prepare(records: Sequence[RawRecord], decode: Decode, sqlite: bool) -> PeopleBatch:
    """Decode, check and plan a batch, down to the store's parameters: CPU work only (and
    the registry, once per schema id), so it may run in a helper process
    (`streams.offload`); the worker is left the write itself."""
    decoded = split(records, decode, rules.check)
    return _batch(rules.plan([change for _, change in decoded.good]), sqlite, decoded.dead)


def _batch(plan: rules.PeoplePlan, sqlite: bool, dead: list[DeadLetter]) -> PeopleBatch:
    return PeopleBatch(people_params(plan.upserts, plan.removals, sqlite), plan.superseded,
                       dead)


class PeopleHandler:
    """Turns a batch of raw person-change records into store writes and dead letters."""

    def __init__(self, store: Store, decode: Decode, dead_letters: DeadLetterProducer) -> None:
        self.store = store
        self.decode = decode
        self.dead_letters = dead_letters

    def __call__(self, records: Sequence[RawRecord]) -> None:
        self.write(records, self.prepare(records))

    def prepare(self, records: Sequence[RawRecord]) -> PeopleBatch:
        return prepare(records, self.decode, self.store.is_sqlite)

    def write(self, records: Sequence[RawRecord], batch: PeopleBatch) -> None:
        """Write the batch in one transaction, then the dead letters; raise to retry.
        Counted once all of it is durable: a batch retried is counted once."""
        dead = list(batch.dead)
        counts: Counter[str] = Counter()
        try:
            self._apply(batch, counts)
        except DBAPIError as exc:
            if isinstance(exc, OperationalError):
                raise  # the store is down or locked: retry the whole batch
            dead += self._write_one_by_one(split(records, self.decode, rules.check).good,
                                           counts)
        if dead:
            self.dead_letters.send(dead)
        STORE_WRITES.labels("persons", "upsert").inc(counts["upserted"])
        STORE_WRITES.labels("persons", "remove").inc(counts["removed"])
        SKIPPED.labels(WORKER, "superseded").inc(counts["superseded"])
        SKIPPED.labels(WORKER, "not_owned").inc(counts["not_owned"])

    def _apply(self, batch: PeopleBatch, counts: Counter[str]) -> None:
        written = self.store.write_people(batch.params)
        counts.update(upserted=written.upserted, removed=written.removed,
                      superseded=batch.superseded,
                      not_owned=len(batch.params.removals) - written.removed)

    def _write_one_by_one(self, good: list[tuple[RawRecord, dict[str, Any]]],
                          counts: Counter[str]) -> list[DeadLetter]:
        """A batch the database rejected: find the records it rejects, keep the rest."""
        dead = []
        for raw, change in good:
            try:
                self._apply(_batch(rules.plan([change]), self.store.is_sqlite, []), counts)
            except DBAPIError as exc:
                if isinstance(exc, OperationalError):
                    raise
                log.error("store rejected %s@%d: %s", raw.topic, raw.offset, exc.orig)
                dead.append(raw.dead(RuleViolation(f"store rejected the row: {exc.orig}"),
                                     stage="store"))
        return dead


def run(settings: Settings) -> None:
    """`actions-sync worker people`."""
    run_agent(settings, WORKER, PERSON_CHANGES, "PersonChange", PeopleHandler,
              offload=partial(prepare, sqlite=is_sqlite_url(settings.database_url)))
