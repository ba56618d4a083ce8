"""`MarketoActivityOut` records <-> Marketo custom activities: pure functions."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from connectors.marketo.registration import LEDGER_ATTRIBUTE

__all__ = ["activity_input", "ledger_key", "skip_reason"]


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def activity_input(record: Mapping[str, Any], type_id: int) -> dict[str, Any]:
    """One item of `POST /rest/v1/activities/external.json`, carrying its ledger key."""
    attributes = [
        {"apiName": name, "value": value}
        for name, value in sorted(record["attributes"].items())
        if value is not None and name != LEDGER_ATTRIBUTE.api_name
    ]
    attributes.append({"apiName": LEDGER_ATTRIBUTE.api_name, "value": record["activity_id"]})
    return {
        "leadId": record["lead_id"],
        "activityDate": _iso(record["activity_date"]),
        "activityTypeId": type_id,
        "primaryAttributeValue": record["primary_attribute_value"],
        "attributes": attributes,
    }


def ledger_key(activity: Mapping[str, Any]) -> str | None:
    """The activity id a read-back activity carries in its ledger attribute."""
    for attribute in activity.get("attributes") or ():
        if attribute.get("apiName") == LEDGER_ATTRIBUTE.api_name:
            return str(attribute.get("value"))
    return None


def skip_reason(result: Mapping[str, Any]) -> tuple[str, str]:
    """(code, message) of a skipped add-activity result: `errors` here, not `reasons`."""
    problems = result.get("errors") or result.get("reasons") or [{}]
    return str(problems[0].get("code", "?")), str(problems[0].get("message", ""))
