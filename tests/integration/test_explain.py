"""`actions-sync explain` end to end: the people agent, the activity router and both sinks
as processes on a real broker and SQLite store, the Marketo and Salesforce sandboxes over
HTTP; then the CLI (a real process) explains a person who qualified, one who was removed,
one whose change was dead-lettered, and an activity delivered to both vendors; an unknown
id says so and exits 1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from actions_sync.publish import Publisher
from actions_sync.serialization import RegistryClient
from actions_sync.store import PERSON_FIELDS, Store
from actions_sync.store.ledger import Ledger
from actions_sync.topics import (
    OUTBOUND_MARKETO_ACTIVITIES,
    OUTBOUND_SALESFORCE_TASKS,
    PERSON_CHANGES,
    SALES_ACTIVITIES,
)
from app.stack import Stack
from sandboxes.population import generate
from tests.factories import person_change, sales_activity
from tests.support.stacks import stack_settings
from tests.support.vendors import salesforce_tasks

pytestmark = pytest.mark.slow
TOPICS = (PERSON_CHANGES, SALES_ACTIVITIES, OUTBOUND_MARKETO_ACTIVITIES, OUTBOUND_SALESFORCE_TASKS)
POPULATION = {p["marketo_id"]: p for p in generate(10, 7)}
KEPT, REMOVED, DEAD = 6, 2, 9  # a Contact with an opportunity, an owned Lead, garbage


@pytest.fixture
def stack(kafka: str, registry: str, tmp_path: Path) -> Iterator[Stack]:
    settings = stack_settings(kafka, registry, tmp_path, TOPICS)
    with Store(settings.database_url) as store:
        store.migrate()
    with Stack(settings, logdir=tmp_path) as running:
        running.start_vendors(seed_people=10)
        for name in ("people", "activities", "marketo-sink", "salesforce-sink"):
            running.add_worker(name)
        yield running


def explain(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **stack.env, "COLUMNS": "160"}
    return subprocess.run(
        [sys.executable, "-m", "app", "explain", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def answer(stack: Stack, *args: str) -> dict[str, Any]:
    result = explain(stack, *args, "--json")
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def eventually(check: Any, what: str, timeout_s: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (found := check()):
        assert time.monotonic() < deadline, f"{what} not within {timeout_s:.0f}s"
        time.sleep(0.5)
    return found


def test_explain_people_and_an_activity_end_to_end(stack: Stack) -> None:
    fields = {m: {f: POPULATION[m][f] for f in PERSON_FIELDS} for m in (KEPT, REMOVED)}
    email = sales_activity("SEND_SALES_EMAIL", KEPT)
    registry = RegistryClient(stack.registry_url)
    try:
        publisher = Publisher(stack.bootstrap, registry)
        publisher.publish(
            PERSON_CHANGES,
            "PersonChange",
            [
                (str(KEPT), person_change(KEPT, 0, **fields[KEPT])),
                (str(REMOVED), person_change(REMOVED, 0, **fields[REMOVED])),
                (
                    str(REMOVED),
                    person_change(
                        REMOVED,
                        5,
                        **fields[REMOVED]
                        | {"sfdc_lead_owner_id": None, "sfdc_contact_owner_id": None},
                    ),
                ),
            ],
        )
        publisher.publish_raw(PERSON_CHANGES, [(str(DEAD).encode(), b"not avro at all")])
        publisher.flush()
        with Store(stack.settings.database_url) as store:
            eventually(
                lambda: store.person(KEPT) and (store.person(REMOVED) or {}).get("removed_at"),
                "the people agent",
            )
        publisher.publish(SALES_ACTIVITIES, "SalesActivity", [(str(KEPT), email)])
        publisher.flush()
    finally:
        registry.close()
    assert stack.salesforce_url
    eventually(
        lambda: [
            t
            for t in salesforce_tasks(stack.salesforce_url)
            if t.get("ActionsSync_Id__c") == email["activity_id"]
        ],
        "the Task",
    )
    with Store(stack.settings.database_url) as store:
        ledger = Ledger(store.engine)
        eventually(
            lambda: (
                getattr(
                    ledger.entries([email["activity_id"]]).get(email["activity_id"]), "state", None
                )
                == "accepted"
            ),
            "Marketo's acceptance",
        )

    kept = answer(stack, "person", str(KEPT))
    assert kept["verdict"].startswith("in Actions: its newest change qualifies")
    assert kept["store"]["removed_at"] is None and kept["store"]["email"] == fields[KEPT]["email"]
    assert kept["newest_change"]["topic"] == PERSON_CHANGES and kept["changes_seen"] == 1
    assert kept["dead_letters"] == [] and kept["unsubscribe"] is None

    removed = answer(stack, "person", str(REMOVED))
    assert removed["verdict"].startswith("removed from Actions at ")
    assert "no Lead or Contact owner" in removed["verdict"]
    assert removed["changes_seen"] == 2
    assert removed["newest_change"]["change"]["sfdc_lead_owner_id"] is None

    dead = answer(stack, "person", str(DEAD))
    assert dead["verdict"].startswith("not in Actions: every change of this person was dead")
    assert dead["store"] is None and len(dead["dead_letters"]) == 1
    assert dead["dead_letters"][0]["source.topic"] == PERSON_CHANGES

    delivered = answer(stack, "activity", email["activity_id"])
    assert delivered["verdict"] == "routed to Marketo and Salesforce by the current settings"
    assert delivered["marketo_ledger"]["state"] == "accepted"
    assert len(delivered["outbound_marketo"]) == 1 and len(delivered["outbound_salesforce"]) == 1
    tasks = [
        t["Id"]
        for t in salesforce_tasks(stack.salesforce_url)
        if t.get("ActionsSync_Id__c") == email["activity_id"]
    ]
    assert delivered["salesforce_task_ids"] == tasks and len(tasks) == 1
    assert delivered["dead_letters"] == []

    screen = explain(stack, "person", str(REMOVED))  # one screen, rich
    assert screen.returncode == 0 and f"person {REMOVED}: removed from Actions" in screen.stdout
    unknown = explain(stack, "person", "424242")
    assert unknown.returncode == 1 and "Marketo ID 424242: unknown" in unknown.stderr
    unknown = explain(stack, "activity", str(uuid.uuid4()))
    assert unknown.returncode == 1 and "unknown" in unknown.stderr
