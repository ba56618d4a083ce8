"""SPEC S12 in `actions-sync demo`: an admin setting flipped mid-run takes effect live.

The admin switches `salesforce_log_calls` off through the audited path of `settings set`;
once the running activity router applies the new revision (its
`actions_sync_admin_settings_revision`), calls and emails are published. The expected
outcome is the activity oracle's with the settings now stored (`activities_scenario.
expect`): every activity in Marketo, the emails' Tasks in Salesforce, none for the calls.
The switch is then turned back on; both changes are in the audit trail.
"""

from __future__ import annotations

from actions_sync.store import admin_settings as stored
from app.activities_scenario import ActivityScenario
from app.demo_support import DemoRun, Row

__all__ = ["run"]

SWITCH = "salesforce_log_calls"
KINDS = ("RECEIVED_SALES_CALL", "SEND_SALES_EMAIL")
SIZE = 40  # activities published after the switch


def run(demo: DemoRun) -> list[Row]:
    from app.demo import deliver_activities  # the activity flow's delivery and check

    demo.worker("activities")  # running before the change: it must apply it live
    revision = demo.admin_set(SWITCH, False)
    applied = demo.wait_applied("activities", revision)
    generated = ActivityScenario(SIZE * 4, demo.seed + 12).generate(demo.present())
    activities = [a for a in generated if a["type"] in KINDS][:SIZE]
    report, dead = deliver_activities(demo, activities, f"activities, {SWITCH} off")
    demo.admin_set(SWITCH, True)
    demo.problems.extend(report.mismatches)
    calls = sum(a["type"] == "RECEIVED_SALES_CALL" for a in activities)
    with demo.store() as store:
        audited = [
            e
            for e in stored.audit_log(store.engine, limit=1000)
            if e.key == SWITCH and e.changed_by == "demo"
        ]
    return [
        Row(
            "S12",
            f"{SWITCH} off, applied by the running router without a restart",
            "yes",
            "yes" if applied else "no",
        ),
        Row(
            "S12",
            f"after the switch: {calls} calls in Marketo, Tasks for emails only",
            f"{report.expected_marketo} in Marketo, {report.expected_tasks} Tasks",
            f"{report.expected_marketo - report.wrong_marketo} in Marketo, "
            f"{report.held_tasks} Tasks" + (f", {dead} dead letters" if dead else ""),
        ),
        Row("S12", f"changes of {SWITCH} in the audit trail (off, on)", "2", str(len(audited))),
    ]
