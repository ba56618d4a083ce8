"""The people flow's Marketo step (SPEC S6): the initial sync from the Marketo sandbox,
then live changes made there while `worker marketo-source` follows them.

The sandbox holds the demo's population (same size and seed as the generated changes).
`actions-sync sync start` loads the sales-owned leads created in `WINDOW` (one export
window, about a twelfth of the population: seconds, not minutes, at the default size).
Their versions are the leads' `updatedAt` in 2025, newer than the generated changes (dated
a year earlier), so for those people Marketo's lead wins whatever the order: S6's
"newest version wins" is what resolves the overlap, and the oracle applies the same rule.
Unowned leads are not published by the initial sync: the generated changes still decide
for them. Then a sample of the window's leads is edited through the sandbox's
`/_sandbox/marketo/leads` route while the source runs: field edits, owners removed,
owners added, deletes. The expected outcome is built from the leads as read back through
Marketo's REST API, and merged into the people scenario's oracle, so that the S1-S3 rows
and the later flows see the people the rules keep. The source is stopped at the end of
the step: the other flows edit leads (unsubscribes) and must not see their own edits come
back as person changes.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from actions_sync.errors import Fatal
from actions_sync.kafka import written
from actions_sync.store import PERSON_FIELDS
from actions_sync.topics import PERSON_CHANGES
from app.demo_support import DemoRun, Row
from app.process import spawn, stop
from app.stack import CLI
from connectors.marketo.client import BATCH_MAX, MarketoClient
from sandboxes.marketo.fields import FIELDS
from sandboxes.population import EPOCH, generate, owner_id
from streams.rules.people import is_owned, qualifies

__all__ = ["WINDOW", "run"]

WINDOW = (EPOCH, EPOCH + timedelta(days=31))  # one export window of `sync start`
EDITS = {"edited": 20, "owner_removed": 5, "owner_added": 5, "deleted": 3}  # live changes

Lead = dict[str, Any]


def run(demo: DemoRun) -> list[Row]:
    """Initial sync, then live changes; the two S6 rows. Updates `demo.people.expected`."""
    stack = demo.stack
    assert stack.marketo_url
    env = {
        **stack.env,
        "ACTIONS_SYNC_MARKETO_SINCE": WINDOW[0].isoformat(),
        "ACTIONS_SYNC_MARKETO_UNTIL": WINDOW[1].isoformat(),
        "ACTIONS_SYNC_MARKETO_POLL_INTERVAL_S": "0.5",
    }
    ids = [
        p["marketo_id"]
        for p in generate(demo.people.people, demo.seed)
        if WINDOW[0] <= p["created_at"] <= WINDOW[1]
    ]
    leads = read_leads(demo, ids)  # what the initial sync will find
    loaded = {mid: c for mid, c in leads.items() if is_owned(c)}

    sync = spawn([*CLI, "sync", "start"], log=stack.logdir / "sync-start.log", env=env)
    demo.follow({"initial sync: `sync start` done": lambda: (int(sync.poll() is not None), 1)})
    if sync.poll() != 0:
        demo.problems.append(f"`sync start` exited with {sync.poll()}; see {stack.logdir}")
    ends = written(stack.bootstrap, (PERSON_CHANGES,))
    demo.follow(
        {
            "people agent: initial sync committed": lambda: stack.progress(
                "people", PERSON_CHANGES, ends
            )
        }
    )
    initial = _matching(demo, loaded)
    _merge(demo, loaded.values())

    log = stack.logdir / "worker-marketo-source-0.log"
    source = spawn([*CLI, "worker", "marketo-source"], log=log, env=env)
    try:
        touched = _edit(demo, leads)
        changed = read_leads(demo, touched)
        _merge(demo, changed.values())

        def landed() -> tuple[int, int]:
            if source.poll() is not None:  # not a stack worker: `DemoRun.ticks` cannot see it
                raise Fatal(f"worker marketo-source exited with {source.returncode}; see {log}")
            return _matching(demo, changed), len(changed)

        demo.follow({"live Marketo changes in the store": landed})
        live = _matching(demo, changed)
    finally:
        stop(source)
    return [
        Row(
            "S6",
            f"initial sync: sales-owned leads created {WINDOW[0]:%b %Y}, as in Marketo",
            str(len(loaded)),
            str(initial),
        ),
        Row(
            "S6",
            "live Marketo changes ("
            + ", ".join(f"{k}={v}" for k, v in EDITS.items())
            + ") in the store",
            str(len(changed)),
            str(live),
        ),
    ]


def read_leads(demo: DemoRun, ids: Iterable[int]) -> dict[int, Lead]:
    """The sandbox's current leads as person changes (the sandbox's own field table), read
    with the connector's client (`MarketoClient`: paced, authenticated and retried like
    the sync's calls); a lead it no longer has is a delete."""
    settings = demo.stack.settings
    assert demo.stack.marketo_url
    client = MarketoClient(
        demo.stack.marketo_url,
        settings.marketo_client_id,
        settings.marketo_client_secret.get_secret_value(),
    )
    return asyncio.run(_read_leads(client, sorted(ids)))


