"""Fetched records -> batches -> prepared in one thread -> written in another -> acked.

Kafka- and faust-agnostic (the faust side is `streams.fastpath`):

    fetch loop --add()--> pending --take--> prepare(records) --> write(records, prepared) --> ack
                       (<= size records)    (prepare thread)    (store thread)    (in order)

- **Overlap.** Three things run at once: the fetch loop fills the next batch, batch N+1
  is prepared (decoded, checked, planned), batch N is written. Preparing and writing are
  both Python, so under the GIL they mostly alternate, but the database's own work
  (SQLite's C code, a PostgreSQL round trip) and the broker's no longer wait for them.
- **Adaptive batches.** A batch is taken as soon as the previous one went to the
  writer: under load batches grow to `size`, and when the topic is quiet they stay small
  (latency). The fetch loop waits (`wait_for_room`) while `size` records are in hand.
- **Order.** One batch is prepared and one written at a time, each stage in its own
  dedicated thread, in the order the records arrived: a partition's later record is
  never written before an earlier one, and two writes of this worker never race (a
  retry, or a fetch loop restarted by faust, queues behind the write in flight instead
  of running beside it; a removal written beside a stale insert of the same person
  could otherwise be overtaken by it).
- **Never ack unhandled.** A stage that raised is retried with backoff (effects are
  idempotent) until it succeeds; `acknowledge(batch)` runs only after `write` returned,
  i.e. after the effect is durable. `settle()` (rebalance, shutdown) drops what was not
  started, makes the attempt in progress the last one and waits for it: a batch is then
  acknowledged, or left unacknowledged to be redelivered, never half of each.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Hashable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from actions_sync.clock import SystemClock
from actions_sync.retry import Backoff, retrying
from streams.batch import RawRecord

__all__ = ["Batch", "BatchPipeline"]

log = logging.getLogger(__name__)

Partition = Hashable  # (topic, partition): faust's TP and aiokafka's TopicPartition both fit


@dataclass(slots=True)
class Batch:
    """Records handled together, and what handling them lets the consumer commit."""

    records: list[RawRecord]
    ends: dict[Partition, int]  # per partition: the offset after its last record here
    first_at: float  # time.monotonic() when the first of them was in hand
    prepared: Any = None
    settled: asyncio.Event = field(default_factory=asyncio.Event)  # last attempt now


@dataclass(slots=True)
class _Chunk:
    partition: Partition
    records: list[RawRecord]
    end: int
    added_at: float


class _Abandoned(Exception):
    """A settled batch failed its last attempt: leave it unacknowledged."""


class _SettleClock(SystemClock):
    """The retry loop's clock for one batch: a backoff sleep ends when the batch settles."""

    def __init__(self, batch: Batch) -> None:
        self._batch = batch

    async def sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._batch.settled.wait(), seconds)


