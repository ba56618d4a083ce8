"""A reproducible stream of sales activities, what Marketo and Salesforce must then hold,
and the check: the activity half of `actions-sync demo`.

The activities are about people the people flow kept (the newest change of each qualifies)
and cover every `SalesActivityType`. The oracle restates SPEC S4, S7 and S8 on its own,
independently of the router and the sinks:

- S7: every activity is logged in Marketo exactly once, against the person's Marketo ID,
  as its custom activity type; an email's primary value is `<subject> (SIA-<id>)`, a
  call's its subject, a campaign change's the campaign name.
- S8: a sent email, a reply or a call is also a Salesforce Task when its admin switch is
  on: Type Email / Reply / Call, Subject `Reply: <subject>` for a reply and, with the
  default template, `<Type>: <subject>` for the others. S4: WhoId is the Contact, else
  the Lead; WhatId the opportunity, else the account, with a Contact only.

The vendors are read back over their APIs (Marketo's REST activities, the Salesforce
sandbox's record listing) once the sinks have committed everything.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from actions_sync.admin.model import DEFAULT_SUBJECT_TEMPLATE, AdminSettings
from app.stack import http_client
from connectors.marketo.client import MarketoClient

__all__ = [
    "ActivityReport",
    "ActivityScenario",
    "ExpectedActivity",
    "expect",
    "marketo_activities",
    "reconcile_activities",
    "salesforce_tasks",
    "sandbox_counts",
]

Record = dict[str, Any]
START = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)  # the activities happen from here on
LEDGER_ATTRIBUTE = "actionsSyncId"  # the sink's id of each Marketo activity
TASK_ID_FIELD = "ActionsSync_Id__c"
TYPES_PER_CALL = 10  # activity types one Marketo activities call may ask for


@dataclass(frozen=True)
class Kind:
    marketo_type: str  # the custom activity type's apiName (S7)
    primary: str  # email | call | campaign: what the primary value is made of
    task_type: str | None = None  # Task.Type when it logs to Salesforce (S8)
    switch: str | None = None  # the admin setting that allows it


KINDS: dict[str, Kind] = {
    "SEND_SALES_EMAIL": Kind("sendSalesEmail", "email", "Email", "salesforce_log_emails"),
    "OPEN_SALES_EMAIL": Kind("openSalesEmail", "email"),
    "CLICK_SALES_EMAIL": Kind("clickSalesEmail", "email"),
    "REPLY_TO_SALES_EMAIL": Kind("replyToSalesEmail", "email", "Reply", "salesforce_log_replies"),
    "SALES_EMAIL_BOUNCED": Kind("salesEmailBounced", "email"),
    "RECEIVED_SALES_CALL": Kind("receivedSalesCall", "call", "Call", "salesforce_log_calls"),
    "ADD_TO_SALES_CAMPAIGN": Kind("addToSalesCampaign", "campaign"),
    "REMOVED_FROM_SALES_CAMPAIGN": Kind("removedFromSalesCampaign", "campaign"),
}
SUBJECTS = ("Quick question", "Pricing", "Following up", "Intro call", "Your trial")
CAMPAIGNS = ("Q3 outreach", "Renewals", "Webinar follow-up")
OUTCOMES = ("Interested", "No answer", "Call back later")


@dataclass
class ActivityScenario:
    """`activities` sales activities of the given people, deterministic for `seed` (the
    activity ids apart: fresh each run, so a reused store's Marketo ledger never holds
    them)."""

    activities: int = 3000
    seed: int = 7

    def generate(self, people: Mapping[int, Record]) -> list[Record]:
        rng = random.Random(self.seed + 2)
        ids = sorted(people)
        return [
            self._activity(n, rng, rng.choice(ids), rng.choice(tuple(KINDS)))
            for n in range(self.activities)
        ]

    @staticmethod
    def _activity(n: int, rng: random.Random, marketo_id: int, type_: str) -> Record:
        campaign = rng.choice(CAMPAIGNS)
        record: Record = {
            "activity_id": str(uuid.uuid4()),
            "type": type_,
            "marketo_id": marketo_id,
            "occurred_at": START + timedelta(seconds=7 * n),
            "seller_email": f"seller{n % 12}@example.com",
            "campaign_name": campaign,
            "campaign_id": f"c-{CAMPAIGNS.index(campaign)}",
            "campaign_url": f"https://actions.test/campaigns/{CAMPAIGNS.index(campaign)}",
        }
        if KINDS[type_].primary == "email":
            record |= {
                "email_subject": f"{rng.choice(SUBJECTS)} #{n}",
                "template_id": "t-1",
                "template_name": "Intro",
                "link": "https://example.com/pricing",
                "bounce_details": "550 mailbox unavailable",
            }
        elif KINDS[type_].primary == "call":
            record |= {
                "call_subject": f"Discovery call #{n}",
                "call_status": "completed",
                "call_outcome": rng.choice(OUTCOMES),
                "call_duration_seconds": rng.randrange(30, 1800),
                "phone_number_called": "+1-555-0100",
            }
        return record


# -- the oracle -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ExpectedTask:
    type: str
    subject: str | None  # None: a custom template, not restated here
    who: str
    what: str | None


@dataclass(frozen=True)
class ExpectedActivity:
    lead_id: int
    marketo_type: str
    primary: str
    task: ExpectedTask | None


def _primary(activity: Record) -> str:
    kind = KINDS[activity["type"]].primary
    if kind == "email":
        return f"{activity['email_subject']} (SIA-{activity['activity_id']})"
    return str(activity["call_subject"] if kind == "call" else activity["campaign_name"])


def _task(activity: Record, person: Record, settings: AdminSettings) -> ExpectedTask | None:
    kind = KINDS[activity["type"]]
    if kind.task_type is None or not getattr(settings, kind.switch or ""):
        return None
    subject = activity.get("call_subject") or activity.get("email_subject")
    if kind.task_type == "Reply":
        text: str | None = f"Reply: {subject}"
    elif settings.salesforce_subject_template == DEFAULT_SUBJECT_TEMPLATE:
        text = f"{kind.task_type}: {subject}"
    else:
        text = None
    contact = person.get("sfdc_contact_id")
    what = (person.get("sfdc_opportunity_id") or person.get("sfdc_account_id")) if contact else None
    return ExpectedTask(kind.task_type, text, contact or person["sfdc_lead_id"], what)


def expect(
    activities: list[Record], people: Mapping[int, Record], settings: AdminSettings
) -> dict[str, ExpectedActivity]:
    """Activity id -> what Marketo and Salesforce must hold for it."""
    return {
        a["activity_id"]: ExpectedActivity(
            a["marketo_id"],
            KINDS[a["type"]].marketo_type,
            _primary(a),
            _task(a, people[a["marketo_id"]], settings),
        )
        for a in activities
    }


# -- reading the vendors back ------------------------------------------------------------------


def marketo_activities(url: str, client_id: str, client_secret: str) -> list[Record]:
    """Every custom activity in a Marketo instance, read with the connector's own client
    (`MarketoClient`: paced, authenticated and retried like the sync's calls)."""
    return asyncio.run(_marketo_activities(MarketoClient(url, client_id, client_secret)))


async def _marketo_activities(client: MarketoClient) -> list[Record]:
    try:
        names = {t["id"]: t["apiName"] for t in await client.custom_activity_types()}
        since = await client.paging_token(datetime(2000, 1, 1, tzinfo=UTC))
        ids = sorted(names)
        out: list[Record] = []
        for at in range(0, len(ids), TYPES_PER_CALL):
            token, more = since, True
            while more:
                page = await client.activities(token, ids[at : at + TYPES_PER_CALL])
                out += [a | {"activityType": names[a["activityTypeId"]]} for a in page.result]
                token, more = page.next_token, page.more
        return out
    finally:
        await client.aclose()


def sandbox_counts(
    marketo_url: str, salesforce_url: str, http: httpx.Client | None = None
) -> tuple[int, int]:
    """(custom activities in the Marketo sandbox, live Tasks in the Salesforce sandbox),
    from their control routes: no API limits spent."""
    get = http.get if http is not None else httpx.get
    marketo = get(f"{marketo_url}/_sandbox/marketo/counts", timeout=10).json()
    salesforce = get(f"{salesforce_url}/_sandbox/salesforce/counts", timeout=10).json()
    return int(marketo["custom_activities"]), int(salesforce["Task"]["live"])


def salesforce_tasks(url: str) -> list[Record]:
    """Every live Task of a Salesforce sandbox (its control route: no API budget used)."""
    return list(http_client().get(f"{url}/_sandbox/salesforce/records/Task", timeout=30).json())


# -- the check --------------------------------------------------------------------------------


@dataclass
class ActivityReport:
    expected_marketo: int
    held_marketo: int  # distinct expected activities found
    duplicates: int  # extra copies in Marketo
    expected_tasks: int
    held_tasks: int  # Tasks of ours, all
    mismatch_count: int = 0
    mismatches: list[str] = field(default_factory=list)  # the first few
    wrong_marketo: int = 0  # expected activities not in Marketo once, as expected
    wrong_ids: int = 0  # Tasks of ours with another WhoId or WhatId than expected

    @property
    def ok(self) -> bool:
        return self.mismatch_count == 0

    def problem(self, text: str, limit: int = 20) -> None:
        self.mismatch_count += 1
        if len(self.mismatches) < limit:
            self.mismatches.append(text)


def _ledger_id(activity: Record) -> str | None:
    return next(
        (
            str(a["value"])
            for a in activity.get("attributes") or ()
            if a.get("apiName") == LEDGER_ATTRIBUTE
        ),
        None,
    )


def reconcile_activities(
    expected: Mapping[str, ExpectedActivity], marketo: list[Record], tasks: list[Record]
) -> ActivityReport:
    """Compare what the vendors hold with the oracle (other ids are not ours: ignored)."""
    held: dict[str, list[Record]] = {}
    for activity in marketo:
        activity_id = _ledger_id(activity)
        if activity_id is not None and activity_id in expected:
            held.setdefault(activity_id, []).append(activity)
    found: dict[str, list[Record]] = {}
    for task in tasks:
        if task.get(TASK_ID_FIELD) in expected:
            found.setdefault(task[TASK_ID_FIELD], []).append(task)
    want_tasks = {i for i, e in expected.items() if e.task is not None}
    report = ActivityReport(
        len(expected),
        len(held),
        sum(len(copies) - 1 for copies in held.values()),
        len(want_tasks),
        sum(len(copies) for copies in found.values()),
    )
    for activity_id, want in expected.items():
        _check_marketo(report, activity_id, want, held.get(activity_id, []))
        _check_task(report, activity_id, want.task, found.get(activity_id, []))
    return report


def _check_marketo(
    report: ActivityReport, activity_id: str, want: ExpectedActivity, copies: list[Record]
) -> None:
    if not copies:
        report.wrong_marketo += 1
        report.problem(f"{activity_id}: not in Marketo")
        return
    got = (copies[0]["activityType"], copies[0]["leadId"], copies[0]["primaryAttributeValue"])
    if len(copies) > 1 or got != (want.marketo_type, want.lead_id, want.primary):
        report.wrong_marketo += 1
    if len(copies) > 1:
        report.problem(f"{activity_id}: {len(copies)} times in Marketo")
    if got != (want.marketo_type, want.lead_id, want.primary):
        report.problem(
            f"{activity_id}: Marketo holds {got}, expected "
            f"{(want.marketo_type, want.lead_id, want.primary)}"
        )


def _check_task(
    report: ActivityReport, activity_id: str, want: ExpectedTask | None, copies: list[Record]
) -> None:
    if want is None:
        if copies:
            report.problem(f"{activity_id}: a Task, but it must not log to Salesforce")
        return
    if not copies:
        report.problem(f"{activity_id}: no Salesforce Task")
        return
    if len(copies) > 1:
        report.problem(f"{activity_id}: {len(copies)} Tasks")
    task = copies[0]
    got = (task.get("Type"), task.get("WhoId"), task.get("WhatId") or None)
    if got[1:] != (want.who, want.what):
        report.wrong_ids += 1
    if got != (want.type, want.who, want.what):
        report.problem(
            f"{activity_id}: Task (Type, WhoId, WhatId) = {got}, expected "
            f"{(want.type, want.who, want.what)}"
        )
    if want.subject is not None and task.get("Subject") != want.subject:
        report.problem(
            f"{activity_id}: Task Subject {task.get('Subject')!r}, expected {want.subject!r}"
        )
