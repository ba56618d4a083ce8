"""SPEC S9 in `actions-sync demo`: unsubscribes both ways with Salesforce.

- Actions -> Salesforce: unsubscribes captured in Actions (CLICKED_LINK) for people with
  Salesforce ids; the fields to set are the rules' (`streams.rules.unsubscribes.push`
  with the stored admin settings), read back from the Salesforce sandbox.
- Salesforce -> Actions: people opt out on their Lead in Salesforce (a person's edit, not
  the integration user's); the rules (`pull`, `from_salesforce`) say which reach the store
  and with which source (SALESFORCE_SYNC).
- No echo: the sync's own writes are never published back by the Salesforce source.
- Re-subscribes never flow: unchecking in Salesforce leaves Actions' unsubscribe alone.
"""

from __future__ import annotations

import random
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import select

from actions_sync.kafka import read_topic
from actions_sync.store.unsubscribes import unsubscribes
from actions_sync.topics import SALESFORCE_OPTOUTS, UNSUBSCRIBES
from app.demo_support import DEMO_ENV, DemoRun, Row
from streams import unsubscribe_reconcile
from streams.rules.unsubscribes import from_salesforce, pull, push

__all__ = ["FROM_ACTIONS", "FROM_SALESFORCE", "WORKERS", "prepare", "run", "sandbox_record"]

FROM_ACTIONS = 40  # unsubscribes captured in Actions
FROM_SALESFORCE = 20  # opt-outs set by people in Salesforce
WORKERS = ("unsubscribes", "salesforce-optout-sink", "salesforce-source")


def sandbox_record(http: httpx.Client, url: str, sobject: str, sfdc_id: str) -> dict[str, Any]:
    answer = http.get(f"{url}/_sandbox/salesforce/records/{sobject}/{sfdc_id}", timeout=30)
    answer.raise_for_status()
    return dict(answer.json())


def _edit(http: httpx.Client, url: str, sobject: str, sfdc_id: str, **fields: Any) -> None:
    """A person's edit in Salesforce (the control route acts as a human user)."""
    http.patch(
        f"{url}/_sandbox/salesforce/records/{sobject}/{sfdc_id}",
        timeout=30,
        json={"fields": fields},
    ).raise_for_status()


def stored_sources(demo: DemoRun, marketo_ids: set[int]) -> dict[int, str]:
    with demo.store() as store, store.engine.connect() as conn:
        rows = conn.execute(
            select(unsubscribes.c.marketo_id, unsubscribes.c.source).where(
                unsubscribes.c.marketo_id.in_(marketo_ids)
            )
        )
        return {int(r.marketo_id): str(r.source) for r in rows}


def prepare(demo: DemoRun) -> None:
    """Before the workers start (`demo` starts every flow's workers early, so that their
    start-up overlaps the flows before them)."""
    with demo.store() as store:  # last night's full reconciliation is done: on a fresh
        # store the agent would start one now, walking every person and Salesforce record
        # mid-demo (minutes at the default size) while holding back the live pushes
        store.save_checkpoint(
            unsubscribe_reconcile.CHECKPOINT,
            {"phase": "done", "finished_at": datetime.now(UTC).isoformat()},
        )


def run(demo: DemoRun) -> list[Row]:
    url = str(demo.stack.salesforce_url)
    settings = demo.settings()
    for name in WORKERS:
        demo.worker(name)
    rng = random.Random(demo.seed + 9)
    present = demo.present()
    candidates = sorted(m for m, p in present.items() if p.get("sfdc_lead_id"))
    chosen = rng.sample(candidates, min(len(candidates), FROM_ACTIONS + FROM_SALESFORCE))
    actions_people, sf_people = chosen[:FROM_ACTIONS], chosen[FROM_ACTIONS:]
    now = datetime.now(UTC)

    # Actions -> Salesforce: what the rules say each unsubscribe sets true.
    events: list[dict[str, Any]] = [
        {
            "event_id": str(uuid.uuid4()),
            "marketo_id": m,
            "occurred_at": now,
            "email": present[m].get("email") or f"person{m}@example.com",
            "source": "CLICKED_LINK",
        }
        for m in actions_people
    ]
    targets = {t for e in events for t in push(e, present[e["marketo_id"]], settings).targets}
    demo.publish(UNSUBSCRIBES, "Unsubscribe", ((str(e["marketo_id"]), e) for e in events))

    def written() -> tuple[int, int]:
        done = sum(
            sandbox_record(demo.http, url, t.sobject, t.sfdc_id).get(t.field) is True
            for t in targets
        )
        return done, len(targets)

    demo.follow({"Actions -> Salesforce: opt-out fields set": written})

    # Salesforce -> Actions: people opt out on their Lead, after the sync's writes (so the
    # source has read past those when these arrive: the echo check below).
    field = settings.unsubscribe_field
    optouts = {
        m: {"sobject": "Lead", "field": field, "sfdc_id": present[m]["sfdc_lead_id"]}
        for m in sf_people
    }
    for optout in optouts.values():
        _edit(demo.http, url, "Lead", str(optout["sfdc_id"]), **{field: True})
    want = {
        m: from_salesforce(o | {"system_modstamp": now, "event_id": ""}, present[m])["source"]
        for m, o in optouts.items()
        if pull(o, settings) is None
    }
    want |= {e["marketo_id"]: e["source"] for e in events}
    demo.follow(
        {
            "Salesforce -> Actions: opt-outs stored": lambda: (
                sum(stored_sources(demo, set(want)).get(m) == s for m, s in want.items()),
                len(want),
            )
        }
    )

    # Re-subscribes: people uncheck the field again in Salesforce.
    resubscribed = sf_people[:10]
    for m in resubscribed:
        _edit(demo.http, url, "Lead", str(present[m]["sfdc_lead_id"]), **{field: False})
    time.sleep(5 * float(DEMO_ENV["ACTIONS_SYNC_SALESFORCE_POLL_INTERVAL_S"]))  # 5 polls
    found = stored_sources(demo, set(want))
    published = {
        m.key().decode() for m in read_topic(demo.stack.bootstrap, SALESFORCE_OPTOUTS, idle_s=1.0)
    }
    echoes = sum(t.sfdc_id in published or t.sfdc_id[:15] in published for t in targets)
    rewritten = sum(
        sandbox_record(demo.http, url, "Lead", str(present[m]["sfdc_lead_id"])).get(field) is True
        for m in resubscribed
    )
    for m, source in want.items():
        if found.get(m) != source:
            demo.problems.append(f"unsubscribe of {m}: stored {found.get(m)}, expected {source}")
    return [
        Row(
            "S9",
            f"Actions -> Salesforce: {len(events)} unsubscribes, fields set true",
            str(len(targets)),
            str(written()[0]),
        ),
        Row(
            "S9",
            f"Salesforce -> Actions: {len(optouts)} opt-outs stored, source SALESFORCE_SYNC",
            str(sum(s == "SALESFORCE_SYNC" for s in want.values())),
            str(sum(found.get(m) == "SALESFORCE_SYNC" for m in optouts)),
        ),
        Row("S9", "the sync's own writes published back (echoes)", "0", str(echoes)),
        Row(
            "S9",
            f"re-subscribes ({len(resubscribed)} unchecked in Salesforce): Actions keeps them",
            f"{len(want)} kept, 0 re-set",
            f"{sum(found.get(m) == s for m, s in want.items())} kept, {rewritten} re-set",
        ),
    ]