class BatchPipeline:
    """Batches records, runs `prepare` then `write` on each, then `acknowledge`s it.

    `prepare(records)` (optional; CPU work such as decoding) and `write(records,
    prepared)` (the durable effect) each run in this pipeline's own thread;
    `acknowledge(batch)` runs on the event loop, once per written batch, in batch order.
    """

    def __init__(
        self, name: str, write: Callable[[Sequence[RawRecord], Any], object], size: int,
        acknowledge: Callable[[Batch], None],
        prepare: Callable[[Sequence[RawRecord]], Any] | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        self.name = name
        self.size = size
        self._prepare = prepare
        self._write = write
        self._acknowledge = acknowledge
        self._backoff = backoff
        self._chunks: list[_Chunk] = []
        self._count = 0
        self._has_work = asyncio.Event()
        self._has_room = asyncio.Event()
        self._has_room.set()
        self._slot_free = asyncio.Event()  # no prepared batch is waiting for the writer
        self._slot_free.set()
        self._has_ready = asyncio.Event()
        self._ready: Batch | None = None
        self._preparing: tuple[Batch, asyncio.Future[bool]] | None = None
        self._writing: tuple[Batch, asyncio.Future[bool]] | None = None
        self._threads: dict[str, ThreadPoolExecutor] = {}

    # -- the fetch side ---------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Records in hand that no stage has started on."""
        return self._count

    async def wait_for_room(self) -> None:
        """Return once fewer than `size` records are pending (back-pressure on fetching)."""
        await self._has_room.wait()

    def add(self, partition: Partition, records: list[RawRecord]) -> None:
        """Queue `records` (one partition's, in offset order) behind those in hand."""
        if not records:
            return
        self._chunks.append(_Chunk(partition, records, records[-1].offset + 1, time.monotonic()))
        self._count += len(records)
        self._has_work.set()
        if self._count >= self.size:
            self._has_room.clear()

    def drop(self, partitions: Iterable[Partition] | None = None) -> int:
        """Forget pending records (all, or those of `partitions`); return how many."""
        gone = None if partitions is None else set(partitions)
        kept = [c for c in self._chunks if gone is not None and c.partition not in gone]
        dropped = self._count - sum(len(c.records) for c in kept)
        self._chunks = kept
        self._count -= dropped
        self._update_events()
        return dropped

    # -- the stages -------------------------------------------------------------------

    async def run(self) -> None:
        """Prepare and write batches, for as long as the task lives."""
        await asyncio.gather(self._prepare_loop(), self._write_loop())

    async def settle(self) -> None:
        """Drop what no write has started on; the batches being prepared and written
        make their current attempt their last; return when both are done."""
        dropped = self.drop()
        if self._ready is not None:
            dropped += len(self._ready.records)
            self._ready = None
            self._has_ready.clear()
            self._slot_free.set()
        busy = [stage for stage in (self._preparing, self._writing) if stage is not None]
        if not busy and not dropped:
            return
        log.info("%s: settling %d batch(es) in progress; %d records dropped",
                 self.name, len(busy), dropped)
        for batch, _ in busy:
            batch.settled.set()
        for _, done in busy:
            await asyncio.shield(done)

    def close(self) -> None:
        """Release the threads (after the last `settle()`)."""
        for executor in self._threads.values():
            executor.shutdown(wait=False)
        self._threads.clear()

    async def _prepare_loop(self) -> None:
        while True:
            await self._slot_free.wait()
            await self._has_work.wait()
            batch = self._take()
            if batch is None:
                continue
            if self._prepare is None:
                batch.prepared = batch.records
            else:
                done = asyncio.ensure_future(self._attempts(batch, "prepare", self._prepare,
                                                            batch.records))
                self._preparing = (batch, done)
                # Shielded here and below: cancelling the task (shutdown) must not tear a
                # stage in half; `settle()` waits for it instead.
                try:
                    if not await asyncio.shield(done) or batch.settled.is_set():
                        continue  # abandoned, or settled meanwhile: dropped, not written
                finally:
                    self._preparing = None
            self._ready = batch
            self._slot_free.clear()
            self._has_ready.set()

    async def _write_loop(self) -> None:
        while True:
            await self._has_ready.wait()
            batch, self._ready = self._ready, None
            self._has_ready.clear()
            self._slot_free.set()
            if batch is None:
                continue
            done = asyncio.ensure_future(self._write_and_ack(batch))
            self._writing = (batch, done)
            try:
                await asyncio.shield(done)
            finally:
                self._writing = None

    async def _write_and_ack(self, batch: Batch) -> bool:
        if not await self._attempts(batch, "write", partial(self._write, batch.records),
                                    batch.prepared):
            return False
        self._acknowledge(batch)
        return True

    async def _attempts(self, batch: Batch, stage: str, call: Callable[[Any], Any],
                        arg: Any) -> bool:
        """Run `call(arg)` in the stage's thread until it succeeds, or the batch settles
        and an attempt fails. Stores the prepared result on the batch."""
        executor = self._threads.get(stage)
        if executor is None:
            executor = self._threads[stage] = ThreadPoolExecutor(
                1, thread_name_prefix=f"{self.name}-{stage}")
        loop = asyncio.get_running_loop()
        failures: list[BaseException] = []

        async def attempt() -> Any:
            if failures and batch.settled.is_set():
                raise _Abandoned  # settled during a backoff sleep: no further attempt
            return await loop.run_in_executor(executor, call, arg)

        def give_up_if_settled(exc: BaseException, wait: float) -> None:
            if not isinstance(exc, _Abandoned):
                failures.append(exc)
            if batch.settled.is_set():
                raise _Abandoned

        try:
            result = await retrying(attempt, backoff=self._backoff, clock=_SettleClock(batch),
                                    retry_on=(Exception,), on_retry=give_up_if_settled)
        except _Abandoned:
            log.warning("%s: batch of %d records left unacknowledged at %s (it will be"
                        " redelivered) after %r", self.name, len(batch.records), stage,
                        failures[-1])
            return False
        if stage == "prepare":
            batch.prepared = result
        return True

    def _take(self) -> Batch | None:
        if not self._chunks:
            self._update_events()
            return None
        records: list[RawRecord] = []
        ends: dict[Partition, int] = {}
        first_at = self._chunks[0].added_at
        taken = 0
        for chunk in self._chunks:
            room = self.size - len(records)
            if room <= 0:
                break
            if len(chunk.records) > room:  # split: the rest waits for the next batch
                records += chunk.records[:room]
                ends[chunk.partition] = records[-1].offset + 1
                chunk.records = chunk.records[room:]
                break
            records += chunk.records
            ends[chunk.partition] = chunk.end
            taken += 1
        del self._chunks[:taken]
        self._count -= len(records)
        self._update_events()
        return Batch(records, ends, first_at)

    def _update_events(self) -> None:
        if self._count:
            self._has_work.set()
        else:
            self._has_work.clear()
        if self._count < self.size:
            self._has_room.set()
        else:
            self._has_room.clear()
