"""Registering the eight custom activity types of SPEC S7 in Marketo, idempotently.

At start-up the sink lists the instance's custom types (drafts included) and, per type of
`activity_types.ACTIVITY_TYPES`: creates it when missing, adds the attributes it lacks,
and approves it when it is a draft or changed. A second start changes nothing and costs
one call. Every type also carries `LEDGER_ATTRIBUTE`, the activity's own id, which is
how the sink recognises its activities when it reads them back (`reconcile.py`).
"""

from __future__ import annotations

import logging
from typing import Any

from connectors.marketo.activity_types import ACTIVITY_TYPES, ActivityType, Attribute
from connectors.marketo.client import MarketoClient

__all__ = ["LEDGER_ATTRIBUTE", "register_types", "type_definition"]

log = logging.getLogger(__name__)

# Not in the glossary: the sink's idempotency key, so that a read-back activity can be
# matched to its ledger entry whatever its type (not every type has the (SIA-<id>) subject).
LEDGER_ATTRIBUTE = Attribute("actionsSyncId", "Actions Sync ID")


def _attribute(attribute: Attribute) -> dict[str, str]:
    return {"apiName": attribute.api_name, "name": attribute.name, "dataType": attribute.data_type}


def attributes_of(activity_type: ActivityType) -> tuple[Attribute, ...]:
    return (*activity_type.attributes, LEDGER_ATTRIBUTE)


def type_definition(activity_type: ActivityType) -> dict[str, Any]:
    """The body of Marketo's create-type call."""
    return {
        "apiName": activity_type.api_name,
        "name": activity_type.name,
        "triggerName": activity_type.trigger_name,
        "filterName": activity_type.filter_name,
        "primaryAttribute": _attribute(activity_type.primary_attribute),
    }


async def register_types(client: MarketoClient) -> dict[str, int]:
    """Make every type exist, complete and approved; answer symbol -> type id."""
    existing = {t["apiName"]: t for t in await client.custom_activity_types()}
    ids: dict[str, int] = {}
    for wanted in ACTIVITY_TYPES:
        found = existing.get(wanted.api_name)
        if found is None:
            found = await client.create_custom_activity_type(type_definition(wanted))
            log.info("created Marketo activity type %s (%s)", wanted.api_name, found["id"])
        have = {a["apiName"] for a in found.get("attributes") or ()}
        missing = [_attribute(a) for a in attributes_of(wanted) if a.api_name not in have]
        if missing:
            found = await client.add_custom_activity_attributes(wanted.api_name, missing)
        if missing or found.get("status") != "approved":
            found = await client.approve_custom_activity_type(wanted.api_name)
        ids[wanted.symbol] = int(found["id"])
    return ids
