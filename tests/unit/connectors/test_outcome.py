"""`fan_out`: calls of at most the API's size, and a call refused as a whole split until
the records that cause the refusal are found (the rest are delivered)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from collections.abc import Set as AbstractSet

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actions_sync.errors import Retriable
from connectors.errors import ApiFatal, Rejected
from connectors.outcome import SPLIT_CALLS_MAX, Kind, Outcome, accepted, fan_out
from connectors.resolution import Scope


class Api:
    """Refuses a whole call holding a bad record (as Marketo's 1003 or a 400 does)."""

    def __init__(
        self,
        bad: AbstractSet[int] = frozenset(),
        code: str = "1003",
        largest: int | None = None,
        flaky: AbstractSet[int] = frozenset(),
        scope: Scope = Scope.RECORD,
    ) -> None:
        self.bad, self.code, self.largest, self.flaky = bad, code, largest, flaky
        self.scope = scope
        self.calls: list[list[int]] = []

    async def send(self, chunk: Sequence[int]) -> list[Outcome]:
        self.calls.append(list(chunk))
        if self.largest is not None and len(chunk) > self.largest:
            raise Rejected("request too large for Marketo", "413", Scope.SIZE)
        if self.bad & set(chunk):
            raise Rejected(
                f"invalid data in {sorted(self.bad & set(chunk))}", self.code, self.scope
            )
        if self.flaky & set(chunk):
            raise Retriable("HTTP 503")
        return [accepted()] * len(chunk)


def deliver(api: Api, items: int = 300, size: int = 300) -> list[Outcome]:
    return asyncio.run(fan_out(list(range(items)), size, api.send))


def kinds(outcomes: list[Outcome]) -> dict[Kind, list[int]]:
    found: dict[Kind, list[int]] = {}
    for i, outcome in enumerate(outcomes):
        found.setdefault(outcome.kind, []).append(i)
    return found


def test_one_bad_record_is_found_and_the_others_are_delivered() -> None:
    api = Api(bad={137})
    outcomes = deliver(api)
    assert kinds(outcomes) == {
        Kind.ACCEPTED: [i for i in range(300) if i != 137],
        Kind.REJECTED: [137],
    }
    assert "invalid data in [137]" in str(outcomes[137].error)  # the narrowest refusal
    assert len(api.calls) <= 1 + 2 * 9  # ~2 log2(300) more calls


def test_a_refusal_of_the_call_rejects_every_record_without_splitting() -> None:
    api = Api(bad=set(range(300)), code="609", scope=Scope.CALL)
    outcomes = deliver(api)
    assert kinds(outcomes) == {Kind.REJECTED: list(range(300))}
    assert len(api.calls) == 1


def test_bad_records_in_both_halves_are_each_found_and_the_others_delivered() -> None:
    api = Api(bad={0, 299})
    assert kinds(deliver(api)) == {Kind.ACCEPTED: list(range(1, 299)), Kind.REJECTED: [0, 299]}
    assert len(api.calls) <= 1 + 2 * 2 * 9


def test_splitting_stops_at_the_batch_cap_and_retries_the_rest_later() -> None:
    api = Api(bad=set(range(300)))  # record-scoped, yet every record refused
    outcomes = deliver(api)
    assert len(api.calls) == 1 + SPLIT_CALLS_MAX
    found = kinds(outcomes)
    assert set(found) == {Kind.RETRY}  # not one leaf reached: nothing dead-lettered yet
    assert all(outcomes[i].counts_as_attempt for i in found[Kind.RETRY])  # bounded


def test_the_cap_holds_for_all_the_calls_of_a_batch() -> None:
    api = Api(bad={i * 7 for i in range(40)})
    outcomes = asyncio.run(fan_out(list(range(280)), 70, api.send, split_calls=20))
    assert len(api.calls) == 4 + 20
    assert {i for i, o in enumerate(outcomes) if o.kind is Kind.REJECTED} <= api.bad


def test_too_large_a_request_is_split_until_it_fits() -> None:
    api = Api(largest=70)
    assert kinds(deliver(api)) == {Kind.ACCEPTED: list(range(300))}
    assert max(len(c) for c in api.calls if len(c) <= 70) <= 70


def test_a_transient_failure_while_splitting_retries_only_that_half() -> None:
    outcomes = deliver(Api(bad={10}, flaky={200}))
    found = kinds(outcomes)
    assert found[Kind.REJECTED] == [10]
    assert found[Kind.RETRY] == list(range(150, 300))  # the half the 503 answered
    assert not any(outcomes[i].counts_as_attempt for i in found[Kind.RETRY])  # the call failed


def test_a_fatal_answer_still_stops_the_batch() -> None:
    async def send(chunk: Sequence[int]) -> list[Outcome]:
        if len(chunk) < 300:
            raise ApiFatal("401 from identity")
        raise Rejected("invalid", "1003")

    with pytest.raises(ApiFatal):
        asyncio.run(fan_out(list(range(300)), 300, send))


@settings(max_examples=60, deadline=None)
@given(
    items=st.integers(1, 120), size=st.integers(1, 50), bad=st.sets(st.integers(0, 119), max_size=3)
)
def test_every_good_record_is_delivered_and_only_bad_ones_rejected(
    items: int, size: int, bad: set[int]
) -> None:
    bad = {b for b in bad if b < items}
    api = Api(bad=bad)
    outcomes = asyncio.run(fan_out(list(range(items)), size, api.send))
    assert {i for i, o in enumerate(outcomes) if o.kind is Kind.REJECTED} == bad
    assert {i for i, o in enumerate(outcomes) if o.kind is Kind.ACCEPTED} == set(range(items)) - bad
    calls = -(-items // size)
    assert len(api.calls) <= calls + 2 * len(bad) * max(1, (size - 1).bit_length())
