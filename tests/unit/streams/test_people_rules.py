"""The people rules against SPEC S2, S3, S5 and the version rule."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actions_sync.errors import RuleViolation
from actions_sync.store import PERSON_FIELDS
from streams.rules.people import check, person_row, plan, qualifies
from tests.factories import T0, person_change

OWNED = "005000000000000001"
READ_AT = T0 + timedelta(days=1)  # the changes of these tests are read a day after T0


def at(change: dict[str, Any], position: int) -> dict[str, Any]:
    """The change as the people agent hands it to the rules: with its log position."""
    return {**change, "log_position": position}


@pytest.mark.parametrize(
    ("lead_owner", "contact_owner", "deleted", "expected"),
    [
        (OWNED, None, False, True),  # lead owner holds a user
        (None, OWNED, False, True),  # contact owner holds a user
        (OWNED, OWNED, False, True),
        (None, None, False, False),  # nobody owns it: marketing's, not sales'
        ("", "", False, False),  # empty strings are no owner
        (OWNED, None, True, False),  # deleted in Marketo
    ],
)
def test_only_sales_owned_people_qualify(
    lead_owner: str | None, contact_owner: str | None, deleted: bool, expected: bool
) -> None:
    change = person_change(
        sfdc_lead_owner_id=lead_owner, sfdc_contact_owner_id=contact_owner, deleted=deleted
    )
    assert qualifies(change) is expected


def test_exactly_the_thirteen_fields_and_owners_are_copied() -> None:
    change = person_change(event_id="not stored", extra="ignored")
    row = person_row(change)
    assert set(row) == {"marketo_id", "changed_at", "log_position", *PERSON_FIELDS}
    assert (
        len({"marketo_id", *PERSON_FIELDS} - {"sfdc_lead_owner_id", "sfdc_contact_owner_id"}) == 13
    )


def test_newest_change_of_a_person_wins_within_a_batch() -> None:
    result = plan([person_change(1, 5, title="new"), person_change(1, 1, title="old")])
    assert [r["title"] for r in result.upserts] == ["new"]
    assert result.superseded == 1


def test_owner_removed_leaves_store() -> None:
    result = plan([person_change(1, 2, sfdc_lead_owner_id=None)])
    assert result.upserts == []
    assert [r["marketo_id"] for r in result.removals] == [1]


def test_added_then_removed_in_one_batch_is_stored_as_removed() -> None:
    """One by one, the first change stores the person and the second marks them removed:
    the batch must leave the same row (with the removal's version), not nothing."""
    removal = person_change(1, 2, sfdc_lead_owner_id=None, title="gone")
    result = plan([person_change(1, 1), removal])
    assert result.removals == []
    assert result.upserts == [{**person_row(removal), "removed_at": removal["changed_at"]}]
    assert result.not_owned == 1 and result.superseded == 1


def test_duplicates_by_email_stay_two_people() -> None:
    result = plan(
        [person_change(1, email="same@example.com"), person_change(2, email="same@example.com")]
    )
    assert sorted(r["marketo_id"] for r in result.upserts) == [1, 2]


@pytest.mark.parametrize(
    ("key", "change", "reason"),
    [
        (b"2", person_change(1), "is not the Marketo ID"),
        (b"0", person_change(0), "must be positive"),
        (b"1", person_change(1, title="x" * 256), "title is 256 characters"),
        (None, person_change(1), "no key: the key must be the Marketo ID 1"),
        (b"1", person_change(1, changed_at=READ_AT + timedelta(seconds=1)), "in the future"),
        (b"1", person_change(1, changed_at=T0.replace(year=3000)), "3000-03-01.* in the future"),
    ],
)
def test_rule_violations_name_the_problem(
    key: bytes | None, change: dict[str, Any], reason: str
) -> None:
    with pytest.raises(RuleViolation, match=reason):
        check(key, change, READ_AT)


def test_a_change_up_to_the_allowed_skew_passes_the_check() -> None:
    check(b"1", person_change(1, changed_at=READ_AT), READ_AT)
    check(b"1", person_change(1, title="x" * 255), READ_AT)


def test_of_two_changes_in_one_second_the_later_in_the_log_wins() -> None:
    """Marketo's times have one-second resolution: an edit looked up after the first."""
    first, second = person_change(1, 5, title="first"), person_change(1, 5, title="second")
    assert [r["title"] for r in plan([at(first, 10), at(second, 11)]).upserts] == ["second"]
    assert [r["title"] for r in plan([at(second, 11), at(first, 10)]).upserts] == ["second"]


def test_update_then_delete_in_one_second_ends_removed() -> None:
    update, delete = person_change(1, 5, title="new"), person_change(1, 5, deleted=True)
    result = plan([at(update, 10), at(delete, 11)])
    assert result.upserts == [{**person_row(at(delete, 11)), "removed_at": delete["changed_at"]}]


@given(st.lists(st.tuples(st.integers(1, 5), st.integers(0, 50), st.booleans()), max_size=40))
def test_plan_keeps_one_newest_change_per_person(events: list[tuple[int, int, bool]]) -> None:
    changes = [
        person_change(mid, v, sfdc_lead_owner_id=OWNED if owned else None)
        for mid, v, owned in events
    ]
    result = plan(changes)
    rows = result.upserts + result.removals
    assert len(rows) == len({mid for mid, _, _ in events})
    for row in rows:
        newest = max(v for mid, v, _ in events if mid == row["marketo_id"])
        assert row["changed_at"] == person_change(1, newest)["changed_at"]
    assert result.superseded + len(rows) == len(events)
