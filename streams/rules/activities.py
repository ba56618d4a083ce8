"""The activity rules of SPEC S4, S7 and S8, as pure functions of a decoded `SalesActivity`,
the person it is about (a `persons` row) and the admin settings.

- S7: every activity logs to Marketo as its custom type (`connectors.marketo.activity_types`)
  with the glossary's attributes; Email Subject carries the suffix ` (SIA-<activity id>)`,
  Source is `Sales App`.
- S8: as the admin settings allow, an activity also logs to Salesforce as a completed
  Task, upserted by the activity id. What logs, by setting:

  | setting                  | activity                | Task Type | TaskSubtype |
  |--------------------------|-------------------------|-----------|-------------|
  | `salesforce_log_emails`  | SEND_SALES_EMAIL        | Email     | Email       |
  | `salesforce_log_replies` | REPLY_TO_SALES_EMAIL    | Reply     | Email       |
  | `salesforce_log_calls`   | RECEIVED_SALES_CALL     | Call      | Call        |

  Opens, clicks, bounces and campaign membership are engagement signals: they log to
  Marketo only (a Task per open would bury the seller's real activity in Salesforce).
- The subject comes from the admin template; a reply's is always `Reply: <subject>`.
- S4: WhoId is the Contact when the person has one, else the Lead. WhatId is the
  opportunity, else the account, and only with a Contact: Salesforce rejects a Task whose
  WhoId is a Lead and that has a WhatId (FIELD_INTEGRITY_EXCEPTION).
- A person removed from Actions: activities that happened before the removal are logged
  as usual (they happened while the person was in Actions, e.g. a late-arriving open);
  later ones are dead-lettered `person_not_synced` (`dlq replay` once the person is back).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import schemas
from actions_sync.admin.model import PLACEHOLDER, AdminSettings
from actions_sync.errors import RuleViolation, Skippable
from connectors.marketo.activity_types import BY_SYMBOL, SOURCE
from streams.rules.contract import (
    MAX_FIELD_CHARS,
    check_key,
    check_lengths,
    check_not_after,
)

__all__ = [
    "SUBJECT_MAX",
    "PersonNotSynced",
    "PersonUnknown",
    "Route",
    "activity_id",
    "check",
    "in_actions",
    "marketo_activity",
    "render_subject",
    "route",
    "salesforce_task",
    "task_kind",
    "task_subject",
]

SUBJECT_MAX = MAX_FIELD_CHARS  # Salesforce Task.Subject; also Marketo's string attributes
# The contract's text fields (plain or optional strings; not the uuid activity_id): at
# most 255 characters each, as for person fields (`streams.rules.contract`).
TEXT_FIELDS = tuple(
    f["name"]
    for f in schemas.load("SalesActivity")["fields"]
    if f["type"] in ("string", ["null", "string"])
)
# Everything str.splitlines() splits on, so that no reader sees a second line.
LINE_BREAKS = re.compile(r"\s*[\r\n\v\f\x1c-\x1e\x85\u2028\u2029]+\s*")
Activity = Mapping[str, Any]
Person = Mapping[str, Any]


class PersonUnknown(Skippable):
    """The activity's person never reached the Actions store within the parking time."""

    stage = "route"
    reason = "person_unknown"


class PersonNotSynced(Skippable):
    """The activity happened after its person left the Actions store."""

    stage = "route"
    reason = "person_not_synced"


def activity_id(activity: Activity) -> str:
    """The idempotency key as text (the Avro reader gives a uuid logical type as a UUID)."""
    return str(activity["activity_id"])


def check(key: bytes | None, activity: Activity, latest: datetime) -> None:
    """Reject an activity that breaks the topic's contract (`RuleViolation` -> DLQ);
    `latest`: the latest `occurred_at` accepted (the time it is read plus the clock skew)."""
    marketo_id = activity["marketo_id"]
    if marketo_id <= 0:
        raise RuleViolation(f"marketo_id must be positive, got {marketo_id}")
    if not activity_id(activity):
        raise RuleViolation("activity_id is empty: it is the idempotency key")
    check_lengths(activity, TEXT_FIELDS)
    check_key(key, marketo_id, "activities")
    check_not_after("occurred_at", activity["occurred_at"], latest)


def in_actions(person: Person, occurred_at: datetime) -> bool:
    """The person was in Actions when the activity happened."""
    removed_at = person.get("removed_at")
    return removed_at is None or occurred_at < removed_at


