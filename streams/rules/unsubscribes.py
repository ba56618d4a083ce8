"""The unsubscribe rules of SPEC S9 (and S10's part of them), as pure functions.

- Actions -> Salesforce: an unsubscribe captured in Actions opts the person out on the
  objects the admin chose (`unsubscribe_objects`: their Lead and/or Contact) in the field
  the admin chose (`unsubscribe_field`), at once, whatever the activity-logging settings
  say. It needs a Salesforce id: without one it is stored and counted, never failed.
- Salesforce -> Actions: an opt-out a person set in Salesforce (the source publishes only
  those) becomes an unsubscribe with source SALESFORCE_SYNC. It is not pushed back.
- Re-subscribes never flow: the only value ever written is `true`, and an uncheck in
  Salesforce never reaches the agent (the source drops it).
- Nothing flows towards Marketo (S10 asks Marketo instead).
- `unsubscribe_sync` off: nothing is pushed or pulled; what arrives meanwhile is kept and
  goes once it is on again (the agent's catch-up).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, NamedTuple

from actions_sync.admin.model import AdminSettings
from actions_sync.errors import RuleViolation
from connectors.salesforce.ids import to18
from streams.rules.contract import check_key

__all__ = [
    "ID_COLUMN",
    "SALESFORCE_SYNC",
    "Push",
    "Target",
    "check_optout",
    "check_unsubscribe",
    "from_salesforce",
    "optout_write",
    "pull",
    "push",
    "targets",
]

SALESFORCE_SYNC = "SALESFORCE_SYNC"
ID_COLUMN = {"Lead": "sfdc_lead_id", "Contact": "sfdc_contact_id"}  # persons' columns

# Why an unsubscribe did not go (the label of actions_sync_unsubscribes_unsynced_total).
Unsynced = Literal["sync_off", "person_unknown", "no_salesforce_id"]
# Why a Salesforce opt-out is not applied (yet).
Held = Literal["sync_off", "other_field", "object_not_synced"]

Person = Mapping[str, Any]


class Target(NamedTuple):
    """One field to set true on one Salesforce record."""

    sobject: str  # Lead or Contact
    sfdc_id: str  # 18 characters
    field: str


@dataclass(frozen=True)
class Push:
    """What an Actions unsubscribe sends to Salesforce: targets, or why nothing."""

    targets: tuple[Target, ...] = ()
    unsynced: Unsynced | None = None


def check_unsubscribe(key: bytes | None, unsubscribe: Mapping[str, Any]) -> None:
    """Reject an `Unsubscribe` that breaks the topic's contract (`RuleViolation` -> DLQ)."""
    marketo_id = unsubscribe["marketo_id"]
    if marketo_id <= 0:
        raise RuleViolation(f"marketo_id must be positive, got {marketo_id}")
    check_key(key, marketo_id, "unsubscribes")


def check_optout(key: bytes | None, optout: Mapping[str, Any]) -> None:
    """Reject a `SalesforceOptOut` whose record id is not a Salesforce id."""
    try:
        sfdc_id = to18(optout["sfdc_id"])
    except ValueError as exc:
        raise RuleViolation(str(exc)) from exc
    if key is None or key.decode(errors="replace")[:15] != sfdc_id[:15]:
        raise RuleViolation(
            f"key {key!r} is not the record id {sfdc_id}: the opt-outs of"
            " one record must share a key to stay in order"
        )


def targets(person: Person, settings: AdminSettings) -> tuple[Target, ...]:
    """The person's Lead and/or Contact among the admin's objects, in the admin's field.
    A malformed stored id is no id (Salesforce would refuse it: MALFORMED_ID)."""
    out = []
    for sobject in settings.unsubscribe_objects:
        value = person.get(ID_COLUMN[sobject])
        try:
            out.append(Target(sobject, to18(str(value)), settings.unsubscribe_field))
        except ValueError:  # None, or not an id
            continue
    return tuple(out)


def push(unsubscribe: Mapping[str, Any], person: Person | None, settings: AdminSettings) -> Push:
    """What an unsubscribe held in Actions sends to Salesforce now."""
    if unsubscribe["source"] == SALESFORCE_SYNC:
        return Push()  # it came from Salesforce: sending it back would be an echo
    if not settings.unsubscribe_sync:
        return Push(unsynced="sync_off")
    if person is None:
        return Push(unsynced="person_unknown")
    found = targets(person, settings)
    return Push(found) if found else Push(unsynced="no_salesforce_id")


def optout_write(
    target: Target, marketo_id: int, occurred_at: datetime, origin: str
) -> dict[str, Any]:
    """The `SalesforceOptOutWrite` record of one target (its value is always true)."""
    return {
        "sobject": target.sobject,
        "sfdc_id": target.sfdc_id,
        "field": target.field,
        "marketo_id": marketo_id,
        "occurred_at": occurred_at,
        "origin": origin,
    }


def pull(optout: Mapping[str, Any], settings: AdminSettings) -> Held | None:
    """None when a Salesforce opt-out is to be applied now, else why it is held back.

    Only the admin's field on the admin's objects is the opt-out the sync honours: a tick
    in another checkbox is someone else's business.
    """
    if not settings.unsubscribe_sync:
        return "sync_off"
    if optout["field"] != settings.unsubscribe_field:
        return "other_field"
    if optout["sobject"] not in settings.unsubscribe_objects:
        return "object_not_synced"
    return None


def from_salesforce(optout: Mapping[str, Any], person: Person) -> dict[str, Any]:
    """The unsubscribe row a Salesforce opt-out gives the person: source SALESFORCE_SYNC,
    when Salesforce recorded the change."""
    return {
        "marketo_id": int(person["marketo_id"]),
        "email": person.get("email") or optout.get("email"),
        "source": SALESFORCE_SYNC,
        "occurred_at": optout["system_modstamp"],
        "event_id": str(optout["event_id"]),
        "sfdc_id": to18(optout["sfdc_id"]),
    }
