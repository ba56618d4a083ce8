"""A reproducible population of people, the shared seed of the sandboxes and the demo.

`generate(n, seed)` yields the same people for the same arguments, in Marketo ID order.
Field names are the producer contract's (snake_case); the Marketo sandbox maps them to
its API names. About `owned_share` of the people have a Salesforce owner (sales-owned,
SPEC S2), and about `duplicate_share` reuse an earlier person's email (SPEC S5).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from sandboxes.sfdc_ids import checksum

__all__ = ["EPOCH", "FIRST_NAMES", "LAST_NAMES", "generate", "owner_id", "sfdc_id"]

# People are created over the year after this: a year that has passed, so that no
# generated date is in the future of a run (workers dead-letter changes dated after now
# + ACTIONS_SYNC_FUTURE_SKEW_S; with 2026 a run in December lost a twelfth of the people).
EPOCH = datetime(2025, 1, 1, tzinfo=UTC)
FIRST_NAMES = (
    "Ada",
    "Grace",
    "Alan",
    "Edsger",
    "Barbara",
    "Donald",
    "Frances",
    "Ken",
    "Margaret",
    "Dennis",
    "Radia",
    "Leslie",
    "Katherine",
    "Tim",
    "Sophie",
    "Niklaus",
)
LAST_NAMES = (
    "Lovelace",
    "Hopper",
    "Turing",
    "Dijkstra",
    "Liskov",
    "Knuth",
    "Allen",
    "Thompson",
    "Hamilton",
    "Ritchie",
    "Perlman",
    "Lamport",
    "Johnson",
    "Wilson",
)
TITLES = ("VP Sales", "Engineer", "CTO", "Buyer", "Director", "Analyst", None)
SOURCES = ("Web", "Trade Show", "Referral", "Paid Search", "Sales App")
OWNERS = 40  # distinct Salesforce users that own people


def sfdc_id(prefix: str, n: int) -> str:
    """An 18-character Salesforce id: 3-char key prefix, zero-padded number, checksum (so
    that its 15-character form names the same record)."""
    short = f"{prefix}{n:012d}"
    return short + checksum(short)


def owner_id(n: int) -> str:
    return sfdc_id("005", n % OWNERS + 1)


def generate(
    n: int,
    seed: int = 7,
    owned_share: float = 0.6,
    duplicate_share: float = 0.02,
    start_id: int = 1,
) -> Iterator[dict[str, Any]]:
    """Yield `n` people with Marketo IDs `start_id ..`, deterministic for `seed`."""
    rng = random.Random(seed)
    span_s = 365 * 86400
    for i in range(start_id, start_id + n):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        dup = i > start_id + 10 and rng.random() < duplicate_share
        email_no = rng.randrange(start_id, i) if dup else i
        owned = rng.random() < owned_share
        is_contact = owned and rng.random() < 0.5
        created = EPOCH + timedelta(seconds=rng.randrange(span_s))
        yield {
            "marketo_id": i,
            "first_name": first,
            "last_name": last,
            "email": f"person{email_no}@example.com",
            "phone": f"+1-555-{i % 10_000_000:07d}",
            "title": rng.choice(TITLES),
            "company": f"Company {i % 997}",
            "linkedin_url": f"https://www.linkedin.com/in/person{i}",
            "source": rng.choice(SOURCES),
            "sfdc_lead_id": sfdc_id("00Q", i),
            "sfdc_contact_id": sfdc_id("003", i) if is_contact else None,
            "sfdc_account_id": sfdc_id("001", i % 5000 + 1) if is_contact else None,
            "sfdc_opportunity_id": sfdc_id("006", i) if is_contact and i % 3 == 0 else None,
            "sfdc_lead_owner_id": owner_id(i) if owned and not is_contact else None,
            "sfdc_contact_owner_id": owner_id(i) if is_contact else None,
            "created_at": created,
            "updated_at": created,
        }
