"""The whole chain of issue #5, every stage a real worker process on a real broker (Tansu,
or Apache Kafka when KAFKA_BOOTSTRAP_SERVERS is set), a real store and the vendors'
sandboxes over real HTTP:

    person changes -> people worker -> store
    sales activities -> activity router -> outbound topics -> Marketo / Salesforce sinks
                                                           -> Marketo / Salesforce sandboxes

Every activity type of the contract is produced for people the sandboxes know (seeded
from `sandboxes.population`, seed 7); what the sandboxes then hold is compared with values
written out below (SPEC S4, S7, S8): each activity once in Marketo as its custom type with
its attributes; in Salesforce the Tasks the admin settings allow, with the subject from the
admin template; nothing dead-lettered. The settings change once while the workers run.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from actions_sync.admin import set_value
from actions_sync.admin.live import load
from actions_sync.kafka import Ends, dlq_topic, read_topic, written
from actions_sync.publish import Publisher
from actions_sync.serialization import RegistryClient
from actions_sync.store import PERSON_FIELDS, Store
from actions_sync.topics import (
    OUTBOUND_MARKETO_ACTIVITIES,
    OUTBOUND_SALESFORCE_TASKS,
    PERSON_CHANGES,
    SALES_ACTIVITIES,
)
from app.stack import Stack
from sandboxes.population import generate, sfdc_id
from tests.factories import person_change, sales_activity
from tests.support.stacks import stack_settings
from tests.support.vendors import CREDENTIALS, ledger_ids, marketo_activities, salesforce_tasks

pytestmark = pytest.mark.slow

TOPICS = (PERSON_CHANGES, SALES_ACTIVITIES, OUTBOUND_MARKETO_ACTIVITIES, OUTBOUND_SALESFORCE_TASKS)
SEED_PEOPLE = 10  # both sandboxes hold people 1..10 of the population (seed 7)
# People of that population (checked in `people_changes`): a Contact with an opportunity,
# a Contact with an account only, an owned Lead, and a person nobody owns.
OPP, ACCOUNT, LEAD, UNOWNED = 6, 7, 2, 4
OPP_CONTACT, OPP_ID = sfdc_id("003", 6), sfdc_id("006", 6)
ACCOUNT_CONTACT, ACCOUNT_ID = sfdc_id("003", 7), sfdc_id("001", 8)
LEAD_ID = sfdc_id("00Q", 2)

TEMPLATE = (
    "{{activity_type}} | {{activity_subject}} | {{sales_campaign_name}} day"
    " {{sales_campaign_day}} step {{sales_campaign_step}} | {{call_outcome}}"
    " {{call_reason}}"
)
SELLER = "seller@example.com"
DAY = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
LONG = "Proposal " + "x" * 246  # the longest subject a producer may send (255): rendered
# with the template's prefix or the Marketo suffix, it is longer than a subject may be

# -- what is produced -------------------------------------------------------------------

EMAIL = {
    "email_subject": "Pricing for Company 6",
    "template_id": "t-7",
    "template_name": "Pricing intro",
    "template_url": "https://actions.test/templates/7",
    "campaign_id": "c-3",
    "campaign_name": "Q3 outreach",
    "campaign_url": "https://actions.test/campaigns/3",
    "campaign_day": 2,
    "campaign_step": 3,
}
CALL = {
    "call_status": "completed",
    "call_subject": "Discovery call",
    "call_outcome": "Interested",
    "call_reason": "Follow-up",
    "call_duration_seconds": 300,
    "call_recording_url": "https://actions.test/recordings/1",
    "call_answered_by": "Ada",
    "phone_number_called": "+1-555-0000006",
    "campaign_name": "Q3 outreach",
    "campaign_url": "https://actions.test/campaigns/3",
    "campaign_day": 4,
    "campaign_step": 1,
}
CAMPAIGN = {
    "campaign_id": "c-3",
    "campaign_name": "Q3 outreach",
    "campaign_url": "https://actions.test/campaigns/3",
}

# -- what Marketo must hold: custom type apiName, primary attribute, other attributes ----

EMAIL_ATTRIBUTES = {
    "sentBy": SELLER,
    "source": "Sales App",
    "templateId": "t-7",
    "salesTemplateUrl": "https://actions.test/templates/7",
    "salesTemplateName": "Pricing intro",
    "salesCampaignUrl": "https://actions.test/campaigns/3",
    "salesCampaignName": "Q3 outreach",
}
CALL_ATTRIBUTES = {
    "salesCallMadeBy": SELLER,
    "salesCallStatus": "completed",
    "salesCampaignName": "Q3 outreach",
    "salesCampaignUrl": "https://actions.test/campaigns/3",
    "salesPhoneNumberCalled": "+1-555-0000006",
    "source": "Sales App",
    "salesCallDuration": "300",
    "salesCallRecordingUrl": "https://actions.test/recordings/1",
    "salesCallAnsweredBy": "Ada",
}
CAMPAIGN_ATTRIBUTES = {
    "salesCampaignUrl": "https://actions.test/campaigns/3",
    "salesCampaignId": "c-3",
    "sentBy": SELLER,
    "source": "Sales App",
}


@dataclass(frozen=True)
class Case:
    """One activity produced, and what each vendor must hold for it."""

    activity: dict[str, Any]
    marketo_type: str  # the custom activity type's apiName
    primary: str
    attributes: dict[str, str]
    task: dict[str, Any] | None  # the Task's fields; None: no Task

    @property
    def id(self) -> str:
        return str(self.activity["activity_id"])


def activity(n: int, type_: str, marketo_id: int, **fields: Any) -> dict[str, Any]:
    """A SalesActivity with only `fields` set among the optional ones, `n` minutes in."""
    blank = {
        k: None
        for k in sales_activity()
        if k not in ("activity_id", "type", "marketo_id", "occurred_at", "seller_email")
    }
    return sales_activity(
        type_,
        marketo_id,
        **blank | fields,
        activity_id=str(uuid.UUID(int=n)),
        occurred_at=DAY + timedelta(minutes=n),
    )


def sia(n: int) -> str:
    return f"(SIA-{uuid.UUID(int=n)})"


def task(type_: str, subject: str, who: str, what: str | None, **fields: Any) -> dict[str, Any]:
    subtype = "Email" if type_ in ("Email", "Reply") else "Call"
    return {
        "Subject": subject,
        "Type": type_,
        "TaskSubtype": subtype,
        "WhoId": who,
        "WhatId": what,
        "Status": "Completed",
        "Priority": "Normal",
        "ActivityDate": "2026-03-02",
        **fields,
    }


def phase_one() -> list[Case]:
    """Emails and replies log to Salesforce, calls do not (`salesforce_log_calls` off)."""
    return [
        Case(
            activity(1, "SEND_SALES_EMAIL", OPP, **EMAIL),
            "sendSalesEmail",
            f"Pricing for Company 6 {sia(1)}",
            EMAIL_ATTRIBUTES,
            task(
                "Email",
                "Email | Pricing for Company 6 | Q3 outreach day 2 step 3 |",
                OPP_CONTACT,
                OPP_ID,
                Description="Sales campaign: Q3 outreach\nCampaign day: 2\nCampaign step: 3"
                f"\nTemplate: Pricing intro\nSeller: {SELLER}",
            ),
        ),
        Case(
            activity(2, "OPEN_SALES_EMAIL", OPP, **EMAIL),
            "openSalesEmail",
            f"Pricing for Company 6 {sia(2)}",
            EMAIL_ATTRIBUTES,
            None,
        ),
        Case(
            activity(3, "CLICK_SALES_EMAIL", OPP, **EMAIL, link="https://example.com/price"),
            "clickSalesEmail",
            f"Pricing for Company 6 {sia(3)}",
            {**EMAIL_ATTRIBUTES, "link": "https://example.com/price"},
            None,
        ),
        Case(
            activity(
                4,
                "REPLY_TO_SALES_EMAIL",
                OPP,
                email_subject="Re: Pricing\nfor Company 6",
                campaign_name="Q3 outreach",
            ),
            "replyToSalesEmail",
            f"Re: Pricing for Company 6 {sia(4)}",
            {"receivedBy": SELLER, "source": "Sales App"},
            task("Reply", "Reply: Re: Pricing for Company 6", OPP_CONTACT, OPP_ID),
        ),
        Case(
            activity(
                5,
                "SALES_EMAIL_BOUNCED",
                OPP,
                email_subject="Pricing for Company 6",
                template_id="t-7",
                bounce_details="550 mailbox unavailable",
            ),
            "salesEmailBounced",
            f"Pricing for Company 6 {sia(5)}",
            {
                "details": "550 mailbox unavailable",
                "email": "person6@example.com",
                "sentBy": SELLER,
                "templateId": "t-7",
            },
            None,
        ),
        Case(
            activity(6, "RECEIVED_SALES_CALL", OPP, **CALL),
            "receivedSalesCall",
            "Discovery call",
            CALL_ATTRIBUTES,
            None,
        ),  # calls are off
        Case(
            activity(7, "ADD_TO_SALES_CAMPAIGN", OPP, **CAMPAIGN),
            "addToSalesCampaign",
            "Q3 outreach",
            CAMPAIGN_ATTRIBUTES,
            None,
        ),
        Case(
            activity(8, "REMOVED_FROM_SALES_CAMPAIGN", OPP, **CAMPAIGN),
            "removedFromSalesCampaign",
            "Q3 outreach",
            CAMPAIGN_ATTRIBUTES,
            None,
        ),
        # S8: the rendered subject is cut to 255; S7: the Marketo subject keeps its suffix.
        Case(
            activity(9, "SEND_SALES_EMAIL", ACCOUNT, email_subject=LONG),
            "sendSalesEmail",
            "Proposal " + "x" * 203 + f" {sia(9)}",
            {"sentBy": SELLER, "source": "Sales App"},
            task("Email", "Email | Proposal " + "x" * 238, ACCOUNT_CONTACT, ACCOUNT_ID),
        ),
        Case(
            activity(10, "RECEIVED_SALES_CALL", ACCOUNT, **CALL),
            "receivedSalesCall",
            "Discovery call",
            CALL_ATTRIBUTES,
            None,
        ),
        # A Lead: WhoId is the Lead and there is no WhatId; empty values render as nothing.
        Case(
            activity(11, "SEND_SALES_EMAIL", LEAD, email_subject="Hello from Actions"),
            "sendSalesEmail",
            f"Hello from Actions {sia(11)}",
            {"sentBy": SELLER, "source": "Sales App"},
            task("Email", "Email | Hello from Actions |  day  step  |", LEAD_ID, None),
        ),
        Case(
            activity(12, "REPLY_TO_SALES_EMAIL", LEAD, email_subject="Re: Hello from Actions"),
            "replyToSalesEmail",
            f"Re: Hello from Actions {sia(12)}",
            {"receivedBy": SELLER, "source": "Sales App"},
            task("Reply", "Reply: Re: Hello from Actions", LEAD_ID, None),
        ),
    ]


def phase_two() -> list[Case]:
    """After the admin turned calls on and emails off, with the workers running."""
    return [
        Case(
            activity(
                13, "RECEIVED_SALES_CALL", OPP, **CALL | {"call_reason": "Follow-up\r\non pricing"}
            ),
            "receivedSalesCall",
            "Discovery call",
            CALL_ATTRIBUTES,
            task(
                "Call",
                "Call | Discovery call | Q3 outreach day 4 step 1 | Interested"
                " Follow-up on pricing",
                OPP_CONTACT,
                OPP_ID,
                CallType="Outbound",
                CallDurationInSeconds=300,
                CallDisposition="Interested",
            ),
        ),
        # No call subject: Marketo gets a stand-in primary value (it refuses an empty one).
        Case(
            activity(14, "RECEIVED_SALES_CALL", LEAD, call_outcome="No answer"),
            "receivedSalesCall",
            "Sales Call",
            {"salesCallMadeBy": SELLER, "source": "Sales App"},
            task(
                "Call",
                "Call |  |  day  step  | No answer",
                LEAD_ID,
                None,
                CallDisposition="No answer",
            ),
        ),
        Case(
            activity(15, "SEND_SALES_EMAIL", ACCOUNT, email_subject="Following up"),
            "sendSalesEmail",
            f"Following up {sia(15)}",
            {"sentBy": SELLER, "source": "Sales App"},
            None,
        ),  # emails are off now
        Case(
            activity(16, "REPLY_TO_SALES_EMAIL", ACCOUNT, email_subject="y" * 255),
            "replyToSalesEmail",
            "y" * 212 + f" {sia(16)}",
            {"receivedBy": SELLER, "source": "Sales App"},
            task("Reply", "Reply: " + "y" * 248, ACCOUNT_CONTACT, ACCOUNT_ID),
        ),
    ]


def people_changes() -> list[dict[str, Any]]:
    """The chosen people's PersonChanges, straight from the sandboxes' population."""
    population = {p["marketo_id"]: p for p in generate(SEED_PEOPLE, 7)}
    assert population[OPP]["sfdc_contact_id"] == OPP_CONTACT, "the population changed"
    assert population[ACCOUNT]["sfdc_opportunity_id"] is None
    assert population[LEAD]["sfdc_contact_id"] is None
    assert population[LEAD]["sfdc_lead_owner_id"] is not None
    assert population[UNOWNED]["sfdc_lead_owner_id"] is None
    return [
        person_change(mid, 0, **{f: population[mid][f] for f in PERSON_FIELDS})
        for mid in (OPP, ACCOUNT, LEAD, UNOWNED)
    ]


# -- driving the chain --------------------------------------------------------------------


class Producer:
    """Publishes contract records; remembers what the broker acknowledged."""

    def __init__(self, stack: Stack) -> None:
        self.registry = RegistryClient(stack.registry_url)
        self.publisher = Publisher(stack.bootstrap, self.registry)

    def publish(self, topic: str, record: str, values: list[dict[str, Any]]) -> Ends:
        self.publisher.publish(topic, record, [(str(v["marketo_id"]), v) for v in values])
        self.publisher.flush()
        return self.publisher.ends

    def close(self) -> None:
        del self.publisher  # its librdkafka producer goes before the broker does
        self.registry.close()


def wait_for_log(path: Path, text: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in path.read_text(errors="replace"):
        assert time.monotonic() < deadline, f"{text!r} not in {path} within {timeout_s:.0f}s"
        time.sleep(0.1)


def marketo_type_names(url: str) -> dict[int, str]:
    """Custom activity type id -> apiName, as the Marketo sandbox registered them."""
    with httpx.Client(base_url=url, timeout=10) as http:
        token = http.get("/identity/oauth/token", params=CREDENTIALS).json()["access_token"]
        body = http.get(
            "/rest/v1/activities/external/types.json", headers={"Authorization": f"Bearer {token}"}
        ).json()
    assert body["success"], body
    return {t["id"]: t["apiName"] for t in body["result"]}


@pytest.fixture
def stack(kafka: str, registry: str, tmp_path: Path) -> Iterator[Stack]:
    settings = stack_settings(kafka, registry, tmp_path, TOPICS)
    with Store(settings.database_url) as store:
        store.migrate()
    with Stack(settings, logdir=tmp_path) as running:
        yield running.start_vendors(seed_people=SEED_PEOPLE)
        for worker in running.workers:  # all at once: each takes seconds to leave its group
            worker.proc.terminate()


def test_activities_reach_marketo_once_and_salesforce_as_the_admin_chose(stack: Stack) -> None:
    set_value(stack.settings, "salesforce_log_calls", "false")
    set_value(stack.settings, "salesforce_subject_template", TEMPLATE)
    for name in ("people", "activities", "marketo-sink", "salesforce-sink"):
        stack.add_worker(name)
    router = next(w for w in stack.workers if w.name == "activities")
    first, second = phase_one(), phase_two()
    producer = Producer(stack)
    try:
        ends = producer.publish(PERSON_CHANGES, "PersonChange", people_changes())
        stack.wait_drained("people", PERSON_CHANGES, ends, timeout_s=120)
        ends = producer.publish(SALES_ACTIVITIES, "SalesActivity", [c.activity for c in first])
        stack.wait_drained("activities", SALES_ACTIVITIES, ends, timeout_s=120)

        set_value(stack.settings, "salesforce_log_calls", "true")
        set_value(stack.settings, "salesforce_log_emails", "false")
        with Store(stack.settings.database_url) as store:
            revision = load(store.engine).revision
        wait_for_log(router.log, f"admin settings revision {revision} applied")
        ends = producer.publish(SALES_ACTIVITIES, "SalesActivity", [c.activity for c in second])
        stack.wait_drained("activities", SALES_ACTIVITIES, ends, timeout_s=120)
    finally:
        producer.close()
    for sink, topic in (
        ("marketo-sink", OUTBOUND_MARKETO_ACTIVITIES),
        ("salesforce-sink", OUTBOUND_SALESFORCE_TASKS),
    ):
        stack.wait_drained(sink, topic, written(stack.bootstrap, (topic,)), timeout_s=120)

    cases = {c.id: c for c in first + second}
    with Store(stack.settings.database_url) as store:  # S2: only sales-owned people
        assert set(store.people_by_id([OPP, ACCOUNT, LEAD, UNOWNED])) == {OPP, ACCOUNT, LEAD}

    # S7: every activity exactly once, as its custom type, with its attributes.
    assert stack.marketo_url and stack.salesforce_url
    held = marketo_activities(stack.marketo_url)
    assert ledger_ids(held) == {i: 1 for i in cases}
    type_names = marketo_type_names(stack.marketo_url)
    for act in held:
        attributes = {a["apiName"]: a["value"] for a in act["attributes"]}
        case = cases[attributes.pop("actionsSyncId")]
        assert (type_names[act["activityTypeId"]], act["leadId"]) == (
            case.marketo_type,
            case.activity["marketo_id"],
        ), case.id
        assert act["primaryAttributeValue"] == case.primary, case.id
        assert attributes == case.attributes, case.id
        assert act["activityDate"] == case.activity["occurred_at"].strftime("%Y-%m-%dT%H:%M:%SZ")

    # S8 and S4: the Tasks the settings allowed, when the activity was routed; no others.
    tasks = salesforce_tasks(stack.salesforce_url)
    want = {i: c.task for i, c in cases.items() if c.task is not None}
    assert sorted(t["ActionsSync_Id__c"] for t in tasks) == sorted(want)
    for found in tasks:
        expected = want[found["ActionsSync_Id__c"]]
        assert {k: found.get(k) for k in expected} == expected, found["ActionsSync_Id__c"]
        assert len(found["Subject"]) <= 255

    for topic in TOPICS:
        assert not read_topic(stack.bootstrap, dlq_topic(topic), idle_s=0.5), topic
