"""The people rules of SPEC S1-S5, as pure functions of decoded `PersonChange` records.

- S2: a person is in Actions while a Salesforce Lead Owner or Contact Owner is set;
  losing both owners, or the lead being deleted, removes (soft-deletes) the person.
- S3: exactly the 13 fixed fields are copied (plus the two owner ids that decide S2).
- S5: identity is the Marketo ID; people sharing an email stay separate.
- An older change never overwrites a newer one. The version is (`changed_at`,
  `log_position`): Marketo's times have one-second resolution, so two changes of a person
  may share a `changed_at`, and then the later in the log (the person's partition) wins —
  an update then a delete in one second ends deleted, the second of two edits stays.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from actions_sync.errors import RuleViolation
from actions_sync.person_rows import NO_POSITION, PERSON_FIELDS
from streams.rules.contract import check_key, check_lengths, check_not_after

__all__ = ["PeoplePlan", "check", "is_owned", "person_row", "plan", "qualifies", "version"]

OWNER_FIELDS = ("sfdc_lead_owner_id", "sfdc_contact_owner_id")


def is_owned(change: Mapping[str, Any]) -> bool:
    """S2: a lead or contact owner holds a user (any user)."""
    # The two OWNER_FIELDS spelled out: this runs for every change of every sync.
    return bool(change.get("sfdc_lead_owner_id") or change.get("sfdc_contact_owner_id"))


def qualifies(change: Mapping[str, Any]) -> bool:
    """The person belongs in the Actions store after this change."""
    return not change.get("deleted") and is_owned(change)


def version(change: Mapping[str, Any]) -> tuple[datetime, int]:
    """The order of a person's changes: `changed_at`, then the position in the log (a
    change without one, `NO_POSITION`, is older than any with one at its `changed_at`)."""
    return change["changed_at"], change.get("log_position", NO_POSITION)


def person_row(change: Mapping[str, Any]) -> dict[str, Any]:
    """The store row of a change: identity, the synced fields, the version (S3)."""
    row = {name: change.get(name) for name in PERSON_FIELDS}
    row["marketo_id"] = change["marketo_id"]
    row["changed_at"] = change["changed_at"]
    row["log_position"] = change.get("log_position", NO_POSITION)
    return row


def check(key: bytes | None, change: Mapping[str, Any], latest: datetime) -> None:
    """Reject a change that breaks the topic's contract (`RuleViolation` -> DLQ); `latest`:
    the latest `changed_at` accepted (the time it is read plus the allowed clock skew)."""
    marketo_id = change["marketo_id"]
    if marketo_id <= 0:
        raise RuleViolation(f"marketo_id must be positive, got {marketo_id}")
    check_lengths(change, PERSON_FIELDS)
    check_key(key, marketo_id, "changes")
    check_not_after("changed_at", change["changed_at"], latest)


@dataclass
class PeoplePlan:
    """What one batch asks of the store."""

    # The newest changes, as they came (a copy of each is a tenth of the agent's time):
    # the store reads `person_row`'s fields of them (and an upsert's `removed_at`).
    upserts: list[Mapping[str, Any]] = field(default_factory=list)
    removals: list[Mapping[str, Any]] = field(default_factory=list)
    superseded: int = 0  # changes replaced by a newer one of the same person in the batch
    not_owned: int = 0  # changes that leave or keep the person out of the store


def plan(changes: Iterable[Mapping[str, Any]]) -> PeoplePlan:
    """Collapse a batch to the newest change per person, then split by qualification.

    The store ends as if the changes had been applied one by one. The one case where the
    newest change alone is not enough: a person who qualified earlier in the batch and is
    removed by its newest change. One by one, the first change would have stored them and
    the removal marked them removed; so they are upserted *as removed* (`removed_at` set),
    which also records the removal's version — a stale qualifying change arriving later
    must not bring them back. A removal of someone who never qualified stays an update of
    an existing row only: people never in Actions are never written.
    """
    newest: dict[int, Mapping[str, Any]] = {}
    qualified: set[int] = set()
    total = 0
    for change in changes:
        total += 1
        marketo_id = change["marketo_id"]
        seen = newest.get(marketo_id)
        if seen is None or version(seen) < version(change):
            newest[marketo_id] = change
        if qualifies(change):
            qualified.add(marketo_id)
    result = PeoplePlan(superseded=total - len(newest))
    for marketo_id, change in newest.items():
        if qualifies(change):
            result.upserts.append(change)  # the store writes only `person_row`'s fields
            continue
        result.not_owned += 1
        if marketo_id in qualified:
            result.upserts.append({**person_row(change), "removed_at": change["changed_at"]})
        else:
            result.removals.append(change)
    return result
