"""The one Kafka-facing loop of every sink: consume a batch -> `Destination.deliver` -> commit.

At-least-once in, exactly-once effect out (DESIGN.md). A batch's offsets are committed only
after *every* record of it is resolved: accepted by the API (or already there), or on the
dead-letter topic. In between:

- undecodable bytes go to `<topic>.dlq` (stage `decode`) and the batch goes on;
- records the destination asks to retry are delivered again after the shared backoff with
  full jitter (`actions_sync.retry`, the one retry loop), at most `record_attempts` times
  each, then dead-lettered with the last reason; whole-call failures (the API is down)
  say nothing against the records: they are retried `call_attempts` times (None: without
  limit), and waits the API or the destination asks for (a rate limit) without limit;
- this loop is the only one that retries a delivery: the destinations' API clients make
  one attempt per call (a refused token is refreshed and replayed once), and
  `connectors.outcome.fan_out` sends each call once, so a record costs at most one call
  per attempt, never attempts x client retries;
- a used-up daily quota (`QuotaExhausted`) stops fetching (`consumer.pause()`) until its
  `retry_after` has passed, instead of spinning against the API;
- while a batch takes longer than `keepalive_s` (limits, retries, pauses), the assigned
  partitions are paused and the consumer is polled, so the group keeps us as a member
  (librdkafka's max.poll.interval.ms); a record such a poll returns from a partition
  just assigned is carried over to the next batch;
- a partition revoked (or lost) mid-batch is abandoned: its records are not delivered
  any further and its offsets are never committed by us; the new owner redelivers them,
  which the destinations make harmless (upserts by external id, the Marketo ledger);
- SIGTERM ends the loop after the current round; an unfinished batch is not committed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from actions_sync.clock import Clock, StopClock
from actions_sync.dead_letter import DeadLetter, DeadLetterProducer, dead_letter
from actions_sync.errors import ActionsSyncError, Backpressure, ConfigError, Retriable, Skippable
from actions_sync.metrics import (
    BATCH_SECONDS,
    CONSUMER_LAG,
    DELIVERIES,
    EVENTS_IN,
    SINK_PAUSED_SECONDS,
    forget_lag,
)
from actions_sync.retry import Backoff, retrying
from connectors.errors import QuotaExhausted
from connectors.outcome import Counts, Kind, Outcome

__all__ = ["Destination", "Item", "RetriesExhausted", "RunnerConfig", "SinkRunner", "StopClock"]

log = logging.getLogger(__name__)
TP = tuple[str, int]


class Destination(Protocol):
    """What a sink says: how to start, how to deliver a batch, how to close.

    `deliver` answers one `Outcome` per record, in input order; it batches to the API's
    maximum and classifies each record's result (see `connectors.outcome.fan_out`).
    """

    async def start(self) -> None: ...
    async def deliver(self, records: Sequence[dict[str, Any]]) -> list[Outcome]: ...
    async def aclose(self) -> None: ...


class RetriesExhausted(Skippable):
    """The API asked to retry this record `record_attempts` times, or failed
    `call_attempts` calls of it: dead-letter it."""

    stage = "deliver"


class _Stopping(ActionsSyncError):
    """SIGTERM during a batch: abandon it uncommitted."""


@dataclass(frozen=True)
class RunnerConfig:
    worker: str
    topic: str
    batch_size: int = 1000
    batch_within_s: float = 0.5
    record_attempts: int = 10
    call_attempts: int | None = None  # deliveries whose call failed as a whole; None: no end
    keepalive_s: float = 1.0
    backoff: Backoff = field(default_factory=lambda: Backoff(base_s=0.5, cap_s=30.0))
    # Seconds the destination cannot use another batch yet (a paced API): a batch gathers
    # records at least that long, so they go in the next call instead of waiting for it.
    gather_s: Callable[[], float] | None = None


@dataclass(slots=True)
class Item:
    """One consumed record, decoded, with its delivery attempts."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    record: dict[str, Any]
    attempts: int = 0  # answers asking to retry this record
    failed_calls: int = 0  # calls of it that failed as a whole

    @property
    def tp(self) -> TP:
        return (self.topic, self.partition)

    def dead(self, error: BaseException) -> DeadLetter:
        return dead_letter(self.topic, self.partition, self.offset, self.key, self.value, error)


