"""The batch pipeline: in order, one write at a time, acknowledged only once durable."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Sequence
from collections.abc import Set as AbstractSet
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY
from sqlalchemy.exc import OperationalError

from actions_sync.dead_letter import DeadLetter
from actions_sync.retry import Backoff
from streams.batch import RawRecord
from streams.pipeline import Batch, BatchPipeline
from tests.fakes import FakeClock

FAST = Backoff(base_s=0.001, cap_s=0.001)


def records(partition: int, first: int, count: int) -> list[RawRecord]:
    return [RawRecord("t", partition, o, b"k", b"v") for o in range(first, first + count)]


class Store:
    """A write step that can be held, made to fail, and that notes what it saw."""

    def __init__(self, failures: int = 0) -> None:
        self.written: list[list[tuple[int, int]]] = []
        self.release = threading.Event()
        self.release.set()
        self.started = threading.Event()
        self.failures = failures
        self.running = 0
        self.most_at_once = 0
        self._lock = threading.Lock()

    def write(self, records: Sequence[RawRecord], prepared: Any) -> None:
        assert prepared is records or prepared == records
        with self._lock:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        try:
            self.started.set()
            assert self.release.wait(5)
            if self.failures:
                self.failures -= 1
                raise ConnectionError("store down")
            self.written.append([(r.partition, r.offset) for r in prepared])
        finally:
            with self._lock:
                self.running -= 1


def run(
    scenario: Callable[[BatchPipeline, Store, list[Batch]], Awaitable[None]],
    size: int = 4,
    failures: int = 0,
    prepare: Callable[[Any], Any] | None = None,
) -> tuple[Store, list[Batch]]:
    store, acked = Store(failures), list[Batch]()

    async def main() -> None:
        pipeline = BatchPipeline(
            "test", store.write, size, acked.append, prepare=prepare, backoff=FAST
        )
        task = asyncio.ensure_future(pipeline.run())
        try:
            await asyncio.wait_for(scenario(pipeline, store, acked), 10)
        finally:
            task.cancel()
            pipeline.close()

    asyncio.run(main())
    return store, acked


async def until(condition: Callable[[], bool]) -> None:
    """Wait for a test's condition over the fakes' state (no event of the pipeline's)."""
    while not condition():  # noqa: ASYNC110
        await asyncio.sleep(0.001)


def test_batches_are_written_whole_in_order_and_acknowledged_after_the_write() -> None:
    async def scenario(pipeline: BatchPipeline, store: Store, acked: list[Batch]) -> None:
        store.release.clear()
        pipeline.add(("t", 0), records(0, 0, 3))
        await asyncio.to_thread(store.started.wait, 5)
        pipeline.add(("t", 1), records(1, 10, 2))
        pipeline.add(("t", 0), records(0, 3, 3))
        await asyncio.sleep(0.05)
        assert acked == []  # the write has not returned: nothing is acknowledged
        store.release.set()
        await until(lambda: len(acked) == 3)

    store, acked = run(scenario)
    assert store.written == [[(0, 0), (0, 1), (0, 2)], [(1, 10), (1, 11), (0, 3), (0, 4)], [(0, 5)]]
    assert [b.ends for b in acked] == [{("t", 0): 3}, {("t", 1): 12, ("t", 0): 5}, {("t", 0): 6}]


def test_a_failing_write_is_retried_until_it_succeeds_and_acknowledged_once() -> None:
    async def scenario(pipeline: BatchPipeline, store: Store, acked: list[Batch]) -> None:
        pipeline.add(("t", 0), records(0, 0, 2))
        await until(lambda: bool(acked))
        await asyncio.sleep(0.02)

    store, acked = run(scenario, failures=3)
    assert store.written == [[(0, 0), (0, 1)]] and len(acked) == 1


def test_writes_never_overlap_and_the_next_batch_is_prepared_meanwhile() -> None:
    prepared: list[int] = []

    def prepare(batch: list[RawRecord]) -> list[RawRecord]:
        prepared.append(batch[0].offset)
        return batch

    async def scenario(pipeline: BatchPipeline, store: Store, acked: list[Batch]) -> None:
        store.release.clear()
        pipeline.add(("t", 0), records(0, 0, 4))
        await asyncio.to_thread(store.started.wait, 5)
        pipeline.add(("t", 0), records(0, 4, 4))
        await until(lambda: prepared == [0, 4])  # prepared while batch 0 is written
        store.release.set()
        await until(lambda: len(acked) == 2)

    store, _ = run(scenario, prepare=prepare)
    assert store.most_at_once == 1


def test_fetching_waits_while_a_full_batch_is_pending() -> None:
    async def scenario(pipeline: BatchPipeline, store: Store, acked: list[Batch]) -> None:
        store.release.clear()
        pipeline.add(("t", 0), records(0, 0, 4))
        await asyncio.to_thread(store.started.wait, 5)
        pipeline.add(("t", 0), records(0, 4, 4))  # prepared, waits for the writer
        await until(lambda: pipeline.pending == 0)
        pipeline.add(("t", 0), records(0, 8, 4))
        room = asyncio.ensure_future(pipeline.wait_for_room())
        await asyncio.sleep(0.02)
        assert not room.done()
        store.release.set()
        await asyncio.wait_for(room, 5)
        await until(lambda: len(acked) == 3)

    run(scenario)


def test_finishing_in_flight_ends_the_write_in_flight_and_drops_what_was_not_written() -> None:
    async def scenario(pipeline: BatchPipeline, store: Store, acked: list[Batch]) -> None:
        store.release.clear()
        pipeline.add(("t", 0), records(0, 0, 4))
        await asyncio.to_thread(store.started.wait, 5)
        pipeline.add(("t", 0), records(0, 4, 4))  # prepared, not written
        pipeline.add(("t", 0), records(0, 8, 2))  # pending
        finished = asyncio.ensure_future(pipeline.finish_in_flight())
        await asyncio.sleep(0.02)
        assert not finished.done()  # waits for the write in flight
        store.release.set()
        await asyncio.wait_for(finished, 5)
        assert len(acked) == 1 and pipeline.pending == 0
        await asyncio.sleep(0.05)

    store, acked = run(scenario)
    assert store.written == [[(0, o) for o in range(4)]]
    assert [b.ends for b in acked] == [{("t", 0): 4}]


def test_finishing_in_flight_abandons_a_failing_batch_unacknowledged() -> None:
    async def scenario(pipeline: BatchPipeline, store: Store, acked: list[Batch]) -> None:
        pipeline.add(("t", 0), records(0, 0, 2))
        await asyncio.to_thread(store.started.wait, 5)
        await asyncio.sleep(0.02)  # failing, retrying
        await asyncio.wait_for(pipeline.finish_in_flight(), 5)
        pipeline.add(("t", 0), records(0, 0, 2))  # redelivered after the rebalance
        await asyncio.sleep(0.05)

    store, acked = run(scenario, failures=10**6)
    assert acked == [] and store.written == []


def test_dropping_partitions_keeps_the_others() -> None:
    async def scenario(pipeline: BatchPipeline, store: Store, acked: list[Batch]) -> None:
        store.release.clear()
        pipeline.add(("t", 0), records(0, 0, 4))
        await asyncio.to_thread(store.started.wait, 5)
        pipeline.add(("t", 0), records(0, 4, 4))
        await until(lambda: pipeline.pending == 0)
        pipeline.add(("t", 1), records(1, 0, 2))
        pipeline.add(("t", 2), records(2, 0, 1))
        assert pipeline.drop([("t", 1)]) == 2 and pipeline.pending == 1
        store.release.set()
        await until(lambda: len(acked) == 3)

    store, _ = run(scenario)
    assert store.written[-1] == [(2, 0)]


class Poisoned:
    """A stage that refuses any batch holding one of `bad` (a bug, a row the store
    refuses), or fails `outage` times first as a store outage does."""

    def __init__(self, bad: AbstractSet[int] = frozenset(), outage: int = 0) -> None:
        self.bad, self.outage = bad, outage
        self.written: list[int] = []
        self.calls = 0

    def __call__(self, records: Sequence[RawRecord], _: Any = None) -> None:
        self.calls += 1
        if self.outage:
            self.outage -= 1
            raise OperationalError("INSERT ...", {}, Exception("connection refused"))
        if {r.offset for r in records} & self.bad:
            raise ValueError(f"cannot write {sorted({r.offset for r in records} & self.bad)}")
        self.written += [r.offset for r in records]


def poisoned(
    write: Poisoned, count: int, prepare: Poisoned | None = None, attempts: int = 3
) -> tuple[list[DeadLetter], list[Batch]]:
    dead: list[DeadLetter] = []
    acked: list[Batch] = []

    async def main() -> None:
        pipeline = BatchPipeline(
            "people-test",
            write,
            count,
            acked.append,
            backoff=FAST,
            prepare=prepare and (lambda rs: prepare(rs) or rs),
            dead_letters=dead.extend,
            attempts=attempts,
            worker="test",
            clock=FakeClock(),
        )
        task = asyncio.ensure_future(pipeline.run())
        try:
            pipeline.add(("t", 0), records(0, 0, count))
            await asyncio.wait_for(until(lambda: bool(acked)), 10)
        finally:
            task.cancel()
            pipeline.close()

    asyncio.run(main())
    return dead, acked


def retries(stage: str) -> float:
    return (
        REGISTRY.get_sample_value(
            "actions_sync_batch_retries_total", {"worker": "test", "stage": stage}
        )
        or 0.0
    )


@settings(max_examples=40, deadline=None)
@given(count=st.integers(1, 64), bad=st.sets(st.integers(0, 63), min_size=1, max_size=4))
def test_a_poison_record_is_dead_lettered_after_bounded_attempts_and_the_rest_written(
    count: int, bad: set[int]
) -> None:
    bad = {b for b in bad if b < count} or {count - 1}
    write = Poisoned(bad)
    dead, acked = poisoned(write, count)
    assert sorted(int(d.header("source.offset")) for d in dead) == sorted(bad)
    assert {d.header("error.stage") for d in dead} == {"write"}
    assert write.written == [o for o in range(count) if o not in bad]  # in order, once
    assert [b.ends for b in acked] == [{("t", 0): count}]
    # 3 attempts of the batch, two halves a level per poison record, 3 attempts alone.
    assert write.calls <= 3 + len(bad) * (2 * max(1, (count - 1).bit_length()) + 2)


def test_a_record_its_preparation_fails_on_is_dead_lettered_with_that_stage() -> None:
    write = Poisoned()
    dead, _ = poisoned(write, 10, prepare=Poisoned({4}))
    assert [(d.header("source.offset"), d.header("error.stage")) for d in dead] == [
        ("4", "prepare")
    ]
    assert "ValueError" in dead[0].header("error.class")
    assert write.written == [o for o in range(10) if o != 4]


def test_a_store_outage_is_retried_past_the_attempts_and_counted_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    before = retries("write")
    write = Poisoned(outage=8)
    with caplog.at_level(logging.WARNING, logger="streams.pipeline"):
        dead, acked = poisoned(write, 5, attempts=3)
    assert dead == [] and write.written == [0, 1, 2, 3, 4] and len(acked) == 1
    assert retries("write") - before == 8
    lines = [r.getMessage() for r in caplog.records if "outage" in r.getMessage()]
    assert len(lines) == 8 and all(" in " in line and "s: " in line for line in lines)
