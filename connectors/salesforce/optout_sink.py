"""The Salesforce opt-out sink: `outbound.salesforce.optouts` -> Lead/Contact updates (S9).

Each record sets one opt-out field to true on one Lead or Contact, by Id, 200 records per
sObject Collections update (`PATCH composite/sobjects`, `allOrNone=false`; Leads and
Contacts share a call). The value is always true: nothing in Actions ever writes false.

Idempotent: once Salesforce accepted a write it is recorded in the store
(`salesforce_optout_writes`, with when the unsubscribe happened), and a record whose
opt-out is already recorded for an unsubscribe at least as recent is skipped, so a
redelivered record (or the same unsubscribe sent twice) is one effect, and a later
unsubscribe after a person re-subscribed in Salesforce is written again. The same records
tell the Salesforce source which opt-outs are the sync's own (echo filter). Several
records of one Id in a batch are one write.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from actions_sync.settings import Settings
from actions_sync.store.unsubscribes import OptOutWrite, record_optout_writes, written_since
from actions_sync.topics import OUTBOUND_SALESFORCE_OPTOUTS
from connectors.outcome import Kind, Outcome, fan_out, skipped
from connectors.salesforce.classify import record_outcome
from connectors.salesforce.client import COLLECTION_MAX
from connectors.salesforce.ids import to18
from connectors.salesforce.sink import SalesforceDestination, runner_config
from connectors.sink_worker import run_sink

__all__ = ["WORKER", "OptOutSink", "optout_record", "run"]

WORKER = "salesforce-optout-sink"
Record = dict[str, Any]


@dataclass
class _Write:
    """The update of one Salesforce record: its fields, and the records asking for them."""

    sobject: str
    sfdc_id: str
    fields: set[str] = field(default_factory=set)
    indexes: list[int] = field(default_factory=list)


def optout_record(sobject: str, sfdc_id: str, fields: Sequence[str]) -> Record:
    """The sObject Collections update item: every field true, never false."""
    return {"attributes": {"type": sobject}, "Id": sfdc_id, **dict.fromkeys(sorted(fields), True)}


class OptOutSink(SalesforceDestination):
    """`Destination` of opt-outs."""

    async def deliver(self, records: Sequence[Record]) -> list[Outcome]:
        wanted = [(to18(r["sfdc_id"]), r["field"], r["occurred_at"]) for r in records]
        done = await asyncio.to_thread(written_since, self.engine, wanted)
        writes: dict[str, _Write] = {}
        for i, (sfdc_id, name, _) in enumerate(wanted):
            if (sfdc_id, name) in done:
                continue
            write = writes.setdefault(sfdc_id, _Write(records[i]["sobject"], sfdc_id))
            write.fields.add(name)
            write.indexes.append(i)
        out = [skipped()] * len(records)
        batch = list(writes.values())
        answers = await fan_out(batch, COLLECTION_MAX, lambda part: self._update(records, part))
        for write, outcome in zip(batch, answers, strict=True):
            for i in write.indexes:
                out[i] = outcome
        return out

    async def _update(self, records: Sequence[Record], part: Sequence[_Write]) -> list[Outcome]:
        results = await self.client.update(
            [optout_record(w.sobject, w.sfdc_id, sorted(w.fields)) for w in part]
        )
        outcomes = [record_outcome(r) for r in results]
        now = self.now()
        done = [
            OptOutWrite(
                w.sfdc_id,
                records[i]["field"],
                w.sobject,
                int(records[i]["marketo_id"]),
                now,
                records[i]["occurred_at"],
            )
            for w, o in zip(part, outcomes, strict=True)
            if o.kind is Kind.ACCEPTED
            for i in w.indexes
        ]
        # Recorded as soon as Salesforce accepted: the source's echo filter reads it.
        await asyncio.to_thread(record_optout_writes, self.engine, done)
        return outcomes


def run(settings: Settings) -> None:
    """`actions-sync worker salesforce-optout-sink`."""
    config = runner_config(settings, WORKER, OUTBOUND_SALESFORCE_OPTOUTS)
    run_sink(settings, config, "SalesforceOptOutWrite", lambda: OptOutSink.from_settings(settings))
