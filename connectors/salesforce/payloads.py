"""`SalesforceTaskOut` records -> Task payloads: pure functions.

A batch may hold several changes of one Task (an edit, then a completion): Salesforce
refuses two records with the same external id in one collection call (DUPLICATE_VALUE),
and the newest change is the one that must win, so each batch is collapsed first. A
reminder task's upsert carries only the fields that changed (S11: a field Salesforce
holds that does not sync, e.g. priority Low, is left alone), so the newest upsert takes
the fields of the older ones it supersedes (back to a delete): dropping them would lose
those changes (found by bench/reminders.py: a due date never reached Salesforce).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from connectors.salesforce.client import EXTERNAL_ID

__all__ = ["merged", "newest", "task_record"]

Record = dict[str, Any]


def newest(records: Sequence[Record]) -> list[int]:
    """Indexes of the newest record per external id (by `occurred_at`; on a tie the later
    one in the batch, i.e. in the partition), in batch order."""
    best: dict[str, int] = {}
    for i, record in enumerate(records):
        key = record["external_id"]
        held = best.get(key)
        if held is None or records[held]["occurred_at"] <= record["occurred_at"]:
            best[key] = i
    return sorted(best.values())


def task_record(record: Record) -> Record:
    """The sObject Collections upsert item of one record."""
    fields = {k: v for k, v in record["fields"].items() if k != EXTERNAL_ID}
    return {"attributes": {"type": "Task"}, **fields, EXTERNAL_ID: record["external_id"]}


def merged(records: Sequence[Record], kept: Sequence[int]) -> dict[int, Record]:
    """The kept upserts (indexes from `newest`) with the fields of the older upserts of
    their Task in the batch (since its last delete) under theirs."""
    order = sorted(range(len(records)), key=lambda i: records[i]["occurred_at"])
    fields: dict[str, dict[str, Any]] = {}
    for i in order:  # oldest first: newer fields override
        key = records[i]["external_id"]
        if records[i]["operation"] == "DELETE":
            fields.pop(key, None)
        else:
            fields[key] = {**fields.get(key, {}), **records[i]["fields"]}
    return {
        i: {**records[i], "fields": fields[records[i]["external_id"]]}
        for i in kept
        if records[i]["operation"] == "UPSERT"
    }
