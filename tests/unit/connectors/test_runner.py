"""The shared sink loop (`connectors.runner`) on a scripted consumer and destination.

The real broker is exercised in tests/integration/test_sinks.py; here the consumer is a
small in-memory stand-in so that rebalances, pauses and crashes can be staged exactly.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from prometheus_client import REGISTRY

from actions_sync.errors import Backpressure, Retriable, UndecodableRecord
from actions_sync.metrics import CONSUMER_LAG
from actions_sync.retry import Backoff
from connectors.errors import QuotaExhausted, Rejected
from connectors.outcome import Outcome, accepted, call_failed, fan_out, rejected, retry
from connectors.runner import RunnerConfig, SinkRunner

TOPIC = "outbound.test"


class Message:
    def __init__(self, partition: int, offset: int, value: bytes) -> None:
        self._p, self._o, self._v = partition, offset, value

    def topic(self) -> str:
        return TOPIC

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o

    def key(self) -> bytes:
        return b"k"

    def value(self) -> bytes:
        return self._v

    def error(self) -> None:
        return None


class Consumer:
    """Partitions of JSON values; consume/poll/pause/resume/commit as librdkafka does."""

    def __init__(self, partitions: dict[int, list[Any]]) -> None:
        self.log = {p: [json.dumps(v).encode() for v in values] for p, values in partitions.items()}
        self.position = dict.fromkeys(partitions, 0)
        self.paused: set[int] = set()
        self.commits: dict[int, int] = {}
        self.polls = 0
        self.on_poll: Callable[[Consumer], None] | None = None
        self.consumes_while_paused = 0

    def subscribe(self, topics: list[str], on_assign: Any, on_revoke: Any, on_lost: Any) -> None:
        self.on_assign, self.on_revoke = on_assign, on_revoke
        on_assign(self, [TopicPartition(TOPIC, p) for p in self.log])

    def consume(self, n: int, timeout: float) -> list[Message]:
        out: list[Message] = []
        if self.paused:
            self.consumes_while_paused += 1
        for p in sorted(set(self.position) - self.paused):
            while len(out) < n and self.position[p] < len(self.log[p]):
                out.append(Message(p, self.position[p], self.log[p][self.position[p]]))
                self.position[p] += 1
        if not out:
            time.sleep(min(timeout, 0.005))
        return out

    def poll(self, timeout: float) -> None:
        self.polls += 1
        if self.on_poll:
            self.on_poll(self)

    def revoke(self, partition: int) -> None:
        self.position.pop(partition)
        self.on_revoke(self, [TopicPartition(TOPIC, partition)])

    def pause(self, tps: list[TopicPartition]) -> None:
        self.paused |= {tp.partition for tp in tps}

    def resume(self, tps: list[TopicPartition]) -> None:
        self.paused -= {tp.partition for tp in tps}

    def commit(self, offsets: list[TopicPartition], asynchronous: bool) -> None:
        assert not asynchronous
        for tp in offsets:
            self.commits[tp.partition] = tp.offset

    def get_watermark_offsets(self, tp: TopicPartition, cached: bool) -> tuple[int, int]:
        return 0, len(self.log[tp.partition])


class DeadLetters:
    def __init__(self) -> None:
        self.letters: list[Any] = []

    def send(self, letters: Sequence[Any]) -> int:
        self.letters += letters
        return len(letters)


class Destination:
    """Answers each record with the next outcome its script names (default: accepted)."""

    def __init__(self, script: Callable[[dict[str, Any], int], Outcome] | None = None) -> None:
        self.script = script or (lambda _r, _n: accepted())
        self.seen: list[dict[str, Any]] = []
        self.tries: dict[int, int] = {}
        self.started = self.closed = False

    async def start(self) -> None:
        self.started = True

    async def deliver(self, records: Sequence[dict[str, Any]]) -> list[Outcome]:
        self.seen += records
        out = []
        for record in records:
            n = self.tries[record["n"]] = self.tries.get(record["n"], 0) + 1
            out.append(self.script(record, n))
        return out

    async def aclose(self) -> None:
        self.closed = True


def decode(value: bytes | None) -> dict[str, Any]:
    record = json.loads(value or b"null")
    if not isinstance(record, dict):
        raise UndecodableRecord("not a record")
    return record


def runner_for(
    consumer: Consumer, destination: Any, dead: DeadLetters, **config: Any
) -> SinkRunner:
    settings = {
        "batch_size": 50,
        "batch_within_s": 0.01,
        "keepalive_s": 0.01,
        "record_attempts": 3,
        "backoff": Backoff(base_s=0.001, cap_s=0.005),
        **config,
    }
    return SinkRunner(
        consumer,  # type: ignore[arg-type]
        RunnerConfig("test-sink", TOPIC, **settings),
        decode,
        destination,
        dead,  # type: ignore[arg-type]
    )


def run_until(runner: SinkRunner, done: Callable[[], bool], timeout_s: float = 10) -> None:
    async def go() -> None:
        task = asyncio.create_task(runner.run())
        deadline = time.monotonic() + timeout_s
        # `done` reads the fakes' state: a test's condition, not an event the runner sets
        while not done() and time.monotonic() < deadline and not task.done():  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        runner.stop.set()
        await task

    asyncio.run(go())


def records(partition: int, count: int, start: int = 0) -> list[dict[str, int]]:
    return [{"n": partition * 1000 + i} for i in range(start, start + count)]


def test_offsets_are_committed_once_every_record_is_accepted_or_dead_lettered() -> None:
    consumer = Consumer({0: records(0, 120), 1: [*records(1, 5), "garbage", *records(1, 5, 6)]})
    dead = DeadLetters()
    bad = {3, 1004}
    destination = Destination(
        lambda r, _: rejected(Rejected("no", "1004")) if r["n"] in bad else accepted()
    )
    runner = runner_for(consumer, destination, dead)
    run_until(runner, lambda: consumer.commits == {0: 120, 1: 11})
    assert consumer.commits == {0: 120, 1: 11} and destination.started and not destination.closed
    reasons = sorted((d.header("error.stage"), d.header("source.offset")) for d in dead.letters)
    assert reasons == [("decode", "5"), ("deliver", "3"), ("deliver", "4")]


def test_retried_records_are_delivered_again_and_dead_lettered_after_their_attempts() -> None:
    consumer = Consumer({0: records(0, 10)})
    dead = DeadLetters()

    def script(record: dict[str, Any], n: int) -> Outcome:
        if record["n"] == 7:
            return retry(Retriable("UNABLE_TO_LOCK_ROW"))  # forever
        return retry(Retriable("lock")) if n < 3 - record["n"] % 2 else accepted()

    destination = Destination(script)
    run_until(runner_for(consumer, destination, dead), lambda: 0 in consumer.commits)
    assert consumer.commits == {0: 10}
    assert [d.header("error.class") for d in dead.letters] == ["RetriesExhausted"]
    assert "UNABLE_TO_LOCK_ROW" in dead.letters[0].header("error.message")
    assert destination.tries[7] == 3 and destination.tries[0] == 3 and destination.tries[1] == 2


def test_a_call_that_fails_as_a_whole_is_retried_without_counting_attempts() -> None:
    consumer = Consumer({0: records(0, 4)})
    calls = 0

    async def send(chunk: Sequence[dict[str, Any]]) -> list[Outcome]:
        nonlocal calls
        calls += 1
        if calls <= 6:
            raise Retriable("HTTP 503")
        return [accepted()] * len(chunk)

    class Whole(Destination):
        async def deliver(self, records: Sequence[dict[str, Any]]) -> list[Outcome]:
            return await fan_out(records, 2, send)

    dead = DeadLetters()
    run_until(runner_for(consumer, Whole(), dead), lambda: 0 in consumer.commits)
    assert consumer.commits == {0: 4} and not dead.letters and calls >= 8


def test_calls_that_fail_as_a_whole_are_dead_lettered_after_the_call_attempts() -> None:
    consumer = Consumer({0: records(0, 4)})
    calls: list[int] = []

    async def send(chunk: Sequence[dict[str, Any]]) -> list[Outcome]:
        calls.append(len(chunk))
        raise Retriable("HTTP 503")  # the API is down for good

    class Whole(Destination):
        async def deliver(self, records: Sequence[dict[str, Any]]) -> list[Outcome]:
            return await fan_out(records, 2, send)

    dead = DeadLetters()
    run_until(runner_for(consumer, Whole(), dead, call_attempts=5), lambda: 0 in consumer.commits)
    assert consumer.commits == {0: 4} and len(dead.letters) == 4
    assert {d.header("error.class") for d in dead.letters} == {"RetriesExhausted"}
    assert "5 failed calls" in dead.letters[0].header("error.message")
    assert len(calls) == 2 * 5  # each record in one call per attempt: 5, not 5 x retries


def test_waits_the_api_asks_for_count_against_no_attempts() -> None:
    consumer = Consumer({0: records(0, 2)})

    def script(_: dict[str, Any], n: int) -> Outcome:
        return call_failed(Backpressure("606 rate limit", 0.001)) if n <= 4 else accepted()

    destination = Destination(script)
    dead = DeadLetters()
    run_until(
        runner_for(consumer, destination, dead, call_attempts=2), lambda: 0 in consumer.commits
    )
    assert consumer.commits == {0: 2} and not dead.letters and destination.tries[0] == 5


def test_a_used_up_quota_stops_fetching_until_it_is_back_and_keeps_polling() -> None:
    consumer = Consumer({0: records(0, 3), 1: records(1, 3)})
    quota_until = time.monotonic() + 0.3

    def script(_: dict[str, Any], __: int) -> Outcome:
        if time.monotonic() < quota_until:
            return retry(QuotaExhausted("607 daily quota", 0.3))
        return accepted()

    destination = Destination(script)
    run_until(
        runner_for(consumer, destination, DeadLetters()), lambda: consumer.commits == {0: 3, 1: 3}
    )
    assert consumer.commits == {0: 3, 1: 3}
    assert consumer.polls > 3 and consumer.consumes_while_paused == 0 and not consumer.paused
    assert max(destination.tries.values()) == 2  # one try, one after the pause: no spinning


def test_a_partition_revoked_mid_batch_is_abandoned_and_never_committed() -> None:
    consumer = Consumer({0: records(0, 5), 1: records(1, 5)})

    def script(record: dict[str, Any], n: int) -> Outcome:
        return retry(Retriable("lock")) if n == 1 and record["n"] == 0 else accepted()

    destination = Destination(script)
    consumer.on_poll = lambda c: c.revoke(1) if 1 in c.position else None
    CONSUMER_LAG.labels("test-sink", TOPIC, "1").set(7)  # as reported before the rebalance
    run_until(
        runner_for(
            consumer,
            destination,
            DeadLetters(),
            keepalive_s=0.001,
            backoff=Backoff(base_s=0.05, cap_s=0.05),
        ),
        lambda: 0 in consumer.commits,
    )
    assert consumer.commits == {0: 5}
    assert [r["n"] for r in destination.seen].count(1000) == 1  # not retried after revoke
    lag = REGISTRY.get_sample_value(
        "actions_sync_consumer_lag", {"worker": "test-sink", "topic": TOPIC, "partition": "1"}
    )
    assert lag is None  # the new owner reports it; this worker's stale 7 is gone


def test_stopping_mid_batch_leaves_it_uncommitted() -> None:
    consumer = Consumer({0: records(0, 5)})
    destination = Destination(lambda _r, _n: retry(Retriable("HTTP 503")))
    runner = runner_for(consumer, destination, DeadLetters(), record_attempts=1000)
    run_until(runner, lambda: len(destination.seen) > 10)
    assert consumer.commits == {}


def test_a_batch_gathers_as_long_as_the_destination_asks(monkeypatch: pytest.MonkeyPatch) -> None:
    consumer = Consumer({0: records(0, 10)})
    timeouts: list[float] = []
    consume = consumer.consume

    def timed(n: int, timeout: float) -> list[Message]:
        timeouts.append(timeout)
        return consume(n, timeout)

    monkeypatch.setattr(consumer, "consume", timed)
    asked = iter([0.3, 0.0])
    runner = runner_for(
        consumer,
        Destination(),
        DeadLetters(),
        batch_within_s=0.01,
        gather_s=lambda: next(asked, 0.0),
    )
    # (until the second consume too: the first batch's commit may come before it)
    run_until(runner, lambda: consumer.commits == {0: 10} and len(timeouts) >= 2)
    assert timeouts[:2] == [0.3, 0.01]  # the longer of the window and the destination's wait


def test_a_failed_commit_of_a_partition_still_ours_is_tried_again_when_idle() -> None:
    """A rebalance fails a commit (ILLEGAL_GENERATION) while the partitions this member
    keeps are not redelivered (cooperative rebalancing): the commit is tried again, or
    an idle partition's committed offset stays behind for good."""
    consumer = Consumer({0: records(0, 30)})
    failures = [KafkaException(KafkaError(KafkaError.ILLEGAL_GENERATION))]
    commit = consumer.commit

    def flaky(offsets: list[TopicPartition], asynchronous: bool) -> None:
        if failures:
            raise failures.pop()
        commit(offsets, asynchronous)

    consumer.commit = flaky  # type: ignore[method-assign]
    runner = runner_for(consumer, Destination(lambda r, _: accepted()), DeadLetters())
    run_until(runner, lambda: consumer.commits == {0: 30})
    assert consumer.commits == {0: 30} and not failures
