"""SPEC S11 in `actions-sync demo`: reminder tasks both ways with Salesforce Tasks.

The admin turns reminder-task sync on (audited). Then:

- Actions -> Salesforce: sellers create reminder tasks (open and complete, normal and
  high, with and without a due date); each must become a Task with the fields the rules
  map (`streams.rules.reminders.salesforce_value`), read back from the Salesforce sandbox.
- Salesforce -> Actions: people create Tasks in Salesforce for people in Actions, complete
  one and delete another; the store must hold what the rules map back
  (`actions_value`), and the deleted one deleted.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

from actions_sync.store import reminder_tasks
from actions_sync.topics import REMINDER_TASKS
from app.demo_support import DemoRun, Row
from streams.rules.reminders import BOTH_WAYS, SF_FIELD, actions_value, salesforce_value

__all__ = ["WORKERS", "run"]

FROM_ACTIONS = 20
FROM_SALESFORCE = 10
TASK_ID_FIELD = "ActionsSync_Id__c"
WORKERS = ("reminders", "salesforce-sink", "salesforce-source")


def _sandbox(demo: DemoRun, method: str, path: str, **body: Any) -> Any:
    answer = demo.http.request(
        method,
        f"{demo.stack.salesforce_url}/_sandbox/salesforce/{path}",
        json=body or None,
        timeout=30,
    )
    answer.raise_for_status()
    return answer.json()


def _stored(demo: DemoRun, task_ids: list[str]) -> dict[str, dict[str, Any]]:
    with demo.store() as store:
        return reminder_tasks.load(store.engine, task_ids)


def run(demo: DemoRun) -> list[Row]:
    revision = demo.admin_set("reminder_task_sync", True)
    for name in WORKERS:
        demo.worker(name)
    applied = demo.wait_applied("reminders", revision)
    rng = random.Random(demo.seed + 11)
    present = demo.present()
    people = rng.sample(
        sorted(m for m, p in present.items() if p.get("sfdc_contact_id") or p.get("sfdc_lead_id")),
        min(len(present), FROM_ACTIONS + FROM_SALESFORCE),
    )
    today = date.today()

    # Actions -> Salesforce
    tasks: list[dict[str, Any]] = [
        {
            "task_id": f"demo-{uuid.uuid4()}",
            "marketo_id": m,
            "subject": f"Call back #{n}",
            "status": rng.choice(("OPEN", "COMPLETE")),
            "priority": rng.choice(("NORMAL", "HIGH")),
            "due_date": rng.choice((None, today + timedelta(days=n))),
            "details": rng.choice((None, f"notes {n}")),
            "deleted": False,
            "changed_at": datetime.now(UTC),
        }
        for n, m in enumerate(people[:FROM_ACTIONS])
    ]
    want_sf = {
        t["task_id"]: {SF_FIELD[f]: salesforce_value(f, t[f]) for f in ("subject", *BOTH_WAYS)}
        for t in tasks
    }
    demo.publish(REMINDER_TASKS, "ReminderTask", ((t["task_id"], t) for t in tasks))

    def in_salesforce() -> dict[str, dict[str, Any]]:
        return {
            r[TASK_ID_FIELD]: r
            for r in _sandbox(demo, "GET", "records/Task")
            if r.get(TASK_ID_FIELD) in want_sf
        }

    def agreeing_sf() -> int:
        held = in_salesforce()
        return sum(
            all(held.get(i, {}).get(k) == v for k, v in w.items()) for i, w in want_sf.items()
        )

    demo.follow(
        {"Actions -> Salesforce: reminder Tasks as mapped": lambda: (agreeing_sf(), len(want_sf))}
    )

    # Salesforce -> Actions: a person's Tasks; one completed, one deleted afterwards.
    made = []
    for n, m in enumerate(people[FROM_ACTIONS:]):
        person = present[m]
        fields = {
            "Subject": f"From Salesforce #{n}",
            "Priority": rng.choice(("Normal", "High")),
            "Status": "Not Started",
            "ActivityDate": (today + timedelta(days=n)).isoformat(),
            "Description": f"written in Salesforce {n}",
            "WhoId": person.get("sfdc_contact_id") or person["sfdc_lead_id"],
        }
        made.append((_sandbox(demo, "POST", "records/Task", fields=fields)["Id"], m, fields))
    want_store: dict[str, dict[str, Any]] = {}
    for sf_id, m, fields in made:
        mapped = dict(filter(None, (actions_value(k, v) for k, v in fields.items())))
        want_store[f"sf-{sf_id}"] = mapped | {"marketo_id": m, "deleted": False}

    def agreeing_store() -> int:
        rows = _stored(demo, list(want_store))
        return sum(
            all(rows.get(i, {}).get(k) == v for k, v in w.items()) for i, w in want_store.items()
        )

    demo.follow(
        {
            "Salesforce -> Actions: Tasks imported as mapped": lambda: (
                agreeing_store(),
                len(want_store),
            )
        }
    )
    if len(made) >= 2:
        completed, deleted = made[0][0], made[1][0]
        _sandbox(demo, "PATCH", f"records/Task/{completed}", fields={"Status": "Completed"})
        _sandbox(demo, "DELETE", f"records/Task/{deleted}")
        want_store[f"sf-{completed}"] |= dict(filter(None, [actions_value("Status", "Completed")]))
        want_store[f"sf-{deleted}"] |= {"deleted": True}
        demo.follow(
            {
                "Salesforce -> Actions: a completion and a delete": lambda: (
                    agreeing_store(),
                    len(want_store),
                )
            }
        )
    rows = _stored(demo, list(want_store))
    for i, w in want_store.items():
        got = {k: rows.get(i, {}).get(k) for k in w}
        if got != w:
            demo.problems.append(f"reminder {i}: store holds {got}, expected {w}")
    return [
        Row(
            "S11", "reminder-task sync switched on, applied live", "yes", "yes" if applied else "no"
        ),
        Row(
            "S11",
            f"Actions -> Salesforce: {len(tasks)} tasks as Tasks, fields mapped",
            str(len(want_sf)),
            str(agreeing_sf()),
        ),
        Row(
            "S11",
            f"Salesforce -> Actions: {len(made)} Tasks (1 completed, 1 deleted)",
            str(len(want_store)),
            str(agreeing_store()),
        ),
    ]
