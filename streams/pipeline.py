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
  idempotent); `acknowledge(batch)` runs only after `write` returned, i.e. after the
  effect is durable. `finish_in_flight()` (rebalance, shutdown) drops what was not started, makes
  the attempt in progress the last one and waits for it: a batch is then acknowledged,
  or left unacknowledged to be redelivered, never half of each.
- **Never stuck on one record.** An outage (`OUTAGES`: the store's `OperationalError`,
  `Retriable` from the store, registry or broker) is retried without end, and visibly:
  each retry is counted (`actions_sync_batch_retries_total{worker,stage}`) and logged
  with its backoff. Any other failure is retried `attempts` times; then the batch is
  split in halves, written in order, until each failure holds one record: that record
  goes to the dead-letter topic with `error.stage` (prepare, write), the rest is
  written, and the partition moves on (a poison record used to stall it for good).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Hashable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from sqlalchemy.exc import OperationalError

from actions_sync.clock import Clock, SystemClock
from actions_sync.dead_letter import DeadLetter
from actions_sync.errors import Retriable
from actions_sync.metrics import BATCH_RETRIES
from actions_sync.retry import Backoff, retrying
from streams.batch import RawRecord

__all__ = ["OUTAGES", "Batch", "BatchPipeline", "DeadLetters"]

log = logging.getLogger(__name__)

Partition = Hashable  # (topic, partition): faust's TP and aiokafka's TopicPartition both fit


@dataclass(slots=True)
class Batch:
    """Records handled together, and what handling them lets the consumer commit."""

    records: list[RawRecord]
    ends: dict[Partition, int]  # per partition: the offset after its last record here
    first_at: float  # time.monotonic() when the first of them was in hand
    prepared: Any = None
    last_attempt: asyncio.Event = field(default_factory=asyncio.Event)  # none after this one


@dataclass(slots=True)
class _Chunk:
    partition: Partition
    records: list[RawRecord]
    end: int
    added_at: float


# Failures of what a batch needs rather than of the batch: retried until they pass.
OUTAGES: tuple[type[BaseException], ...] = (OperationalError, Retriable)

DeadLetters = Callable[[list[DeadLetter]], object]


class _Abandoned(Exception):
    """A batch on its last attempt failed it: leave it unacknowledged."""


class _Poisoned(Exception):
    """A stage failed on these records for another reason than an outage, every time."""

    def __init__(self, stage: str, error: BaseException) -> None:
        super().__init__(f"{stage}: {error!r}")
        self.stage = stage
        self.error = error


class _LastAttemptClock(SystemClock):
    """The retry loop's clock for one batch: a backoff sleep ends when the batch is on
    its last attempt (`finish_in_flight`)."""

    def __init__(self, batch: Batch, clock: Clock) -> None:
        self._batch = batch
        self._clock = clock

    async def sleep(self, seconds: float) -> None:
        waits = [
            asyncio.ensure_future(self._batch.last_attempt.wait()),
            asyncio.ensure_future(self._clock.sleep(seconds)),
        ]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()


