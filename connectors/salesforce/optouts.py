"""SPEC S9 opt-outs as the Salesforce source reads them: pure rules.

A row is published as a `SalesforceOptOut` when its opt-out field reads true and the
change is a person's: re-subscribes never flow (an uncheck publishes nothing), and the
sync's own writes never come back (DESIGN: no echo loops) — neither a change whose
`LastModifiedById` is the integration user nor an opt-out the sync itself set true
(`actions_sync.store.unsubscribes.written_optouts`: equal to what the sync last wrote).
Event ids derive from the row version (Id, field, SystemModstamp), so a version read
twice (lookback, restart) is the same record twice, which the consumer absorbs.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Collection, Sequence
from typing import Any

from connectors.salesforce.cursor import Row, Stream, parse_stamp

__all__ = ["EVENT_NAMESPACE", "optout_record", "optout_stream", "optouts"]

EVENT_NAMESPACE = uuid.UUID("6f1f7a52-6a43-4b1e-9a0c-3c1b0e5d9a10")  # uuid5 of row versions


def optout_stream(sobject: str, field: str) -> Stream:
    """The cursor stream of `sobject`'s opt-outs in `field`. Only rows reading true are
    asked for; `queryAll`, so an opt-out followed by a deletion before the poll is seen."""
    return Stream(
        f"salesforce.optouts.{sobject}",
        sobject,
        ("Email", field),
        where=f"{field} = true",
        include_deleted=True,
    )


def optouts(
    sobject: str, field: str, rows: Sequence[Row], integration_user: str, written: Collection[str]
) -> tuple[list[dict[str, Any]], Counter[str]]:
    """(records to publish, rows skipped by reason: `not_opted_out`, `echo`)."""
    out, skipped = [], Counter[str]()
    for row in rows:
        if row.get(field) is not True:
            skipped["not_opted_out"] += 1  # a re-subscribe: never flows (S9)
        elif row.get("LastModifiedById") == integration_user or row["Id"] in written:
            skipped["echo"] += 1
        else:
            out.append(optout_record(sobject, field, row))
    return out, skipped


def optout_record(sobject: str, field: str, row: Row) -> dict[str, Any]:
    """The `SalesforceOptOut` of one row."""
    stamp = str(row["SystemModstamp"])
    return {
        "event_id": str(uuid.uuid5(EVENT_NAMESPACE, f"{row['Id']}/{field}/{stamp}")),
        "sobject": sobject,
        "sfdc_id": str(row["Id"]),
        "email": row.get("Email"),
        "field": field,
        "system_modstamp": parse_stamp(stamp),
        "last_modified_by_id": row.get("LastModifiedById"),
    }
