"""The unsubscribe rules against SPEC S9 (and S10: nothing towards Marketo)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actions_sync.admin.model import AdminSettings
from actions_sync.errors import RuleViolation
from connectors.salesforce.ids import id15, to18
from connectors.salesforce.optout_sink import optout_record
from streams.rules.unsubscribes import (
    Push,
    Target,
    Unsynced,
    check_optout,
    check_unsubscribe,
    from_salesforce,
    optout_write,
    pull,
    push,
    targets,
)
from tests.factories import T0

DEFAULTS = AdminSettings()
LEAD_ID, CONTACT_ID = "00Q000000000001AAA", "003000000000002AAA"
BOTH = {
    "marketo_id": 7,
    "email": "p7@example.com",
    "sfdc_lead_id": LEAD_ID,
    "sfdc_contact_id": CONTACT_ID,
}


def unsubscribe(source: str = "CLICKED_LINK", marketo_id: int = 7) -> dict[str, Any]:
    return {
        "event_id": str(uuid.UUID(int=1)),
        "marketo_id": marketo_id,
        "email": "p7@example.com",
        "occurred_at": T0,
        "source": source,
    }


def optout(
    sobject: str = "Contact", sfdc_id: str | None = CONTACT_ID, field: str = "HasOptedOutOfEmail"
) -> dict[str, Any]:
    return {
        "event_id": str(uuid.UUID(int=2)),
        "sobject": sobject,
        "sfdc_id": sfdc_id,
        "email": "p7@example.com",
        "field": field,
        "system_modstamp": T0,
        "last_modified_by_id": "0050000000000HUMAN",
    }


def settings(**values: Any) -> AdminSettings:
    return AdminSettings(**values)


def test_an_actions_unsubscribe_opts_out_the_lead_and_the_contact_by_default() -> None:
    assert push(unsubscribe(), BOTH, DEFAULTS) == Push(
        (
            Target("Lead", LEAD_ID, "HasOptedOutOfEmail"),
            Target("Contact", CONTACT_ID, "HasOptedOutOfEmail"),
        )
    )


@pytest.mark.parametrize(
    "objects, want",
    [
        (("Lead",), [("Lead", LEAD_ID)]),
        (("Contact",), [("Contact", CONTACT_ID)]),
        (("Contact", "Lead"), [("Contact", CONTACT_ID), ("Lead", LEAD_ID)]),
    ],
)
def test_the_admin_chooses_the_objects(
    objects: tuple[str, ...], want: list[tuple[str, str]]
) -> None:
    found = targets(BOTH, settings(unsubscribe_objects=objects))
    assert [(t.sobject, t.sfdc_id) for t in found] == want


def test_the_admin_chooses_a_custom_field() -> None:
    found = targets(BOTH, settings(unsubscribe_field="Marketing_Opt_Out__c"))
    assert {t.field for t in found} == {"Marketing_Opt_Out__c"}


def test_pushed_even_when_activity_logging_to_salesforce_is_off() -> None:
    off = settings(
        salesforce_log_emails=False,
        salesforce_log_replies=False,
        salesforce_log_calls=False,
        salesforce_log_reminder_tasks=False,
    )
    assert len(push(unsubscribe(), BOTH, off).targets) == 2


@pytest.mark.parametrize(
    "person, objects, reason",
    [
        (
            {**BOTH, "sfdc_lead_id": None, "sfdc_contact_id": None},
            ("Lead", "Contact"),
            "no_salesforce_id",
        ),
        ({**BOTH, "sfdc_contact_id": None}, ("Contact",), "no_salesforce_id"),
        (
            {**BOTH, "sfdc_lead_id": "not an id", "sfdc_contact_id": None},
            ("Lead",),
            "no_salesforce_id",
        ),
        (None, ("Lead", "Contact"), "person_unknown"),
    ],
)
def test_without_a_salesforce_id_nothing_goes_and_the_reason_is_said(
    person: dict[str, Any] | None, objects: tuple[str, ...], reason: Unsynced
) -> None:
    assert push(unsubscribe(), person, settings(unsubscribe_objects=objects)) == Push(
        unsynced=reason
    )


def test_sync_off_pushes_nothing_and_pulls_nothing() -> None:
    off = settings(unsubscribe_sync=False)
    assert push(unsubscribe(), BOTH, off) == Push(unsynced="sync_off")
    assert pull(optout(), off) == "sync_off"


def test_an_unsubscribe_that_came_from_salesforce_is_not_pushed_back() -> None:
    assert push(unsubscribe("SALESFORCE_SYNC"), BOTH, DEFAULTS) == Push()


def test_a_15_character_id_in_the_store_is_pushed_in_its_18_character_form() -> None:
    found = targets(
        {**BOTH, "sfdc_lead_id": "00Q000000000001"}, settings(unsubscribe_objects=("Lead",))
    )
    assert found[0].sfdc_id == "00Q000000000001EAA"  # Q: bit 2 of the first five


@pytest.mark.parametrize(
    "short, full",
    [
        ("001A0000006Vm9r", "001A0000006Vm9rIAC"),  # Salesforce's documented example
        ("003000000000002", "003000000000002AAA"),
        ("00Qabcdeabcdeab", "00QabcdeabcdeabEAA"),
        ("ABCDEABCDEABCDE", "ABCDEABCDEABCDE555"),
    ],
)
def test_18_character_ids_carry_the_case_checksum(short: str, full: str) -> None:
    assert to18(short) == full
    assert to18(full) == full
    assert id15(full) == short


@pytest.mark.parametrize("bad", ["", "003", "003000000000002AA", "00300000000000-AAA"])
def test_what_is_not_an_id_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        to18(bad)


def test_a_salesforce_opt_out_is_stored_with_source_salesforce_sync() -> None:
    row = from_salesforce(optout(), {**BOTH, "email": None})
    assert row == {
        "marketo_id": 7,
        "email": "p7@example.com",
        "source": "SALESFORCE_SYNC",
        "occurred_at": T0,
        "event_id": str(uuid.UUID(int=2)),
        "sfdc_id": CONTACT_ID,
    }


def test_only_the_admins_field_on_the_admins_objects_is_pulled() -> None:
    assert pull(optout(), DEFAULTS) is None
    assert pull(optout(field="Other__c"), DEFAULTS) == "other_field"
    assert pull(optout(sobject="Lead"), settings(unsubscribe_objects=("Contact",))) == (
        "object_not_synced"
    )


@given(st.sampled_from(["Lead", "Contact"]), st.sampled_from(["HasOptedOutOfEmail", "Opt_Out__c"]))
def test_nothing_ever_writes_false(sobject: str, field: str) -> None:
    """Re-subscribes never flow: an opt-out write has no value but true."""
    write = optout_write(Target(sobject, LEAD_ID, field), 7, T0, "unsubscribe:x")
    record = optout_record(write["sobject"], write["sfdc_id"], [write["field"]])
    assert [v for k, v in record.items() if k not in ("attributes", "Id")] == [True]


def test_nothing_flows_towards_marketo() -> None:
    """S10: the only thing an unsubscribe produces is Salesforce targets."""
    plan = push(unsubscribe(), BOTH, DEFAULTS)
    assert {t.sobject for t in plan.targets} <= {"Lead", "Contact"}


def test_a_record_that_breaks_the_contract_is_refused() -> None:
    with pytest.raises(RuleViolation):
        check_unsubscribe(b"8", unsubscribe())
    with pytest.raises(RuleViolation):
        check_unsubscribe(None, unsubscribe(marketo_id=0))
    with pytest.raises(RuleViolation):
        check_optout(None, optout(sfdc_id="nope"))
    check_unsubscribe(b"7", unsubscribe())
    check_optout(CONTACT_ID[:15].encode(), optout())


def test_a_record_without_a_key_is_refused_like_a_key_mismatch() -> None:
    with pytest.raises(RuleViolation, match="no key"):
        check_unsubscribe(None, unsubscribe())
    with pytest.raises(RuleViolation, match="not the record id"):
        check_optout(None, optout())