@dataclass
class _Batch:
    ends: dict[TP, int]  # next offset to commit per partition
    pending: list[Item]
    dead: list[DeadLetter] = field(default_factory=list)
    abandoned: set[TP] = field(default_factory=set)


class SinkRunner:
    """Runs one `Destination` on one topic in the consumer group of `consumer`."""

    def __init__(
        self,
        consumer: Consumer,
        config: RunnerConfig,
        decode: Callable[[bytes | None], dict[str, Any]],
        destination: Destination,
        dead_letters: DeadLetterProducer,
        stop: asyncio.Event | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.consumer = consumer
        self.config = config
        self.decode = decode
        self.destination = destination
        self.dead_letters = dead_letters
        self.stop = stop or asyncio.Event()
        self.clock = clock or StopClock(self.stop)
        self.owned: set[TP] = set()
        self._batch: _Batch | None = None
        self._carry: list[Message] = []
        self._paused: set[TP] = set()
        # Offsets whose commit failed (a rebalance under way) on partitions still ours:
        # tried again with the next commit or on the next idle turn. Under cooperative
        # rebalancing the partitions kept are not redelivered, so without this an idle
        # partition's committed offset (its lag, a drain's progress) stayed behind.
        self._uncommitted: dict[TP, int] = {}

    # -- the loop -------------------------------------------------------------------------

    async def run(self) -> None:
        """Consume and deliver until `stop` is set."""
        # The API may be down or over quota at start: wait for it like for any call.
        await retrying(self.destination.start, backoff=self.config.backoff, clock=self.clock)
        self.consumer.subscribe(
            [self.config.topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_revoke,
        )
        while not self.stop.is_set():
            messages = self._carry + self._consume()
            self._carry = []
            if messages:
                await self._handle(messages)
            else:
                self._commit({})
                await asyncio.sleep(0)  # let signal handlers and other tasks run

    def _consume(self) -> list[Message]:
        within = self.config.batch_within_s
        if self.config.gather_s is not None:
            within = max(within, self.config.gather_s())
        messages = self.consumer.consume(self.config.batch_size, within)
        good = []
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() == KafkaError.INVALID_SESSION_TIMEOUT:
                    # The broker's group.min/max.session.timeout.ms refuse ours (Apache
                    # Kafka's minimum is 6000 by default): retrying cannot help.
                    raise ConfigError(
                        "ACTIONS_SYNC_SESSION_TIMEOUT_MS: the broker refuses this session"
                        " timeout (outside its group.min/max.session.timeout.ms)"
                    )
                log.warning("consume: %s", error)
                continue
            good.append(message)
        return good

    async def _handle(self, messages: list[Message]) -> None:
        started = time.perf_counter()
        EVENTS_IN.labels(self.config.worker, self.config.topic).inc(len(messages))
        keepalive = asyncio.create_task(self._keepalive())
        try:
            batch = await self._decode(messages)
            self._batch = batch
            await self._deliver(batch)
            await self._finish(batch)
        except _Stopping:
            log.info("stopping: batch of %d records left uncommitted", len(messages))
        finally:
            self._batch = None
            keepalive.cancel()
            await asyncio.gather(keepalive, return_exceptions=True)
            self._unhold()
        BATCH_SECONDS.labels(self.config.worker).observe(time.perf_counter() - started)
        self._record_lag(messages)

    async def _decode(self, messages: list[Message]) -> _Batch:
        ends: dict[TP, int] = {}
        items: list[Item] = []
        dead: list[DeadLetter] = []
        for message in messages:
            topic, partition, offset = _where(message)
            tp = (topic, partition)
            ends[tp] = max(ends.get(tp, 0), offset + 1)
            key, value = message.key(), message.value()
            try:
                # The registry may be briefly unreachable (Retriable): retried, not dropped.
                record = await retrying(
                    partial(_call, self.decode, value),
                    backoff=self.config.backoff,
                    clock=self.clock,
                )
            except Skippable as exc:
                dead.append(dead_letter(topic, partition, offset, key, value, exc))
                continue
            items.append(Item(topic, partition, offset, key, value, record))
        return _Batch(ends, items, dead)

    async def _deliver(self, batch: _Batch) -> None:
        while batch.pending:
            try:
                await retrying(
                    lambda: self._round(batch),
                    backoff=self.config.backoff,
                    clock=self.clock,
                    give_up_on=(QuotaExhausted, _Stopping),
                )
            except QuotaExhausted as exc:
                await self._pause_for(exc)

    async def _round(self, batch: _Batch) -> None:
        """Deliver what is pending once; raise to have the rest retried."""
        if self.stop.is_set():
            raise _Stopping()
        live = [i for i in batch.pending if i.tp not in batch.abandoned]
        outcomes = await self.destination.deliver([i.record for i in live]) if live else []
        if len(outcomes) != len(live):
            raise AssertionError(
                f"{type(self.destination).__name__} answered "
                f"{len(outcomes)} outcomes for {len(live)} records"
            )
        batch.pending = []
        quota: QuotaExhausted | None = None
        for item, outcome in zip(live, outcomes, strict=True):
            DELIVERIES.labels(self.config.worker, outcome.kind.value).inc()
            if outcome.kind is Kind.REJECTED:
                batch.dead.append(item.dead(outcome.error or RuntimeError("rejected")))
            elif outcome.kind is Kind.RETRY:
                quota = self._retry(batch, item, outcome, quota)
        if quota is not None:
            raise quota
        if batch.pending:
            raise _retry_error(batch.pending, live, outcomes)

    def _retry(
        self, batch: _Batch, item: Item, outcome: Outcome, quota: QuotaExhausted | None
    ) -> QuotaExhausted | None:
        if outcome.quota:  # not the record's fault: does not count as an attempt
            batch.pending.append(item)
            assert isinstance(outcome.error, QuotaExhausted)
            return outcome.error
        if outcome.counts is Counts.NOTHING:  # a wait, not a failure: without limit
            batch.pending.append(item)
        elif outcome.counts is Counts.FAILED_CALL:
            item.failed_calls += 1
            limit = self.config.call_attempts
            self._again_or_dead(
                batch,
                item,
                limit is not None and item.failed_calls >= limit,
                f"{item.failed_calls} failed calls: {outcome.error}",
            )
        else:
            item.attempts += 1
            self._again_or_dead(
                batch,
                item,
                item.attempts >= self.config.record_attempts,
                f"{item.attempts} attempts: {outcome.error}",
            )
        return quota

    @staticmethod
    def _again_or_dead(batch: _Batch, item: Item, spent: bool, why: str) -> None:
        if spent:
            batch.dead.append(item.dead(RetriesExhausted(why)))
        else:
            batch.pending.append(item)

    async def _pause_for(self, exc: QuotaExhausted) -> None:
        log.warning(
            "%s: daily quota used up, not fetching for %.0fs: %s",
            self.config.worker,
            exc.retry_after,
            exc,
        )
        self._hold()
        started = time.monotonic()
        await self.clock.sleep(exc.retry_after)
        SINK_PAUSED_SECONDS.labels(self.config.worker).inc(time.monotonic() - started)
        if self.stop.is_set():
            raise _Stopping()

    async def _finish(self, batch: _Batch) -> None:
        """Dead letters first (durable), then the offsets of the partitions still ours.

        `send` waits out a broker that does not answer (the shared retry policy); it
        runs in a thread meanwhile, so that `_keepalive` keeps this member in the group.
        """
        dead = [d for d in batch.dead if _tp_of(d) not in batch.abandoned]
        if dead:
            await asyncio.to_thread(self.dead_letters.send, dead)
        self._commit({tp: end for tp, end in batch.ends.items() if tp not in batch.abandoned})

    def _commit(self, ends: dict[TP, int]) -> None:
        """Commit `ends` and any earlier failed commit, for the partitions still ours."""
        for tp, end in self._uncommitted.items():
            ends[tp] = max(ends.get(tp, 0), end)
        ends = {tp: end for tp, end in ends.items() if tp in self.owned}
        self._uncommitted = {}
        if not ends:
            return
        try:
            self.consumer.commit(
                offsets=[TopicPartition(t, p, end) for (t, p), end in ends.items()],
                asynchronous=False,
            )
        except KafkaException as exc:  # e.g. a rebalance under way: tried again
            log.warning("commit failed (tried again on the next turn): %s", exc)
            self._uncommitted = ends

    # -- group membership -------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.owned |= {(tp.topic, tp.partition) for tp in partitions}
        # librdkafka keeps a partition's pause across a rebalance: one `_hold` paused, then
        # lost (a broker away longer than the session) came back paused, never fetched.
        consumer.resume(partitions)
        log.info("assigned %s", sorted(tp.partition for tp in partitions))

    def _on_revoke(self, _: Consumer, partitions: list[TopicPartition]) -> None:
        gone = {(tp.topic, tp.partition) for tp in partitions}
        self.owned -= gone
        # A failed commit of a partition that leaves is dropped: its next owner starts at
        # the last commit and may commit past ours, which a late retry would move back
        # should the partition ever come back to this member.
        self._uncommitted = {tp: end for tp, end in self._uncommitted.items() if tp not in gone}
        self._paused -= gone
        self._carry = [m for m in self._carry if _where(m)[:2] not in gone]
        if self._batch is not None:
            self._batch.abandoned |= gone
        forget_lag(self.config.worker, gone)
        log.info("revoked %s", sorted(tp.partition for tp in partitions))

    async def _keepalive(self) -> None:
        """Stay in the group while a batch takes long: pause fetching, keep polling."""
        while True:
            await asyncio.sleep(self.config.keepalive_s)
            self._hold()
            message = self.consumer.poll(0)
            if message is not None and not message.error():
                self._carry.append(message)  # from a partition assigned meanwhile
            self._hold()

    def _hold(self) -> None:
        fresh = self.owned - self._paused
        if fresh:
            self.consumer.pause([TopicPartition(t, p) for t, p in fresh])
            self._paused |= fresh

    def _unhold(self) -> None:
        back = self._paused & self.owned
        if back:
            self.consumer.resume([TopicPartition(t, p) for t, p in back])
        self._paused = set()

    def _record_lag(self, messages: list[Message]) -> None:
        last: dict[TP, int] = {}
        for message in messages:
            topic, partition, offset = _where(message)
            last[(topic, partition)] = offset
        for (topic, partition), offset in last.items():
            if (topic, partition) not in self.owned:
                continue  # revoked meanwhile: its new owner reports it
            try:
                _, high = self.consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), cached=True
                )
            except KafkaException:
                continue
            if high >= 0:
                CONSUMER_LAG.labels(self.config.worker, topic, str(partition)).set(
                    max(high - offset - 1, 0)
                )


async def _call(
    decode: Callable[[bytes | None], dict[str, Any]], value: bytes | None
) -> dict[str, Any]:
    return decode(value)


def _where(message: Message) -> tuple[str, int, int]:
    """(topic, partition, offset) of a consumed message (never None once consumed)."""
    topic, partition, offset = message.topic(), message.partition(), message.offset()
    assert topic is not None and partition is not None and offset is not None
    return topic, partition, offset


def _tp_of(letter: DeadLetter) -> TP:
    return (letter.header("source.topic"), int(letter.header("source.partition")))


def _retry_error(pending: list[Item], live: list[Item], outcomes: list[Outcome]) -> Retriable:
    """The error the retry loop waits on: the largest `retry_after` asked for, if any."""
    asked = [o for o in outcomes if o.kind is Kind.RETRY]
    after = max((o.retry_after for o in asked), default=0.0)
    message = f"{len(pending)} of {len(live)} records to retry: {asked[0].error if asked else ''}"
    return Backpressure(message, after) if after else Retriable(message)
