"""The batch fast path's faust consumer: routing of fetched records, acks, and guards."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import faust
import pytest
from faust.transport.drivers.aiokafka import Consumer as AIOKafkaConsumer
from faust.transport.drivers.aiokafka import Transport as AIOKafkaTransport
from faust.types import TP

from actions_sync.errors import ConfigError
from streams import fastpath
from streams.pipeline import Batch

TOPIC, OTHER = "marketo.person.changes", "other.topic"


@dataclass
class Fetched:
    """What aiokafka's fetcher hands out (the fields the fast path reads)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None = b"k"
    value: bytes | None = b"v"
    timestamp: int | None = None
    timestamp_type: int = 0
    headers: tuple[Any, ...] = ()
    checksum: int | None = None
    serialized_key_size: int = 1
    serialized_value_size: int = 1


def fetched(topic: str, partition: int, *offsets: int) -> dict[TP, list[Fetched]]:
    return {TP(topic, partition): [Fetched(topic, partition, o) for o in offsets]}


def with_consumer(
    test: Callable[[fastpath.BatchConsumer], Any],
    write: Callable[[Any, Any], object] = lambda records, prepared: None,
) -> None:
    """Run `test` with the consumer of an unstarted app that has TOPIC as batch topic."""

    async def main() -> None:
        app = faust.App(
            "t-fastpath", broker="kafka://127.0.0.1:9", web_enabled=False, store="memory://"
        )
        fastpath.install(app)
        fastpath.subscribe(app, fastpath.BatchRoute(TOPIC, write, 100))
        consumer = app.consumer
        assert isinstance(consumer, fastpath.BatchConsumer)
        consumer.highwater = lambda tp: 1000  # type: ignore[method-assign]
        consumer._start_writers()
        try:
            result = test(consumer)
            if asyncio.iscoroutine(result):
                await result
        finally:
            for pipeline in consumer._pipelines.values():
                pipeline.close()
            consumer._thread.thread_loop.close()  # made, never run, by faust's thread

    asyncio.run(main())


def test_this_faust_has_what_the_fast_path_relies_on() -> None:
    fastpath.check_faust()


def test_an_unverified_faust_version_fails_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(faust, "__version__", "0.16.0")
    with pytest.raises(ConfigError, match=r"0\.16\.0 is not one streams\.fastpath was verified"):
        fastpath.check_faust()


def test_an_unverified_aiokafka_version_fails_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    import aiokafka

    monkeypatch.setattr(aiokafka, "__version__", "0.15.0")
    with pytest.raises(ConfigError, match=r"aiokafka 0\.15\.0 is not one streams\.fastpath was"):
        fastpath.check_faust()


def test_a_changed_faust_internal_fails_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    from faust.transport.consumer import Consumer

    async def _new_offset(self: Any, tp: Any, extra: int) -> None: ...

    monkeypatch.setattr(Consumer, "_new_offset", _new_offset)
    with pytest.raises(ConfigError, match=r"Consumer._new_offset\(self, tp, extra\) changed"):
        fastpath.check_faust()


def test_subscribe_needs_the_batch_transport() -> None:
    app = faust.App("t-plain", broker="kafka://127.0.0.1:9", web_enabled=False)
    with pytest.raises(ConfigError, match="install"):
        fastpath.subscribe(app, fastpath.BatchRoute(TOPIC, lambda r, p: None, 10))


def test_fetched_records_go_to_the_pipeline_whole_as_raw_records() -> None:
    async def test(consumer: fastpath.BatchConsumer) -> None:
        records = {**fetched(TOPIC, 0, 5, 6, 7), **fetched(TOPIC, 1, 2)}
        await consumer._dispatch(records, None)
        pipeline = consumer._pipelines[TOPIC]
        assert pipeline.pending == 4
        batch = pipeline._take()
        assert batch is not None
        assert [(r.partition, r.offset, r.value) for r in batch.records] == [
            (0, 5, b"v"),
            (0, 6, b"v"),
            (0, 7, b"v"),
            (1, 2, b"v"),
        ]
        assert batch.ends == {TP(TOPIC, 0): 8, TP(TOPIC, 1): 3}

    with_consumer(test)


def test_records_already_in_hand_or_of_paused_partitions_are_not_taken() -> None:
    async def test(consumer: fastpath.BatchConsumer) -> None:
        pipeline = consumer._pipelines[TOPIC]
        await consumer._dispatch(fetched(TOPIC, 0, 5, 6), None)
        await consumer._dispatch(fetched(TOPIC, 0, 5, 6, 7), None)
        assert pipeline.pending == 3  # 5 and 6 again (after a seek) are not taken twice
        await consumer._dispatch(fetched(TOPIC, 1, 1), {TP(TOPIC, 0)})
        assert pipeline.pending == 3  # partition 1 is paused

    with_consumer(test)