class BatchPipeline:
    """Batches records, runs `prepare` then `write` on each, then `acknowledge`s it.

    `prepare(records)` (optional; CPU work such as decoding) and `write(records,
    prepared)` (the durable effect) each run in this pipeline's own thread;
    `acknowledge(batch)` runs on the event loop, once per written batch, in batch order.
    `dead_letters(letters)` sends the records that fail on their own (in the write
    thread); without it such a record is retried like an outage. `worker` labels metrics.
    """

    def __init__(
        self,
        name: str,
        write: Callable[[Sequence[RawRecord], Any], object],
        size: int,
        acknowledge: Callable[[Batch], None],
        prepare: Callable[[Sequence[RawRecord]], Any] | None = None,
        backoff: Backoff | None = None,
        dead_letters: DeadLetters | None = None,
        attempts: int = 5,
        worker: str = "",
        clock: Clock | None = None,
    ) -> None:
        self.name = name
        self.size = size
        self.worker = worker or name
        self._prepare = prepare
        self._write = write
        self._acknowledge = acknowledge
        self._backoff = backoff
        self._dead_letters = dead_letters
        self._poison_attempts = attempts if dead_letters is not None else None
        self._clock = clock or SystemClock()
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

    async def finish_in_flight(self) -> None:
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
        log.info(
            "%s: finishing %d batch(es) in flight; %d records dropped",
            self.name,
            len(busy),
            dropped,
        )
        for batch, _ in busy:
            batch.last_attempt.set()
        for _, done in busy:
            await asyncio.shield(done)

    def close(self) -> None:
        """Release the threads (after the last `finish_in_flight()`)."""
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
                done = asyncio.ensure_future(self._prepare_whole(batch))
                self._preparing = (batch, done)
                # Shielded here and below: cancelling the task (shutdown) must not tear a
                # stage in half; `finish_in_flight()` waits for it instead.
                try:
                    if not await asyncio.shield(done) or batch.last_attempt.is_set():
                        continue  # abandoned, or made the last meanwhile: dropped, not written
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

    async def _prepare_whole(self, batch: Batch) -> bool:
        """Prepare `batch`; a poisoned one goes to the writer as such, to be split."""
        assert self._prepare is not None
        try:
            batch.prepared = await self._attempts(
                batch,
                "prepare",
                self._prepare,
                batch.records,
                self._poison_attempts,
                len(batch.records),
            )
        except _Poisoned as poisoned:
            batch.prepared = poisoned
        except _Abandoned:
            return False
        return True

    async def _write_and_ack(self, batch: Batch) -> bool:
        try:
            if isinstance(batch.prepared, _Poisoned):
                raise batch.prepared
            await self._attempts(
                batch,
                "write",
                partial(self._write, batch.records),
                batch.prepared,
                self._poison_attempts,
                len(batch.records),
            )
        except _Poisoned as poisoned:
            try:
                await self._isolate(batch, batch.records, poisoned)
            except _Abandoned:
                return False
        except _Abandoned:
            return False
        self._acknowledge(batch)
        return True

    async def _isolate(
        self, batch: Batch, records: Sequence[RawRecord], poisoned: _Poisoned
    ) -> None:
        """`records` failed together, always alike: split them in halves, handled in
        order, until each failure holds one record, which is dead-lettered; k poison
        records in n cost ~2·k·log2(n) attempts (outages still wait)."""
        if len(records) == 1:
            log.error(
                "%s: %s@%d dead-lettered: %s failed %r",
                self.name,
                records[0].topic,
                records[0].offset,
                poisoned.stage,
                poisoned.error,
            )
            assert self._dead_letters is not None
            letter = records[0].dead(poisoned.error, stage=poisoned.stage)
            await self._attempts(batch, "dead_letter", self._dead_letters, [letter], None, 1)
            return
        log.warning(
            "%s: a batch of %d records fails at %s (%r): splitting it to find the"
            " records that cause it",
            self.name,
            len(records),
            poisoned.stage,
            poisoned.error,
        )
        middle = len(records) // 2
        for half in (records[:middle], records[middle:]):
            # Halves fail fast; a record alone gets every attempt before its dead letter.
            attempts = self._poison_attempts if len(half) == 1 else 1
            try:
                prepared = (
                    half
                    if self._prepare is None
                    else await self._attempts(
                        batch, "prepare", self._prepare, half, attempts, len(half)
                    )
                )
                await self._attempts(
                    batch, "write", partial(self._write, half), prepared, attempts, len(half)
                )
            except _Poisoned as again:
                await self._isolate(batch, half, again)

    async def _attempts(
        self,
        batch: Batch,
        stage: str,
        call: Callable[[Any], Any],
        arg: Any,
        attempts: int | None,
        size: int,
    ) -> Any:
        """Run `call(arg)` (on `size` records) in the stage's thread until it succeeds;
        return its result.

        An outage is retried without end; another failure `attempts` times (None: also
        without end), then `_Poisoned` is raised. `_Abandoned` is raised instead once
        the batch is on its last attempt and an attempt failed."""
        thread = "prepare" if stage == "prepare" else "write"  # dead letters: the writer's
        executor = self._threads.get(thread)
        if executor is None:
            executor = self._threads[thread] = ThreadPoolExecutor(
                1, thread_name_prefix=f"{self.name}-{thread}"
            )
        loop = asyncio.get_running_loop()
        failures: list[BaseException] = []

        async def attempt() -> Any:
            if failures and batch.last_attempt.is_set():
                raise _Abandoned  # made the last during a backoff sleep: no further attempt
            return await loop.run_in_executor(executor, call, arg)

        def before_retry(exc: BaseException, wait: float) -> None:
            if not isinstance(exc, _Abandoned):
                failures.append(exc)
            if batch.last_attempt.is_set():
                raise _Abandoned
            outage = isinstance(exc, OUTAGES)
            poisons = sum(not isinstance(f, OUTAGES) for f in failures)
            if not outage and attempts is not None and poisons >= attempts:
                raise _Poisoned(stage, exc)
            BATCH_RETRIES.labels(self.worker, stage).inc()
            log.warning(
                "%s: %s of %d records failed (%s), retry %d in %.2fs: %r",
                self.name,
                stage,
                size,
                "outage: retried until it ends"
                if outage
                else f"attempt {poisons} of {attempts or 'unbounded'}",
                len(failures),
                wait,
                exc,
            )

        try:
            return await retrying(
                attempt,
                backoff=self._backoff,
                clock=_LastAttemptClock(batch, self._clock),
                retry_on=(Exception,),
                on_retry=before_retry,
            )
        except _Abandoned:
            log.warning(
                "%s: batch of %d records left unacknowledged at %s (it will be"
                " redelivered) after %r",
                self.name,
                len(batch.records),
                stage,
                failures[-1],
            )
            raise

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
