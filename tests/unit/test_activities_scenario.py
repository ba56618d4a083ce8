"""The demo's activity scenario: the activities it makes, its oracle (SPEC S4, S7, S8) and
its check of what the vendors hold — which must fail on a duplicate, a loss or a wrong
Task, or the demo could never say INCONSISTENT."""

from __future__ import annotations

from typing import Any

import pytest

from actions_sync.admin.model import AdminSettings
from app.activities_scenario import (
    KINDS,
    ActivityScenario,
    expect,
    reconcile_activities,
)
from connectors.marketo.activity_types import BY_SYMBOL
from streams.rules.activities import route

CONTACT = {
    "marketo_id": 6,
    "sfdc_lead_id": "00Q6",
    "sfdc_contact_id": "003C",
    "sfdc_account_id": "001A",
    "sfdc_opportunity_id": "006O",
    "email": "p6@example.com",
    "removed_at": None,
}
LEAD = {
    "marketo_id": 2,
    "sfdc_lead_id": "00Q2",
    "sfdc_contact_id": None,
    "sfdc_account_id": None,
    "sfdc_opportunity_id": None,
    "email": "p2@example.com",
    "removed_at": None,
}
PEOPLE = {6: CONTACT, 2: LEAD}


def scenario(count: int = 400) -> list[dict[str, Any]]:
    return ActivityScenario(activities=count, seed=3).generate(PEOPLE)


def test_activities_cover_every_type_for_the_given_people_only() -> None:
    activities = scenario()
    assert {a["type"] for a in activities} == set(KINDS) == set(BY_SYMBOL)
    assert {a["marketo_id"] for a in activities} == set(PEOPLE)
    assert len({a["activity_id"] for a in activities}) == len(activities)


def test_the_oracle_restates_s4_s7_s8() -> None:
    by_type = {(a["type"], a["marketo_id"]): a for a in scenario()}
    email = by_type[("SEND_SALES_EMAIL", 6)]
    want = expect([email], PEOPLE, AdminSettings())[email["activity_id"]]
    assert (want.marketo_type, want.lead_id) == ("sendSalesEmail", 6)
    assert want.primary == f"{email['email_subject']} (SIA-{email['activity_id']})"
    assert want.task is not None
    assert (want.task.type, want.task.who, want.task.what) == ("Email", "003C", "006O")
    assert want.task.subject == f"Email: {email['email_subject']}"
    reply = by_type[("REPLY_TO_SALES_EMAIL", 2)]
    task = expect([reply], PEOPLE, AdminSettings())[reply["activity_id"]].task
    assert task is not None and (task.type, task.who, task.what) == ("Reply", "00Q2", None)
    assert task.subject == f"Reply: {reply['email_subject']}"
    opened = by_type[("OPEN_SALES_EMAIL", 6)]
    assert expect([opened], PEOPLE, AdminSettings())[opened["activity_id"]].task is None
    call = by_type[("RECEIVED_SALES_CALL", 6)]
    calls_off = AdminSettings(salesforce_log_calls=False)
    assert expect([call], PEOPLE, calls_off)[call["activity_id"]].task is None


@pytest.mark.parametrize(
    "settings",
    [
        AdminSettings(),
        AdminSettings(salesforce_log_emails=False, salesforce_log_replies=False),
    ],
)
def test_the_oracle_agrees_with_the_routing_rules(settings: AdminSettings) -> None:
    """Two independent statements of the spec: where they differ, one of them is wrong."""
    for activity in scenario():
        want = expect([activity], PEOPLE, settings)[activity["activity_id"]]
        routed = route(activity, PEOPLE[activity["marketo_id"]], settings)
        assert BY_SYMBOL[routed.marketo["type"]].api_name == want.marketo_type
        assert routed.marketo["primary_attribute_value"] == want.primary
        assert (routed.salesforce is None) == (want.task is None)
        if want.task is not None and routed.salesforce is not None:
            fields = routed.salesforce["fields"]
            assert (fields["Type"], fields["Subject"], fields["WhoId"], fields.get("WhatId")) == (
                want.task.type,
                want.task.subject,
                want.task.who,
                want.task.what,
            )


def held(activities: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """What the vendors hold when every activity was delivered right, once (defaults)."""
    marketo, tasks = [], []
    for a in activities:
        routed = route(a, PEOPLE[a["marketo_id"]], AdminSettings())
        marketo.append(
            {
                "activityType": BY_SYMBOL[a["type"]].api_name,
                "leadId": a["marketo_id"],
                "primaryAttributeValue": routed.marketo["primary_attribute_value"],
                "attributes": [{"apiName": "actionsSyncId", "value": a["activity_id"]}],
            }
        )
        if routed.salesforce is not None:
            tasks.append({**routed.salesforce["fields"], "ActionsSync_Id__c": a["activity_id"]})
    return marketo, tasks


def test_what_was_delivered_right_reconciles() -> None:
    activities = scenario()
    report = reconcile_activities(expect(activities, PEOPLE, AdminSettings()), *held(activities))
    assert report.ok and report.held_marketo == report.expected_marketo == 400
    assert report.duplicates == 0 and report.held_tasks == report.expected_tasks > 0


def test_duplicates_losses_and_wrong_tasks_are_each_reported() -> None:
    activities = scenario()
    marketo, tasks = held(activities)
    opened = next(a for a in activities if a["type"] == "OPEN_SALES_EMAIL")
    marketo = [*marketo[1:], marketo[5]]  # one lost, one twice
    tasks[0] = {**tasks[0], "WhoId": "003X"}  # the wrong person
    tasks = [*tasks[:-1], {"ActionsSync_Id__c": opened["activity_id"], "Type": "Email"}]
    report = reconcile_activities(expect(activities, PEOPLE, AdminSettings()), marketo, tasks)
    assert report.duplicates == 1 and report.held_marketo == 399
    assert report.mismatch_count == 5  # lost, twice, wrong WhoId, missing Task, extra Task
    assert not report.ok
