"""The admin server as `actions-sync worker admin-api` runs it: the kernel's API and page
(`actions_sync.admin.http`) with the router's own Task Subject rule for the page's
preview (the kernel does not import the sync rules; the composition root hands it one)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from actions_sync.admin import http
from actions_sync.settings import Settings
from streams.rules.activities import task_subject

__all__ = ["SAMPLE_CALL", "preview", "run"]

# What the preview renders: a sales call with every field a template may use.
SAMPLE_CALL: dict[str, Any] = {
    "activity_id": "preview",
    "type": "RECEIVED_SALES_CALL",
    "marketo_id": 0,
    "occurred_at": datetime(2026, 3, 2, 9, 0, tzinfo=UTC),
    "seller_email": "seller@example.com",
    "call_subject": "Discovery call",
    "call_outcome": "Interested",
    "call_reason": "Follow-up",
    "campaign_name": "Q3 outreach",
    "campaign_day": 2,
    "campaign_step": 3,
}


def preview(template: str) -> str:
    """The Task Subject `template` gives the sample call, exactly as the router renders it."""
    return task_subject(template, SAMPLE_CALL)


def run(settings: Settings) -> None:
    http.run(settings, preview)