# -- Marketo (S7) ------------------------------------------------------------------------------


def _email_subject(activity: Activity) -> str:
    """`<subject> (SIA-<id>)`, the subject cut so that the whole fits Marketo's 255."""
    suffix = f"(SIA-{activity_id(activity)})"
    subject = _one_line(activity.get("email_subject") or "")
    room = SUBJECT_MAX - len(suffix) - 1
    return f"{subject[:room].rstrip()} {suffix}" if subject else suffix


def _text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def _from(name: str) -> Callable[[Activity, Person], str | None]:
    return lambda activity, _person: _text(activity.get(name))


# Attribute apiName -> its value; one row per attribute of the glossary.
VALUES: dict[str, Callable[[Activity, Person], str | None]] = {
    "emailSubject": lambda a, _p: _email_subject(a),
    "sentBy": _from("seller_email"),
    "receivedBy": _from("seller_email"),
    "salesCallMadeBy": _from("seller_email"),
    "source": lambda _a, _p: SOURCE,
    "templateId": _from("template_id"),
    "salesTemplateUrl": _from("template_url"),
    "salesTemplateName": _from("template_name"),
    "salesCampaignUrl": _from("campaign_url"),
    "salesCampaignName": _from("campaign_name"),
    "salesCampaignId": _from("campaign_id"),
    # Actions' contract carries the seller's email, not their Marketo sales person id.
    "marketoSalesPersonId": lambda _a, _p: None,
    "link": _from("link"),
    "details": _from("bounce_details"),
    "email": lambda _a, person: _text(person.get("email")),  # the address that bounced
    "salesCallStatus": _from("call_status"),
    "salesCallSubject": _from("call_subject"),
    "salesPhoneNumberCalled": _from("phone_number_called"),
    "salesCallDuration": _from("call_duration_seconds"),
    "salesCallRecordingUrl": _from("call_recording_url"),
    "salesCallAnsweredBy": _from("call_answered_by"),
}
# Marketo refuses an empty primaryAttributeValue (1003): these stand in when it is missing.
PRIMARY_FALLBACK = {"salesCallSubject": "Sales Call", "salesCampaignName": "Sales Campaign"}


def marketo_activity(activity: Activity, person: Person) -> dict[str, Any]:
    """The `MarketoActivityOut` of an activity: its custom type and attributes (S7).

    Attributes without a value are left out rather than sent empty.
    """
    type_ = BY_SYMBOL[activity["type"]]
    primary = type_.primary_attribute.api_name
    attributes = {a.api_name: VALUES[a.api_name](activity, person) for a in type_.attributes}
    return {
        "activity_id": activity_id(activity),
        "lead_id": activity["marketo_id"],
        "type": type_.symbol,
        "activity_date": activity["occurred_at"],
        "primary_attribute_value": (
            VALUES[primary](activity, person) or PRIMARY_FALLBACK.get(primary, type_.name)
        )[:SUBJECT_MAX],
        "attributes": {k: v for k, v in attributes.items() if v is not None},
    }


# -- Salesforce (S8) ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskKind:
    type: str  # Task.Type
    subtype: str  # Task.TaskSubtype
    setting: str  # the AdminSettings switch that allows it


TASK_KINDS: dict[str, TaskKind] = {
    "SEND_SALES_EMAIL": TaskKind("Email", "Email", "salesforce_log_emails"),
    "REPLY_TO_SALES_EMAIL": TaskKind("Reply", "Email", "salesforce_log_replies"),
    "RECEIVED_SALES_CALL": TaskKind("Call", "Call", "salesforce_log_calls"),
}


def task_kind(activity_type: str, settings: AdminSettings) -> TaskKind | None:
    """The kind of Task an activity logs as, or None when it does not log to Salesforce."""
    kind = TASK_KINDS.get(activity_type)
    return kind if kind is not None and getattr(settings, kind.setting) else None


def _one_line(text: str) -> str:
    return LINE_BREAKS.sub(" ", text).strip()


def render_subject(template: str, values: Mapping[str, Any]) -> str:
    """S8: placeholders replaced (missing or empty -> nothing), line breaks removed, ≤ 255."""
    rendered = PLACEHOLDER.sub(lambda m: _one_line(_text(values.get(m.group(1))) or ""), template)
    return _one_line(rendered)[:SUBJECT_MAX].rstrip()


