"""Factories for contract records, with sensible defaults and explicit overrides."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def person_change(marketo_id: int = 1, version: int = 0, **fields: Any) -> dict[str, Any]:
    """A PersonChange of a sales-owned lead; `version` seconds after T0."""
    change: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "marketo_id": marketo_id,
        "changed_at": T0 + timedelta(seconds=version),
        "deleted": False,
        "first_name": "Ada",
        "last_name": "Lovelace",
        "email": f"person{marketo_id}@example.com",
        "phone": "+1-555-0100",
        "title": "CTO",
        "company": "Analytical Engines",
        "linkedin_url": f"https://www.linkedin.com/in/p{marketo_id}",
        "source": "Web",
        "sfdc_lead_id": f"00Q{marketo_id:015d}",
        "sfdc_contact_id": None,
        "sfdc_account_id": None,
        "sfdc_opportunity_id": None,
        "sfdc_lead_owner_id": "005000000000000001",
        "sfdc_contact_owner_id": None,
    }
    change.update(fields)
    return change


def sales_activity(
    type_: str = "SEND_SALES_EMAIL", marketo_id: int = 42, **fields: Any
) -> dict[str, Any]:
    """A SalesActivity of the person `marketo_id`, at T0, with every optional field set."""
    activity: dict[str, Any] = {
        "activity_id": str(uuid.uuid4()),
        "type": type_,
        "marketo_id": marketo_id,
        "occurred_at": T0,
        "seller_email": "seller@example.com",
        "email_subject": "Quick question",
        "template_id": "t-1",
        "template_name": "Intro",
        "template_url": "https://actions.test/templates/1",
        "campaign_id": "c-1",
        "campaign_name": "Q3 outreach",
        "campaign_url": "https://actions.test/campaigns/1",
        "campaign_day": 2,
        "campaign_step": 3,
        "link": "https://example.com/pricing",
        "bounce_details": "550 mailbox unavailable",
        "call_status": "completed",
        "call_subject": "Discovery call",
        "call_outcome": "Interested",
        "call_reason": "Follow-up",
        "call_duration_seconds": 300,
        "call_recording_url": "https://actions.test/recordings/1",
        "call_answered_by": "Ada",
        "phone_number_called": "+1-555-0100",
    }
    activity.update(fields)
    return activity
