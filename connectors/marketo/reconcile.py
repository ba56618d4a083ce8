"""Was it written? Pending ledger entries checked against Marketo's activity log.

A pending entry is an activity sent without a known answer (the worker died, the call
timed out, the API answered 5xx). Its activities are read back from a paging token taken
at its send time (minus the clock skew allowance) and matched by the ledger attribute.
Found -> accepted, with Marketo's id; not found -> free to send again. Only entries older
than the settle time are checked, so a call still in flight cannot land afterwards.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta

from actions_sync.metrics import LEDGER_RECONCILED
from actions_sync.store.ledger import Entry
from connectors.marketo.client import MarketoClient
from connectors.marketo.outbound import ledger_key

__all__ = ["LEAD_FILTER_MAX", "find_written"]

log = logging.getLogger(__name__)
LEAD_FILTER_MAX = 30  # leadIds per activities.json call


async def find_written(
    client: MarketoClient, entries: Sequence[Entry], skew_s: float
) -> dict[str, tuple[int | None, str | None]]:
    """activity_id -> (Marketo activity id, marketoGUID) of the entries Marketo holds."""
    if not entries:
        return {}
    wanted = {e.activity_id for e in entries}
    since = min(e.sent_at for e in entries) - timedelta(seconds=skew_s)
    type_ids = sorted({e.type_id for e in entries})
    leads = sorted({e.lead_id for e in entries})
    token = await client.paging_token(since)
    found: dict[str, tuple[int | None, str | None]] = {}
    while True:
        page = await client.activities(
            token, type_ids, leads if len(leads) <= LEAD_FILTER_MAX else ()
        )
        for activity in page.result:
            key = ledger_key(activity)
            if key in wanted and key not in found:
                found[key] = (activity.get("id"), activity.get("marketoGUID"))
        token = page.next_token
        if not page.more or len(found) == len(wanted):
            break
    LEDGER_RECONCILED.labels("found").inc(len(found))
    LEDGER_RECONCILED.labels("missing").inc(len(wanted) - len(found))
    log.info(
        "reconciled %d pending Marketo activities: %d already written", len(wanted), len(found)
    )
    return found
