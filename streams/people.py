"""The people agent: `marketo.person.changes` -> the Actions store (SPEC S1-S5).

Each batch is decoded, checked, collapsed to the newest change per person and turned
into the store's parameters (`prepare`, pure CPU work), then written in one transaction
(`write`); bad records go to `marketo.person.changes.dlq`. The two steps are separate
so that the agent's pipeline prepares batch N+1, in a helper process, while batch N is
written (`streams.pipeline`, `streams.offload`). Offsets are committed only after
`write` returned, i.e. after the store commit and the dead letters are durable.

The `prepare` step lives in `streams.people_prepare`, which the helper process imports
without the rest of this module (faust, the store's engine, the Kafka clients).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import partial

from actions_sync.dead_letter import DeadLetterProducer
from actions_sync.metrics import SKIPPED, STORE_WRITES
from actions_sync.settings import Settings
from actions_sync.store import Store, is_sqlite_url
from actions_sync.topics import PERSON_CHANGES
from streams.app import run_agent
from streams.batch import RawRecord
from streams.helper import Decode
from streams.people_prepare import PeopleBatch, prepare

__all__ = ["WORKER", "PeopleBatch", "PeopleHandler", "prepare", "run"]

WORKER = "people"
log = logging.getLogger(__name__)


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
        written = self.store.write_people(batch.rows)
        if batch.dead:
            self.dead_letters.send(batch.dead)
        STORE_WRITES.labels("persons", "upsert").inc(written.upserted)
        STORE_WRITES.labels("persons", "remove").inc(written.removed)
        SKIPPED.labels(WORKER, "superseded").inc(batch.superseded)
        SKIPPED.labels(WORKER, "not_owned").inc(batch.removals - written.removed)


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
