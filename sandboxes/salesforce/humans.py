"""What people do in the org, as opposed to the integration: seed it, edit it.

`seed_people` loads Leads and Contacts for `sandboxes.population.generate(n, seed)`: a Lead
for every person's `sfdc_lead_id` and a Contact for every `sfdc_contact_id`, with owner,
name, email and `HasOptedOutOfEmail=false` (unowned leads belong to `human_user_id`).
`human_create` / `human_update` / `human_delete` write as a Salesforce user who is not the
integration user (default `human_user_id`), so that pollers see the change as a real edit:
opting a contact out, converting a lead, creating or completing a Task. They are validated
like API writes but never hit injected faults (a late commit aside: `late_by_s`, or the
seeded `late_commit_rate`), and may set UI-only fields such as `Lead.IsConverted`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sandboxes.population import generate
from sandboxes.salesforce.state import SalesforceState
from sandboxes.salesforce.writes import Writer
from sandboxes.sfdc_ids import full_id

__all__ = ["human_create", "human_delete", "human_update", "seed_people"]

Record = dict[str, Any]


def seed_people(
    state: SalesforceState, people: int, seed: int = 7, convert_contacts: bool = False
) -> dict[str, int]:
    """Create the people's Leads and Contacts (existing ids are left alone); the counts made.

    `convert_contacts` marks the Lead of every person with a Contact as converted to it.
    """
    made = {"Lead": 0, "Contact": 0}
    with state.lock:
        user, now = state.config.human_user_id, state.now()
        for person in generate(people, seed):
            for sobject, record_id, values in _records_of(state, person, convert_contacts):
                if record_id not in state.records[sobject]:
                    state.insert(sobject, values, user, now, None, record_id=record_id)
                    made[sobject] += 1
    return made


def human_create(
    state: SalesforceState, sobject: str, fields: Mapping[str, Any], user_id: str | None = None
) -> Record:
    """Create a record as a person would in Salesforce (RecordError if invalid)."""
    with state.lock:
        return dict(_writer(state, user_id).create(sobject, fields))


def human_update(
    state: SalesforceState,
    record_id: str,
    fields: Mapping[str, Any],
    user_id: str | None = None,
    late_by_s: float | None = None,
) -> Record:
    """Set `fields` on a record as a person would (RecordError if invalid); `late_by_s`
    commits it late: its SystemModstamp is that many seconds in the past."""
    with state.lock:
        return dict(_writer(state, user_id, late_by_s).update(record_id, fields))


def human_delete(state: SalesforceState, record_id: str, user_id: str | None = None) -> Record:
    """Delete a record as a person would (it stays queryable with `queryAll`)."""
    with state.lock:
        return dict(_writer(state, user_id).delete(record_id))


def _writer(state: SalesforceState, user_id: str | None, late_by_s: float | None = None) -> Writer:
    return Writer.for_call(
        state, full_id(user_id or state.config.human_user_id), human=True, late_by_s=late_by_s
    )


def _records_of(
    state: SalesforceState, person: Mapping[str, Any], convert: bool
) -> list[tuple[str, str, Record]]:
    names = {
        "FirstName": person["first_name"],
        "LastName": person["last_name"],
        "Email": person["email"],
        "HasOptedOutOfEmail": False,
    }
    contact_id = person["sfdc_contact_id"]
    lead_owner = (
        person["sfdc_lead_owner_id"]
        or person["sfdc_contact_owner_id"]
        or state.config.human_user_id
    )
    lead = {**names, "OwnerId": lead_owner, "Company": person["company"]}
    if convert and contact_id:
        lead.update(IsConverted=True, ConvertedContactId=contact_id)
    out = [("Lead", person["sfdc_lead_id"], lead)]
    if contact_id:
        out.append(("Contact", contact_id, {**names, "OwnerId": person["sfdc_contact_owner_id"]}))
    return out