def test_records_returned_while_the_flow_is_stopped_are_fetched_again_from_the_commits() -> None:
    async def test(consumer: fastpath.BatchConsumer) -> None:
        seeks: list[None] = []

        async def perform_seek() -> None:
            seeks.append(None)

        consumer.perform_seek = perform_seek  # type: ignore[method-assign]
        consumer.stop_flow()
        await consumer._dispatch(fetched(TOPIC, 0, 8, 9), None)
        assert consumer._pipelines[TOPIC].pending == 0 and seeks == [None]
        consumer.resume_flow()
        await consumer._dispatch(fetched(TOPIC, 0, 8, 9), None)  # after the rebalance
        assert consumer._pipelines[TOPIC].pending == 2

    with_consumer(test)


def test_a_written_batch_makes_its_offsets_committable_and_only_then() -> None:
    async def test(consumer: fastpath.BatchConsumer) -> None:
        tp = TP(TOPIC, 3)
        assert consumer._new_offset(tp) is None
        assert tp not in set(consumer._filter_tps_with_pending_acks())
        commits: list[None] = []

        async def commit_now() -> None:
            commits.append(None)

        consumer._commit_now = commit_now  # type: ignore[method-assign]
        route = consumer.routes[TOPIC]
        consumer._ack(route, Batch([], {tp: 42}, 0.0))
        consumer._ack(route, Batch([], {tp: 40}, 0.0))  # never goes back
        assert consumer._new_offset(tp) == 42
        assert tp in set(consumer._filter_tps_with_pending_acks({TOPIC}))
        await asyncio.sleep(0.01)
        assert commits  # a commit is started at once

    with_consumer(test)


def test_other_topics_keep_fausts_per_message_path() -> None:
    async def test(consumer: fastpath.BatchConsumer) -> None:
        seen: list[int] = []

        async def callback(message: Any) -> None:
            seen.append(message.offset)

        consumer.callback = callback
        await consumer._dispatch(fetched(OTHER, 0, 1, 2, 3), None)
        assert seen == [1, 2, 3] and consumer._pipelines[TOPIC].pending == 0

    with_consumer(test)


def test_a_revocation_finishes_the_batch_in_flight_and_commits_it_before_faust_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from faust.transport.consumer import Consumer

    release, started, events = threading.Event(), threading.Event(), []

    def write(records: Any, prepared: Any) -> None:
        events.append("write started")
        started.set()
        assert release.wait(5)
        events.append("write returned")

    async def faust_revoked(self: Any, revoked: set[TP]) -> None:
        events.append("faust's revocation")

    monkeypatch.setattr(Consumer, "on_partitions_revoked", faust_revoked)

    async def test(consumer: fastpath.BatchConsumer) -> None:
        async def commit_now() -> None:
            events.append(f"commit {consumer._committable.get(TP(TOPIC, 0))}")

        monkeypatch.setattr(consumer, "_commit_now", commit_now)
        pipeline = consumer._pipelines[TOPIC]
        await consumer._dispatch(fetched(TOPIC, 0, 1, 2), None)
        assert await asyncio.to_thread(started.wait, 5)
        await consumer._dispatch(fetched(TOPIC, 0, 3, 4), None)  # pending
        revoking = asyncio.ensure_future(
            consumer.on_partitions_revoked({TP(TOPIC, 0), TP(TOPIC, 1)})
        )
        await asyncio.sleep(0.02)
        assert not consumer.flow_active and pipeline.pending == 0  # at once
        assert not revoking.done()  # waits for the write
        release.set()
        await asyncio.wait_for(revoking, 5)
        assert events[:3] == ["write started", "write returned", "commit 3"]
        assert set(events[3:-1]) <= {"commit 3"} and events[-1] == "faust's revocation"
        assert consumer._committable == {} and consumer._next_offset == {}

    with_consumer(test, write)


def test_the_aiokafka_consumer_fetches_with_the_configured_wait() -> None:
    async def main() -> None:
        app = faust.App(
            "t-fetch-wait", broker="kafka://127.0.0.1:9", web_enabled=False, store="memory://"
        )
        fastpath.install(app, fetch_max_wait_ms=40)
        consumer = cast(AIOKafkaConsumer, app.consumer)  # typed as faust's ConsumerT
        thread = consumer._thread
        try:
            made = thread._create_worker_consumer(cast(AIOKafkaTransport, app.transport))
            assert made._fetch_max_wait_ms == 40  # not faust's fixed 1500
            await made.stop()
        finally:
            thread.thread_loop.close()

    asyncio.run(main())