def _activity_subject(activity: Activity) -> str | None:
    if activity["type"] == "RECEIVED_SALES_CALL":
        return _text(activity.get("call_subject"))
    return _text(activity.get("email_subject"))


def task_subject(template: str, activity: Activity) -> str:
    """The Task Subject: `Reply: <subject>` for a reply, else the admin template."""
    kind = TASK_KINDS[activity["type"]]
    subject = _activity_subject(activity) or ""
    if kind.type == "Reply":
        return render_subject("Reply: {{activity_subject}}", {"activity_subject": subject})
    rendered = render_subject(
        template,
        {
            "activity_type": kind.type,
            "activity_subject": subject,
            "sales_campaign_name": activity.get("campaign_name"),
            "sales_campaign_day": activity.get("campaign_day"),
            "sales_campaign_step": activity.get("campaign_step"),
            "call_outcome": activity.get("call_outcome"),
            "call_reason": activity.get("call_reason"),
        },
    )
    return rendered or kind.type  # a template of only empty values still names the Task


def who_and_what(person: Person) -> tuple[str | None, str | None]:
    """S4: (WhoId, WhatId) — Contact else Lead; opportunity else account, with a Contact only."""
    contact, lead = person.get("sfdc_contact_id"), person.get("sfdc_lead_id")
    if contact:
        return contact, person.get("sfdc_opportunity_id") or person.get("sfdc_account_id") or None
    return lead or None, None


def _description(activity: Activity) -> str:
    lines = [
        ("Sales campaign", activity.get("campaign_name")),
        ("Campaign day", activity.get("campaign_day")),
        ("Campaign step", activity.get("campaign_step")),
        ("Template", activity.get("template_name")),
        ("Call outcome", activity.get("call_outcome")),
        ("Call reason", activity.get("call_reason")),
        ("Recording", activity.get("call_recording_url")),
        ("Seller", activity.get("seller_email")),
    ]
    return "\n".join(f"{label}: {value}" for label, value in lines if _text(value))[:32_000]


def salesforce_task(
    activity: Activity, person: Person, settings: AdminSettings
) -> dict[str, Any] | None:
    """The `SalesforceTaskOut` UPSERT of an activity, or None when it does not log (S8)."""
    kind = task_kind(activity["type"], settings)
    who, what = who_and_what(person)
    if kind is None or who is None:
        return None
    occurred: datetime = activity["occurred_at"]
    fields: dict[str, Any] = {
        "Subject": task_subject(settings.salesforce_subject_template, activity),
        "Type": kind.type,
        "TaskSubtype": kind.subtype,
        "Status": "Completed",
        "Priority": "Normal",
        "ActivityDate": occurred.date().isoformat(),
        "WhoId": who,
        "WhatId": what,
        "Description": _description(activity) or None,
    }
    if kind.type == "Call":
        fields |= {
            "CallType": "Outbound",
            "CallDurationInSeconds": activity.get("call_duration_seconds"),
            "CallDisposition": (_text(activity.get("call_outcome")) or "")[:255] or None,
        }
    return {
        "external_id": activity_id(activity),
        "operation": "UPSERT",
        "fields": {k: v for k, v in fields.items() if v is not None},
        "occurred_at": occurred,
        "origin": f"activity:{activity_id(activity)}",
    }


# -- both ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    """Where one activity goes: always Marketo, and Salesforce when the settings allow."""

    marketo: dict[str, Any]
    salesforce: dict[str, Any] | None
    not_logged: str | None = field(default=None)  # why no Task: setting_off, no_salesforce_id


def route(activity: Activity, person: Person, settings: AdminSettings) -> Route:
    """Route an activity of a known person; `PersonNotSynced` when it came after removal."""
    if not in_actions(person, activity["occurred_at"]):
        raise PersonNotSynced(
            f"person_not_synced: Marketo ID {activity['marketo_id']} left Actions at"
            f" {person['removed_at'].isoformat()}, before the activity"
        )
    task = salesforce_task(activity, person, settings)
    reason = None
    if task is None and activity["type"] in TASK_KINDS:
        reason = (
            "setting_off" if task_kind(activity["type"], settings) is None else "no_salesforce_id"
        )
    return Route(marketo_activity(activity, person), task, reason)
