"""Activities as the read endpoints answer them (leadchanges, deletedleads, activities)."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from sandboxes.marketo.activities import CHANGE_DATA_VALUE, DELETE_LEAD, NEW_LEAD, Activity
from sandboxes.marketo.custom import ActivityType
from sandboxes.marketo.fields import iso, text_value

__all__ = ["activity_json", "deleted_lead_json", "lead_change_json"]


def _head(activity: Activity) -> dict[str, Any]:
    return {
        "id": activity.id,
        "marketoGUID": activity.guid,
        "leadId": activity.lead_id,
        "activityDate": iso(activity.activity_date),
        "activityTypeId": activity.type_id,
    }


def lead_change_json(
    activity: Activity, names: Collection[str] | None = None
) -> dict[str, Any] | None:
    """A New Lead / Change Data Value activity, its changes cut to `names`; None when a
    Change Data Value touched none of them (leadchanges.json leaves it out)."""
    changes = [
        {"id": f.id, "name": f.name, "newValue": text_value(f, new), "oldValue": text_value(f, old)}
        for f, old, new in activity.payload
        if names is None or f.name in names
    ]
    if activity.type_id == CHANGE_DATA_VALUE and not changes:
        return None
    return {**_head(activity), "fields": changes, "attributes": []}


def deleted_lead_json(activity: Activity) -> dict[str, Any]:
    return {
        **_head(activity),
        "primaryAttributeValueId": activity.lead_id,
        "primaryAttributeValue": activity.payload,
        "attributes": [],
    }


def activity_json(
    activity: Activity, type_of: Callable[[int], ActivityType | None]
) -> dict[str, Any]:
    """Any activity as GET activities.json answers it."""
    if activity.type_id in (NEW_LEAD, CHANGE_DATA_VALUE):
        out = lead_change_json(activity) or _head(activity)
        out["primaryAttributeValue"] = next((f["name"] for f in out.get("fields", ())), None)
        return out
    if activity.type_id == DELETE_LEAD:
        return deleted_lead_json(activity)
    type_ = type_of(activity.type_id)
    label = {a.api_name: a.name for a in type_.attributes} if type_ else {}
    attributes = [
        {"apiName": k, "name": label.get(k, k), "value": v}
        for k, v in activity.payload["attributes"].items()
    ]
    return {
        **_head(activity),
        "primaryAttributeValue": activity.payload["primaryAttributeValue"],
        "attributes": attributes,
    }
