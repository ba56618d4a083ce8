"""`SalesforceTaskOut` records -> Task payloads: pure functions.

A batch may hold several changes of one Task (an edit, then a completion): Salesforce
refuses two records with the same external id in one collection call (DUPLICATE_VALUE),
and the newest change is the one that must win, so each batch is collapsed first. A
reminder task's upsert carries only the fields that changed (S11: a field Salesforce
holds that does not sync, e.g. priority Low, is left alone), so the newest upsert takes
the fields of the older ones it supersedes (back to a delete): dropping them would lose
those changes (found by bench/reminders.py: a due date never reached Salesforce).

The write bound of S11 (the sync writes to Salesforce at most once per Actions edit) is
kept by two rules the Task sink applies before a call:
- `delivered_before`: an upsert equal to the last one delivered for its Task (same
  fields, same `occurred_at`: the redelivered change of a reminder worker killed between
  publishing the write and saving its row) is not sent again;
- `conditional` (compare-before-write, for `conditional` records: updates of a Task
  Salesforce holds): when a person changed the Task after the Actions change (its
  `SystemModstamp` later than `occurred_at`, its `LastModifiedById` not the integration
  user), the write is not made: the newer edit wins, as a 412 would refuse it
  (`streams.rules.reminders` reads that record as newer, the same comparison, so the
  person's values reach Actions); otherwise a field Salesforce already holds is not
  sent. Salesforce offers no conditional update of a collection (`If-Unmodified-Since`
  is for one record per call, to the second), so the sink reads the Tasks first, one
  query per 100.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from connectors.salesforce.client import EXTERNAL_ID
from connectors.salesforce.cursor import parse_stamp

__all__ = [
    "COMPARED",
    "conditional",
    "delivered_before",
    "digest",
    "merged",
    "newest",
    "task_record",
]

# Fields that say which Task and whose: sent with any write, never compared.
IDENTITY = frozenset({"Id", "WhoId", "WhatId", EXTERNAL_ID})

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


def digest(record: Record) -> str:
    """What identifies one upsert as produced: its fields and the time of its change (a
    new edit back to the same values has a later `occurred_at`)."""
    at: datetime = record["occurred_at"]
    text = json.dumps([record["fields"], at.isoformat()], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def delivered_before(record: Record, last: str | None) -> bool:
    """`record` is the upsert last delivered for its Task (`last`: that one's digest)."""
    return last is not None and digest(record) == last


def _held(task: Mapping[str, Any], name: str) -> Any:
    value = task.get(name)
    return str(value)[:10] if name == "ActivityDate" and value else value


def conditional(
    record: Record, task: Mapping[str, Any] | None, integration_user: str
) -> dict[str, Any]:
    """The fields of upsert `record` to send, given its Task as Salesforce holds it now
    (None: not there, or not read: `record` is not `conditional`); empty: nothing to send.
    Nothing when a person changed the Task after the record's change (a newer edit wins);
    else the fields Salesforce does not hold yet, with the ones that say which Task."""
    fields: Mapping[str, Any] = record["fields"]
    if task is None:
        return dict(fields)
    if (
        record.get("conditional")
        and task.get("LastModifiedById") != integration_user
        and parse_stamp(str(task["SystemModstamp"])) > record["occurred_at"]
    ):
        return {}
    out = {k: v for k, v in fields.items() if k not in IDENTITY and _held(task, k) != v}
    if not out:
        return {}
    return {k: v for k, v in fields.items() if k in IDENTITY} | out


# The Task fields `conditional` reads (a query's select list).
COMPARED = (
    "Id",
    EXTERNAL_ID,
    "LastModifiedById",
    "SystemModstamp",
    "Subject",
    "Status",
    "Priority",
    "ActivityDate",
    "Description",
)
