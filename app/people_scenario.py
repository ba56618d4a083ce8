"""A reproducible stream of person changes, the rules' expected outcome, and the check.

Used by `actions-sync demo`, the end-to-end tests and the people benchmark. The scenario
publishes every person of the generated population, then edits, owner removals, owner
additions, deletes, and stale (older) versions published after newer ones; the oracle
is computed independently of the agent from the full history: the newest change of each
person decides whether it is in the store and with which fields.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from actions_sync.store import PERSON_FIELDS, Store
from sandboxes.population import generate, owner_id

__all__ = ["Expected", "Mismatch", "Report", "Scenario", "reconcile"]

Change = dict[str, Any]
# The population is created over 2025 (`sandboxes.population.EPOCH`); its changes are
# dated a year earlier, so that none is in the future whatever day the scenario runs on
# (workers dead-letter changes dated after now + ACTIONS_SYNC_FUTURE_SKEW_S).
HISTORY = timedelta(days=366)


@dataclass
class Expected:
    """Newest change per person, and which people the rules keep."""

    newest: dict[int, Change] = field(default_factory=dict)

    def apply(self, change: Change) -> None:
        """Changes in publication order: of two with one `changed_at`, the later wins."""
        seen = self.newest.get(change["marketo_id"])
        if seen is None or seen["changed_at"] <= change["changed_at"]:
            self.newest[change["marketo_id"]] = change

    def present(self) -> dict[int, Change]:
        """People whose newest change is live and has an owner (SPEC S2, restated)."""
        return {
            mid: c
            for mid, c in self.newest.items()
            if not c["deleted"] and (c["sfdc_lead_owner_id"] or c["sfdc_contact_owner_id"])
        }


@dataclass
class Scenario:
    people: int = 50_000
    seed: int = 7
    edit_share: float = 0.2
    owner_removed_share: float = 0.05
    owner_added_share: float = 0.05
    deleted_share: float = 0.01
    stale_share: float = 0.02
    expected: Expected = field(default_factory=Expected)
    counts: dict[str, int] = field(default_factory=dict)

    def changes(self) -> Iterator[Change]:
        """Every change, in publication order; per person, newest last except stale ones."""
        rng = random.Random(self.seed + 1)
        population = list(generate(self.people, self.seed))
        for person in population:
            yield self._emit("created", rng, person, person["created_at"] - HISTORY)
        for kind, share, offset in (
            ("edited", self.edit_share, 1),
            ("owner_removed", self.owner_removed_share, 2),
            ("owner_added", self.owner_added_share, 3),
            ("deleted", self.deleted_share, 4),
            ("stale", self.stale_share, -1),
        ):
            for person in population:
                if rng.random() < share:
                    yield self._emit(
                        kind,
                        rng,
                        self._edit(kind, person, rng),
                        person["created_at"] + timedelta(days=offset) - HISTORY,
                    )

    @staticmethod
    def _edit(kind: str, person: Change, rng: random.Random) -> Change:
        edited = dict(person)
        if kind == "edited":
            edited["title"] = rng.choice(("Head of Sales", "COO", "Founder"))
            edited["phone"] = f"+1-555-{rng.randrange(10**7):07d}"
        elif kind == "owner_removed":
            edited["sfdc_lead_owner_id"] = edited["sfdc_contact_owner_id"] = None
        elif kind == "owner_added":
            edited["sfdc_lead_owner_id"] = owner_id(person["marketo_id"] + 1)
        elif kind == "stale":
            edited["first_name"] = "Stale"
        return edited

    def _emit(self, kind: str, rng: random.Random, person: Change, changed_at: Any) -> Change:
        change = {name: person.get(name) for name in PERSON_FIELDS}
        change.update(
            event_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            marketo_id=person["marketo_id"],
            changed_at=changed_at,
            deleted=kind == "deleted",
        )
        self.expected.apply(change)
        self.counts[kind] = self.counts.get(kind, 0) + 1
        return change


@dataclass(frozen=True)
class Mismatch:
    marketo_id: int
    problem: str


@dataclass
class Report:
    expected_present: int
    stored_present: int
    stored_removed: int
    mismatch_count: int
    mismatches: list[Mismatch]  # the first few, for the report

    @property
    def ok(self) -> bool:
        return self.mismatch_count == 0


def reconcile(store: Store, expected: Expected, limit: int = 20) -> Report:
    """Compare the store with the oracle: the same people present, with the same fields."""
    present = expected.present()
    mismatches: list[Mismatch] = []
    stored_present = stored_removed = 0
    seen: set[int] = set()
    for row in store.iter_persons():
        mid = row["marketo_id"]
        if mid not in expected.newest:
            continue  # not ours (a shared database)
        seen.add(mid)
        if row["removed_at"] is not None:
            stored_removed += 1
            if mid in present:
                mismatches.append(Mismatch(mid, "removed, but its newest change qualifies"))
            continue
        stored_present += 1
        want = present.get(mid)
        if want is None:
            mismatches.append(Mismatch(mid, "present, but its newest change does not qualify"))
            continue
        diff = [f for f in (*PERSON_FIELDS, "changed_at") if row[f] != want.get(f)]
        if diff:
            mismatches.append(Mismatch(mid, f"fields differ: {', '.join(diff)}"))
    mismatches += [Mismatch(mid, "missing from the store") for mid in present if mid not in seen]
    return Report(len(present), stored_present, stored_removed, len(mismatches), mismatches[:limit])
