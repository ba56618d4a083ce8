"""The people agent: `marketo.person.changes` -> the Actions store (SPEC S1-S5).

Each batch is decoded, checked, collapsed to the newest change per person and written in
one transaction; bad records go to `marketo.person.changes.dlq`. Offsets are committed by
faust only after the batch handler returned, i.e. after the store commit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy.exc import DBAPIError, OperationalError

from actions_sync.dead_letter import DeadLetter, DeadLetterProducer
from actions_sync.errors import RuleViolation
from actions_sync.metrics import SKIPPED, STORE_WRITES
from actions_sync.settings import Settings
from actions_sync.store import Store
from streams.app import run_agent
from streams.batch import RawRecord, split
from streams.rules import people as rules
from streams.topics import PERSON_CHANGES

__all__ = ["WORKER", "PeopleHandler", "run"]

WORKER = "people"
log = logging.getLogger(__name__)


class PeopleHandler:
    """Turns a batch of raw person-change records into store writes and dead letters."""

    def __init__(
        self, store: Store, decode: Callable[[bytes | None], dict[str, Any]],
        dead_letters: DeadLetterProducer,
    ) -> None:
        self.store = store
        self.decode = decode
        self.dead_letters = dead_letters

    def __call__(self, records: Sequence[RawRecord]) -> None:
        batch = split(records, self.decode, rules.check)
        dead = batch.dead
        try:
            self._write([change for _, change in batch.good])
        except DBAPIError as exc:
            if isinstance(exc, OperationalError):
                raise  # the store is down or locked: retry the whole batch
            dead += self._write_one_by_one(batch.good)
        if dead:
            self.dead_letters.send(dead)

    def _write(self, changes: list[dict[str, Any]]) -> None:
        plan = rules.plan(changes)
        written = self.store.apply_people(plan.upserts, plan.removals)
        STORE_WRITES.labels("persons", "upsert").inc(written.upserted)
        STORE_WRITES.labels("persons", "remove").inc(written.removed)
        SKIPPED.labels(WORKER, "superseded").inc(plan.superseded)
        SKIPPED.labels(WORKER, "not_owned").inc(len(plan.removals) - written.removed)

    def _write_one_by_one(self, good: list[tuple[RawRecord, dict[str, Any]]]) -> list[DeadLetter]:
        """A batch the database rejected: find the records it rejects, keep the rest."""
        dead = []
        for raw, change in good:
            try:
                self._write([change])
            except DBAPIError as exc:
                if isinstance(exc, OperationalError):
                    raise
                log.error("store rejected %s@%d: %s", raw.topic, raw.offset, exc.orig)
                dead.append(raw.dead(RuleViolation(f"store rejected the row: {exc.orig}"),
                                     stage="store"))
        return dead


def run(settings: Settings) -> None:
    """`actions-sync worker people`."""
    run_agent(settings, WORKER, PERSON_CHANGES, "PersonChange", PeopleHandler)