async def _read_leads(client: MarketoClient, ids: list[int]) -> dict[int, Lead]:
    names = [f.name for f in FIELDS]
    out: dict[int, Lead] = {}
    try:
        for at in range(0, len(ids), BATCH_MAX):
            batch = ids[at : at + BATCH_MAX]
            found = {lead["id"]: lead for lead in await client.leads("id", batch, names)}
            out |= {mid: _change(mid, found.get(mid)) for mid in batch}
    finally:
        await client.aclose()
    return out


def _change(mid: int, lead: Lead | None) -> Lead:
    if lead is None:
        return {"marketo_id": mid, "deleted": True}
    change = {f.source: lead[f.name] for f in FIELDS if f.source in PERSON_FIELDS}
    return {
        **change,
        "marketo_id": mid,
        "deleted": False,
        "changed_at": datetime.fromisoformat(lead["updatedAt"]),
    }


def _merge(demo: DemoRun, changes: Iterable[Lead]) -> None:
    """Into the people oracle: Marketo's versions are newer than any generated change, and a
    delete read back has no version of its own: it replaces what was there."""
    expected = demo.people.expected
    for change in changes:
        if change["deleted"]:
            expected.newest[change["marketo_id"]] = change
        else:
            expected.apply(change)


def _edit(demo: DemoRun, leads: dict[int, Lead]) -> list[int]:
    """A seeded sample of the window's leads edited in the sandbox: `EDITS` of each kind."""
    rng = random.Random(demo.seed + 20)
    owned = sorted(mid for mid, c in leads.items() if is_owned(c))
    unowned = sorted(mid for mid, c in leads.items() if not c["deleted"] and not is_owned(c))
    picked = rng.sample(
        owned, min(len(owned), EDITS["edited"] + EDITS["owner_removed"] + EDITS["deleted"])
    )
    edited, removed = picked[: EDITS["edited"]], picked[EDITS["edited"] :][: EDITS["owner_removed"]]
    deleted = picked[EDITS["edited"] + EDITS["owner_removed"] :]
    added = rng.sample(unowned, min(len(unowned), EDITS["owner_added"]))
    url = f"{demo.stack.marketo_url}/_sandbox/marketo"
    updates = (
        [
            {"id": m, "title": "Edited live", "phone": f"+1-555-{rng.randrange(10**7):07d}"}
            for m in edited
        ]
        + [{"id": m, "sfdcLeadOwnerId": None, "sfdcContactOwnerId": None} for m in removed]
        + [{"id": m, "sfdcLeadOwnerId": owner_id(m)} for m in added]
    )
    demo.http.post(
        f"{url}/leads", json={"action": "updateOnly", "lookupField": "id", "input": updates}
    ).raise_for_status()
    demo.http.post(f"{url}/leads/delete", json={"ids": deleted}).raise_for_status()
    return sorted({*edited, *removed, *added, *deleted})


def _matching(demo: DemoRun, want: dict[int, Lead]) -> int:
    """People whose store row is what the rules make of `want` (present with every field
    and the version, or absent / removed)."""
    with demo.store() as store:
        rows = store.people_by_id(sorted(want))
    count = 0
    for mid, change in want.items():
        row = rows.get(mid)
        if not qualifies(change):
            count += row is None or row["removed_at"] is not None
        elif (
            row is not None
            and row["removed_at"] is None
            and all(row[f] == change.get(f) for f in (*PERSON_FIELDS, "changed_at"))
        ):
            count += 1
    return count
