"""The activity rules against SPEC S4, S7 and S8."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actions_sync.admin.model import AdminSettings
from actions_sync.errors import RuleViolation
from connectors.marketo.activity_types import ACTIVITY_TYPES, BY_SYMBOL
from streams.rules.activities import (
    SUBJECT_MAX,
    VALUES,
    PersonNotSynced,
    check,
    marketo_activity,
    render_subject,
    route,
    salesforce_task,
    task_subject,
)
from tests.factories import T0, person_change, sales_activity

DEFAULTS = AdminSettings()
ALL_TYPES = [t.symbol for t in ACTIVITY_TYPES]


def person(**fields: Any) -> dict[str, Any]:
    row = {k: v for k, v in person_change(42, **fields).items() if k not in ("event_id", "deleted")}
    return {**row, "removed_at": None}


CONTACT = person(
    sfdc_contact_id="003C", sfdc_lead_id="00QL", sfdc_account_id="001A", sfdc_opportunity_id="006O"
)
LEAD = person(
    sfdc_contact_id=None, sfdc_lead_id="00QL", sfdc_account_id="001A", sfdc_opportunity_id="006O"
)


# -- S7: Marketo ------------------------------------------------------------------------------


def test_every_glossary_attribute_has_a_value_rule() -> None:
    names = {a.api_name for t in ACTIVITY_TYPES for a in (t.primary_attribute, *t.attributes)}
    assert names <= set(VALUES)


@pytest.mark.parametrize("type_", ALL_TYPES)
def test_every_activity_logs_to_marketo_as_its_custom_type(type_: str) -> None:
    activity = sales_activity(type_)
    out = marketo_activity(activity, CONTACT)
    declared = BY_SYMBOL[type_].attribute_names()
    assert out["type"] == type_ and out["lead_id"] == 42
    assert out["activity_id"] == activity["activity_id"]
    assert out["activity_date"] == activity["occurred_at"]
    assert out["primary_attribute_value"]  # Marketo refuses an empty one (1003)
    assert set(out["attributes"]) <= declared
    assert all(isinstance(v, str) and v for v in out["attributes"].values())
    if "source" in declared:
        assert out["attributes"]["source"] == "Sales App"


@pytest.mark.parametrize(
    "type_",
    [
        "SEND_SALES_EMAIL",
        "OPEN_SALES_EMAIL",
        "CLICK_SALES_EMAIL",
        "REPLY_TO_SALES_EMAIL",
        "SALES_EMAIL_BOUNCED",
    ],
)
def test_email_subject_carries_the_unique_suffix(type_: str) -> None:
    activity = sales_activity(type_, email_subject="My Subject Line")
    out = marketo_activity(activity, CONTACT)
    assert out["primary_attribute_value"] == f"My Subject Line (SIA-{activity['activity_id']})"


def test_a_long_email_subject_is_cut_before_the_suffix() -> None:
    activity = sales_activity("SEND_SALES_EMAIL", email_subject="x" * 400)
    value = marketo_activity(activity, CONTACT)["primary_attribute_value"]
    assert len(value) == SUBJECT_MAX and value.endswith(f"(SIA-{activity['activity_id']})")


@pytest.mark.parametrize(
    ("type_", "fields", "attribute", "expected"),
    [
        ("CLICK_SALES_EMAIL", {"link": "https://x.test/a"}, "link", "https://x.test/a"),
        ("SEND_SALES_EMAIL", {}, "sentBy", "seller@example.com"),
        ("REPLY_TO_SALES_EMAIL", {}, "receivedBy", "seller@example.com"),
        (
            "SALES_EMAIL_BOUNCED",
            {"bounce_details": "550 no such user"},
            "details",
            "550 no such user",
        ),
        ("SALES_EMAIL_BOUNCED", {}, "email", "person42@example.com"),
        ("RECEIVED_SALES_CALL", {"call_duration_seconds": 93}, "salesCallDuration", "93"),
        ("RECEIVED_SALES_CALL", {"call_status": "no answer"}, "salesCallStatus", "no answer"),
        ("ADD_TO_SALES_CAMPAIGN", {"campaign_id": "c-9"}, "salesCampaignId", "c-9"),
    ],
)
def test_attributes_come_from_the_activity_and_person(
    type_: str, fields: dict[str, Any], attribute: str, expected: str
) -> None:
    out = marketo_activity(sales_activity(type_, **fields), CONTACT)
    assert out["attributes"][attribute] == expected


@pytest.mark.parametrize(
    ("type_", "fields", "primary"),
    [
        ("RECEIVED_SALES_CALL", {"call_subject": "Intro call"}, "Intro call"),
        ("RECEIVED_SALES_CALL", {"call_subject": None}, "Sales Call"),
        ("ADD_TO_SALES_CAMPAIGN", {"campaign_name": "Q3 push"}, "Q3 push"),
        ("REMOVED_FROM_SALES_CAMPAIGN", {"campaign_name": None}, "Sales Campaign"),
    ],
)
def test_primary_attribute_is_never_empty(
    type_: str, fields: dict[str, str] | dict[str, None], primary: str
) -> None:
    assert (
        marketo_activity(sales_activity(type_, **fields), CONTACT)["primary_attribute_value"]
        == primary
    )


def test_missing_values_are_left_out_not_sent_empty() -> None:
    out = marketo_activity(
        sales_activity("SEND_SALES_EMAIL", template_url=None, template_name=""), CONTACT
    )
    assert "salesTemplateUrl" not in out["attributes"]
    assert "salesTemplateName" not in out["attributes"]


# -- S8: which activities log to Salesforce, by setting -------------------------------------------

LOGGED = {
    "SEND_SALES_EMAIL": ("Email", "Email", "salesforce_log_emails"),
    "REPLY_TO_SALES_EMAIL": ("Reply", "Email", "salesforce_log_replies"),
    "RECEIVED_SALES_CALL": ("Call", "Call", "salesforce_log_calls"),
}


@pytest.mark.parametrize("type_", ALL_TYPES)
@pytest.mark.parametrize("enabled", [True, False])
def test_activities_log_to_salesforce_as_the_settings_allow(type_: str, enabled: bool) -> None:
    settings = AdminSettings(
        salesforce_log_emails=enabled, salesforce_log_replies=enabled, salesforce_log_calls=enabled
    )
    task = salesforce_task(sales_activity(type_), CONTACT, settings)
    assert (task is not None) is (enabled and type_ in LOGGED)


@pytest.mark.parametrize(("type_", "off"), [(t, s) for t, (_, _, s) in LOGGED.items()])
def test_each_switch_turns_off_only_its_own_kind(type_: str, off: str) -> None:
    settings = AdminSettings(**{off: False})
    for other, (_, _, switch) in LOGGED.items():
        task = salesforce_task(sales_activity(other), CONTACT, settings)
        assert (task is None) is (switch == off)


@pytest.mark.parametrize(("type_", "expected"), list(LOGGED.items()))
def test_task_fields(type_: str, expected: tuple[str, str, str]) -> None:
    activity = sales_activity(type_)
    task = salesforce_task(activity, CONTACT, DEFAULTS)
    assert task is not None
    fields = task["fields"]
    assert (fields["Type"], fields["TaskSubtype"]) == expected[:2]
    assert fields["Status"] == "Completed"
    assert fields["ActivityDate"] == "2026-03-01"
    assert task["external_id"] == activity["activity_id"] and task["operation"] == "UPSERT"
    assert task["occurred_at"] == activity["occurred_at"]
    assert task["origin"] == f"activity:{activity['activity_id']}"
    assert all(v is not None for v in fields.values())


def test_a_call_task_carries_duration_and_outcome() -> None:
    task = salesforce_task(
        sales_activity("RECEIVED_SALES_CALL", call_duration_seconds=93, call_outcome="Interested"),
        CONTACT,
        DEFAULTS,
    )
    assert task is not None
    assert task["fields"]["CallDurationInSeconds"] == 93
    assert task["fields"]["CallDisposition"] == "Interested"


# -- S4: WhoId and WhatId ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ids", "who", "what"),
    [
        (
            {
                "sfdc_contact_id": "003C",
                "sfdc_lead_id": "00QL",
                "sfdc_account_id": "001A",
                "sfdc_opportunity_id": "006O",
            },
            "003C",
            "006O",
        ),
        ({"sfdc_contact_id": "003C", "sfdc_account_id": "001A"}, "003C", "001A"),
        ({"sfdc_contact_id": "003C"}, "003C", None),
        # Salesforce rejects a WhatId on a Task whose WhoId is a Lead.
        (
            {"sfdc_lead_id": "00QL", "sfdc_account_id": "001A", "sfdc_opportunity_id": "006O"},
            "00QL",
            None,
        ),
        ({"sfdc_lead_id": "00QL"}, "00QL", None),
    ],
)
def test_task_goes_to_contact_else_lead_and_to_opportunity_else_account(
    ids: dict[str, str], who: str, what: str | None
) -> None:
    base = {
        "sfdc_contact_id": None,
        "sfdc_lead_id": None,
        "sfdc_account_id": None,
        "sfdc_opportunity_id": None,
    }
    task = salesforce_task(sales_activity("SEND_SALES_EMAIL"), person(**{**base, **ids}), DEFAULTS)
    assert task is not None
    assert task["fields"]["WhoId"] == who
    assert task["fields"].get("WhatId") == what


def test_no_task_without_a_salesforce_id() -> None:
    nobody = person(sfdc_contact_id=None, sfdc_lead_id=None)
    result = route(sales_activity("SEND_SALES_EMAIL"), nobody, DEFAULTS)
    assert result.salesforce is None and result.not_logged == "no_salesforce_id"
    assert result.marketo["lead_id"] == 42


# -- S8: the subject ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "fields", "expected"),
    [
        ("{{activity_type}}: {{activity_subject}}", {"email_subject": "Hello"}, "Email: Hello"),
        ("{{ activity_type }} - {{activity_subject}}", {"email_subject": "Hi"}, "Email - Hi"),
        (
            "{{sales_campaign_name}} d{{sales_campaign_day}} s{{sales_campaign_step}}",
            {"campaign_name": "Q3", "campaign_day": 2, "campaign_step": 3},
            "Q3 d2 s3",
        ),
        (
            "[{{sales_campaign_name}}] {{activity_subject}}",
            {"campaign_name": None, "email_subject": "Hi"},
            "[] Hi",
        ),  # empty renders as nothing
        ("{{activity_type}}: {{activity_subject}}", {"email_subject": None}, "Email:"),
        (
            "{{activity_subject}}",
            {"email_subject": "line one\r\nline two\nthree"},
            "line one line two three",
        ),  # line breaks removed
        ("a\n{{activity_subject}}\nb", {"email_subject": "x"}, "a x b"),
        ("{{sales_campaign_name}}", {"campaign_name": None}, "Email"),  # never an empty Subject
    ],
)
def test_subject_template(
    template: str,
    fields: dict[str, str] | dict[str, str | int] | dict[str, str | None] | dict[str, None],
    expected: str,
) -> None:
    activity = sales_activity("SEND_SALES_EMAIL", **fields)
    assert task_subject(template, activity) == expected


def test_call_subject_template_uses_call_fields() -> None:
    activity = sales_activity(
        "RECEIVED_SALES_CALL", call_subject="Intro", call_outcome="Busy", call_reason="Follow-up"
    )
    template = "{{activity_type}}: {{activity_subject}} ({{call_outcome}}, {{call_reason}})"
    assert task_subject(template, activity) == "Call: Intro (Busy, Follow-up)"


def test_subject_is_cut_to_255() -> None:
    activity = sales_activity("SEND_SALES_EMAIL", email_subject="y" * 300)
    assert len(task_subject("{{activity_subject}}", activity)) == 255


@pytest.mark.parametrize("template", ["{{activity_type}}: {{activity_subject}}", "custom"])
def test_replies_always_log_as_reply_subject(template: str) -> None:
    activity = sales_activity("REPLY_TO_SALES_EMAIL", email_subject="Re: pricing\nsheet")
    assert task_subject(template, activity) == "Reply: Re: pricing sheet"


@given(template=st.text(max_size=400), subject=st.text(max_size=400))
def test_rendered_subjects_fit_salesforce(template: str, subject: str) -> None:
    rendered = render_subject(template, {"activity_subject": subject})
    assert len(rendered) <= 255
    assert len(rendered.splitlines()) <= 1


# -- removed people and the topic contract ---------------------------------------------------------


def test_activity_before_removal_still_routes() -> None:
    removed = {**CONTACT, "removed_at": T0 + timedelta(hours=1)}
    assert route(sales_activity("SEND_SALES_EMAIL"), removed, DEFAULTS).salesforce is not None


def test_activity_after_removal_is_person_not_synced() -> None:
    removed = {**CONTACT, "removed_at": T0 - timedelta(hours=1)}
    with pytest.raises(PersonNotSynced, match="person_not_synced"):
        route(sales_activity("SEND_SALES_EMAIL"), removed, DEFAULTS)


READ_AT = T0 + timedelta(days=1)  # these activities are read a day after they happened


@pytest.mark.parametrize(
    ("key", "fields", "reason"),
    [
        (b"41", {}, "is not the Marketo ID"),
        (None, {}, "no key: the key must be the Marketo ID 42"),
        (b"0", {"marketo_id": 0}, "must be positive"),
        (b"42", {"activity_id": ""}, "idempotency key"),
        (b"42", {"occurred_at": READ_AT + timedelta(seconds=1)}, "occurred_at .* in the future"),
        (b"42", {"email_subject": "x" * 2_000_000}, "email_subject is 2000000 characters"),
        (b"42", {"link": "https://example.com/" + "x" * 236}, "link is 256 characters"),
    ],
)
def test_contract_violations_are_rejected(
    key: bytes | None, fields: dict[str, Any], reason: str
) -> None:
    with pytest.raises(RuleViolation, match=reason):
        check(key, sales_activity("SEND_SALES_EMAIL", **fields), READ_AT)


def test_a_good_activity_passes_the_check() -> None:
    check(
        b"42",
        sales_activity(
            "SEND_SALES_EMAIL",
            activity_id=str(uuid.uuid4()),
            email_subject="x" * 255,
            occurred_at=READ_AT,
        ),
        READ_AT,
    )
