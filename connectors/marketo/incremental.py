"""The incremental sync (SPEC S6): lead changes and deleted leads, by paging tokens.

Each cycle reads one page of `leadchanges.json` (activities touching the synced fields
or the owners) and one page of `deletedleads.json`, fetches the *current* state of the
changed leads (`leads.json`, <= 300 ids a call) so every record carries all 13 fields
and the owners, publishes, flushes, then saves both tokens. A restart therefore
re-publishes at most the last page; the people agent absorbs it idempotently. Once
both streams report `moreResult:false`, it waits `poll_interval_s` before the next cycle.

It runs only while the admin setting `people_sync` is on ("initiate data sync", SPEC
S12); while it is off it waits, its tokens kept, and catches up from them once it is on.

Retries: the client retries each call; a cycle that still fails is this loop's to retry
(`actions_sync.retry.retrying_step`), from the saved tokens.

A lead whose current state has no owner is published only when the page shows an owner
change (it may be in the store and must leave it, SPEC S2); otherwise it is skipped.
A lead missing from `leads.json` was deleted meanwhile: its Delete Lead activity says so.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from actions_sync.clock import utcnow
from actions_sync.metrics import SOURCE_ENABLED
from actions_sync.retry import Interrupted, retrying_step
from connectors.errors import QuotaExhausted
from connectors.marketo.client import BATCH_MAX
from connectors.marketo.context import INCREMENTAL, SourceContext
from connectors.marketo.payloads import (
    API_FIELDS,
    FIELDS,
    deleted_change,
    is_owned,
    person_change,
    touches_owner,
)

__all__ = ["CHANGE_FIELDS", "LeadChanges", "changes_to_publish"]

CHANGE_FIELDS = tuple(FIELDS.values())  # leadchanges.json reports activities touching these
OFF_CHECK_S = 1.0  # while the people sync is off: how often the setting is looked at
log = logging.getLogger(__name__)


def changes_to_publish(
    activities: Sequence[Mapping[str, Any]], leads: Sequence[Mapping[str, Any]]
) -> tuple[list[dict[str, Any]], int]:
    """(PersonChanges to publish, leads skipped) for one page: pure."""
    by_lead: dict[int, list[Mapping[str, Any]]] = defaultdict(list)
    for activity in activities:
        by_lead[int(activity["leadId"])].append(activity)
    out = [
        person_change(lead)
        for lead in leads
        if is_owned(lead) or touches_owner(by_lead.get(int(lead["id"]), ()))
    ]
    return out, len(leads) - len(out)


class LeadChanges:
    def __init__(
        self, ctx: SourceContext, poll_interval_s: float, enabled: Callable[[], bool] = lambda: True
    ) -> None:
        self.ctx = ctx
        self.poll_interval_s = poll_interval_s
        self.enabled = enabled  # the admin's "initiate data sync" (people_sync, SPEC S12)
        self._was_enabled: bool | None = None
        self._position: dict[str, str] | None = None  # the tokens, once read

    async def run(self) -> None:
        """Follow the changes until shutdown, while the people sync is turned on."""
        while not self.ctx.stopping.is_set():
            if not self._check_enabled():
                await self.ctx.wait(OFF_CHECK_S)  # the checkpoint waits where it is
                continue
            try:
                more = await retrying_step(
                    self._poll,
                    what="lead changes",
                    stop=self.ctx.stopping,
                    running=self.enabled,
                    give_up_on=(QuotaExhausted,),
                )
            except QuotaExhausted as exc:
                await self.ctx.quota_pause(exc)
                continue
            except Interrupted:
                continue  # stopping, or the sync turned off: the loop's checks say which
            if not more:
                await self.ctx.wait(self.poll_interval_s)

    async def _poll(self) -> bool:
        self._position = self._position or await self._tokens()
        return await self.cycle(self._position)

    def _check_enabled(self) -> bool:
        enabled = self.enabled()
        if enabled != self._was_enabled:
            SOURCE_ENABLED.labels(self.ctx.worker).set(int(enabled))
            if enabled:
                log.info("people sync is on: following lead changes from the checkpoint")
            else:
                log.info(
                    "people sync is off (admin setting people_sync): waiting; "
                    "`actions-sync sync start` or `actions-sync settings set "
                    "people_sync on` turns it on"
                )
            self._was_enabled = enabled
        return enabled

    async def cycle(self, tokens: dict[str, str]) -> bool:
        """One page of each stream, published and checkpointed; True if more is waiting."""
        changes, deletes = await asyncio.gather(  # two round trips in the time of one
            self.ctx.client.lead_changes(tokens["lead_token"], CHANGE_FIELDS),
            self.ctx.client.deleted_leads(tokens["deleted_token"]),
        )
        published, skipped = await self._current(changes.result)
        self.ctx.publish([*published, *(deleted_change(a) for a in deletes.result)])
        self.ctx.skip(skipped)
        position = {"lead_token": changes.next_token, "deleted_token": deletes.next_token}
        self.ctx.commit(INCREMENTAL, position)
        tokens.update(position)
        return changes.more or deletes.more

    async def _current(self, activities: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
        ids = list(dict.fromkeys(int(a["leadId"]) for a in activities))
        leads: list[dict[str, Any]] = []
        for at in range(0, len(ids), BATCH_MAX):
            leads += await self.ctx.client.leads("id", ids[at : at + BATCH_MAX], API_FIELDS)
        return changes_to_publish(activities, leads)

    async def _tokens(self) -> dict[str, str]:
        saved = self.ctx.store.checkpoint(INCREMENTAL)
        if saved is not None:
            return {k: str(v) for k, v in saved.items()}
        token = await self.ctx.client.paging_token(utcnow())
        position = {"lead_token": token, "deleted_token": token}
        self.ctx.commit(INCREMENTAL, position)
        return position
