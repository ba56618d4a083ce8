"""faust's consumer, with a batch fast path: fetched records go to a batch handler whole.

Why. faust delivers every record on its own: `Consumer._drain_messages` awaits
`wait_first(callback(message), suspend_flow.wait())` per message (two tasks each), the
conductor takes a lock, checks flow control, builds an Event and puts it on a queue, the
stream runs its processor chain and acknowledges each event, and `Stream.take_events`
stops filling its buffer while a batch is processed. On the standard 2-core box that
path alone caps a do-nothing `take(5000)` agent at ~11k records/s (aiokafka alone reads
~490k/s there), and the people agent at ~6,200 people/s, a third of what the store alone
takes (~35k/s). Here the per-record work is only what the records need: one RawRecord
each, decode, rules, one store write per batch, and the store write of batch N overlaps
the fetching and preparing of the next ones: 4,343 -> 18,755 people/s for one worker in
the same session (bench/RESULTS.md has the figures and the profile).

What stays faust's: the Worker lifecycle; group membership and rebalancing (the aiokafka
consumer in faust's consumer thread, faust's rebalance callbacks, and its recovery,
which seeks every assigned partition to its committed offset after each rebalance);
flow control (`stop_flow`/`resume_flow`, paused partitions); and the commit machinery
(`Consumer.commit`: one commit at a time, only partitions still assigned, producer
flushed first, periodic commits, the last commit on shutdown). Topics not registered
here still take faust's own per-message path.

What changes, for batch topics only:
- `_drain_messages` hands each fetched partition's records to a `BatchPipeline`
  (`streams.pipeline`) instead of the conductor; no Event, no per-message task.
- Acknowledgement is per batch: once the handler returned (the store transaction and
  the dead letters are durable), each partition's offset after the batch becomes
  committable (`_new_offset`), and a commit is started at once.
- On revocation (every rebalance: aiokafka's protocol is eager), before faust's own
  handling: the flow stops, records not yet being written are dropped (recovery will
  seek back to the committed offsets and fetch them again), the batch being written
  finishes (its current attempt is its last) and its offsets are committed while the
  partitions are still ours. Nothing of a revoked partition is written or committed by
  this worker afterwards. Shutdown (`wait_empty`) does the same.
- A record aiokafka returned is either taken or its partition is sought back: aiokafka
  returns only records of the current assignment at the current position and moves the
  position past them, so dropping one silently skips it. (A fetch can wait out a whole
  rebalance and return fresh records after it; treating those as stale lost records on
  Apache Kafka, which tests/integration/test_people_fastpath.py showed.)

faust internals used are listed in `_REQUIRED` and checked by `check_faust()` when the
app is created, with the faust version: a faust upgrade fails at start-up with one
clear line instead of misbehaving. Verified against faust-streaming 0.15; the aiokafka
version is checked the same way (`SUPPORTED_AIOKAFKA`).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from operator import attrgetter
from typing import Any, cast

import aiokafka
import faust
from faust.transport.consumer import Consumer as _BaseConsumer
from faust.transport.drivers import aiokafka as _aiokafka
from faust.types import TP
from mode import Service

from actions_sync.errors import ConfigError
from streams.batch import RawRecord, raw_record
from streams.pipeline import Batch, BatchPipeline, DeadLetters

__all__ = ["BatchConsumer", "BatchRoute", "BatchTransport", "check_faust", "install", "subscribe"]

log = logging.getLogger(__name__)

_raw_fields = attrgetter("topic", "partition", "offset", "key", "value")  # of aiokafka's record

SUPPORTED_FAUST = ("0.15.",)  # versions whose internals below were read and tested
# aiokafka versions whose consumer has the private `_fetch_max_wait_ms` that
# `_ConsumerThread` sets (read and tested; pyproject.toml pins the same range)
SUPPORTED_AIOKAFKA = ("0.12.", "0.13.", "0.14.")

# (class, method, its parameters): what this module overrides or calls of faust.
_REQUIRED: tuple[tuple[type, str, tuple[str, ...]], ...] = (
    (_BaseConsumer, "_drain_messages", ("self", "fetcher")),
    (_BaseConsumer, "_wait_next_records", ("self", "timeout")),
    (_BaseConsumer, "_new_offset", ("self", "tp")),
    (_BaseConsumer, "_filter_tps_with_pending_acks", ("self", "topics")),
    (_BaseConsumer, "maybe_wait_for_commit_to_finish", ("self",)),
    (_BaseConsumer, "commit", ("self", "topics", "start_new_transaction")),
    (_BaseConsumer, "perform_seek", ("self",)),
    (_BaseConsumer, "stop_flow", ("self",)),
    (_BaseConsumer, "wait_empty", ("self",)),
    (_BaseConsumer, "on_partitions_revoked", ("self", "revoked")),
    (_BaseConsumer, "_to_message", ("self", "tp", "record")),
    (_BaseConsumer, "_add_gap", ("self", "tp", "offset_from", "offset_to")),
    (_aiokafka.Consumer, "highwater", ("self", "tp")),
    (_aiokafka.Consumer, "_new_consumer_thread", ("self",)),
    (_aiokafka.AIOKafkaConsumerThread, "_create_worker_consumer", ("self", "transport")),
)
# Instance attributes of faust's Consumer read here.
_REQUIRED_STATE = (
    "_read_offset",
    "_buffered_partitions",
    "_stopped",
    "flow_active",
    "suspend_flow",
    "callback",
    "consumer_stopped_errors",
)


def check_faust() -> None:
    """Raise `ConfigError` unless this faust has the internals this module relies on."""
    version = faust.__version__
    if not version.startswith(SUPPORTED_FAUST):
        raise ConfigError(
            f"faust-streaming {version} is not one streams.fastpath was verified against"
            f" ({', '.join(v + 'x' for v in SUPPORTED_FAUST)}): pin faust-streaming to it,"
            " or re-read the internals listed in streams/fastpath.py and extend"
            " SUPPORTED_FAUST"
        )
    if not (client := aiokafka.__version__).startswith(SUPPORTED_AIOKAFKA):
        raise ConfigError(
            f"aiokafka {client} is not one streams.fastpath was verified against"
            f" ({', '.join(v + 'x' for v in SUPPORTED_AIOKAFKA)}): pin aiokafka to it, or"
            " re-read AIOKafkaConsumer's _fetch_max_wait_ms and extend SUPPORTED_AIOKAFKA"
        )
    problems = []
    for cls, name, params in _REQUIRED:
        method = getattr(cls, name, None)
        if method is None:
            problems.append(f"{cls.__qualname__}.{name} is missing")
        elif (found := tuple(inspect.signature(method).parameters)) != params:
            problems.append(f"{cls.__qualname__}.{name}({', '.join(found)}) changed")
    if problems:
        raise ConfigError(
            f"faust-streaming {version}: {'; '.join(problems)} (streams.fastpath relies on them)"
        )


@dataclass(frozen=True)
class BatchRoute:
    """A batch topic: how its batches are prepared and written, the largest batch, who
    hears of each written batch (metrics), and where the records that fail on their own
    go (`streams.pipeline`: after `attempts` failures that are not an outage)."""

    topic: str
    write: Callable[[Sequence[RawRecord], Any], object]
    size: int
    on_written: Callable[[Batch], None] = field(default=lambda batch: None)
    prepare: Callable[[Sequence[RawRecord]], Any] | None = None
    dead_letters: DeadLetters | None = None
    attempts: int = 5
    worker: str = ""


class _ConsumerThread(_aiokafka.AIOKafkaConsumerThread):
    """faust's consumer thread, with the transport's fetch wait instead of faust's 1.5 s.

    A fetch returns once data is there on Apache Kafka, but Tansu holds every fetch for
    the whole wait: with faust's fixed 1,500 ms, a change waited up to 1.5 s (p99 of the
    incremental path 3 s) before the agent saw it.
    """

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        if not hasattr(consumer, "_fetch_max_wait_ms"):  # read by its start() (aiokafka 0.12)
            raise ConfigError(
                "aiokafka's consumer lacks _fetch_max_wait_ms (streams.fastpath sets it)"
            )
        consumer._fetch_max_wait_ms = cast(BatchTransport, transport).fetch_max_wait_ms
        return consumer


class BatchConsumer(_aiokafka.Consumer):
    """faust's aiokafka consumer, with whole fetched batches for the registered topics."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        missing = [name for name in _REQUIRED_STATE if not hasattr(self, name)]
        if missing:
            raise ConfigError(
                f"faust-streaming {faust.__version__}: Consumer lacks"
                f" {', '.join(missing)} (streams.fastpath relies on them)"
            )
        self._pipelines: dict[str, BatchPipeline] = {}
        self._committable: dict[TP, int] = {}  # offset after the last durable batch
        self._next_offset: dict[TP, int] = {}  # offset after the last record in hand
        self._committing: asyncio.Future[None] | None = None
        self._commit_again = False

    def _new_consumer_thread(self) -> _aiokafka.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    @property
    def routes(self) -> Mapping[str, BatchRoute]:
        return cast(BatchTransport, self.transport).routes

    # -- fetching -----------------------------------------------------------------------

    async def _drain_messages(self, fetcher: Any) -> None:
        if not self.routes:
            return await super()._drain_messages(fetcher)
        self._start_writers()
        consumer_stopped = self._stopped.is_set
        fetcher_stopped = cast(Service, fetcher)._stopped.is_set
        try:
            while not (consumer_stopped() or fetcher_stopped()):
                for pipeline in self._pipelines.values():
                    await pipeline.wait_for_room()
                records, active = await self._wait_next_records(1.0)
                if records and not self.should_stop:
                    await self._dispatch(records, active)
                await asyncio.sleep(0)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise

    async def _dispatch(self, records: Mapping[Any, list[Any]], active: set[TP] | None) -> None:
        """Give each partition's records to its topic's pipeline (or to faust's path).

        aiokafka returns only records of the current assignment, at the current positions
        (none while a rebalance is in progress), and moves the positions past them: a
        record returned here and not taken would be skipped unless the position goes back.
        """
        if not self.flow_active:
            # As faust's getmany: records returned while the flow is stopped (a rebalance
            # not yet recovered, or shutdown) are dropped and the positions go back to the
            # committed offsets, so that none is skipped.
            try:
                await self.perform_seek()
            except Exception as exc:
                self.log.warning("seek to committed offsets while flow stopped: %r", exc)
            return
        for key, fetched in records.items():
            tp = TP(key.topic, key.partition)
            if active is not None and tp not in active and tp not in self._buffered_partitions:
                continue  # paused (as faust's getmany)
            pipeline = self._pipelines.get(tp.topic)
            if pipeline is None:
                await self._deliver_each(tp, fetched)
            else:
                self._take(pipeline, tp, fetched)

    def _take(self, pipeline: BatchPipeline, tp: TP, fetched: list[Any]) -> None:
        floor = self._next_offset.get(tp)
        if floor is not None and fetched[0].offset < floor:  # in hand already, and fetched
            fetched = [r for r in fetched if r.offset >= floor]  # again after a seek
            if not fetched:
                return
        pipeline.add(tp, list(map(raw_record, map(_raw_fields, fetched))))
        self._next_offset[tp] = fetched[-1].offset + 1
        monitor = self.app.monitor
        monitor.track_tp_end_offset(tp, self.highwater(tp))
        monitor.stream_inbound_time[tp] = monitor.time()  # faust's livelock check reads it

    async def _deliver_each(self, tp: TP, fetched: list[Any]) -> None:
        """faust's own per-message delivery, for a topic that is not a batch topic."""
        for record in fetched:
            message = self._to_message(tp, record)
            read = self._read_offset[tp]
            if read is None or message.offset >= read:
                if (
                    read
                    and message.offset - read > 1
                    and self.app.topics.acks_enabled_for(tp.topic)
                ):
                    await self._add_gap(tp, read + 1, message.offset)
                await self.wait_first(self.callback(message), self.suspend_flow.wait())
                self._read_offset[tp] = message.offset

    # -- writing and acknowledging ------------------------------------------------------

    def _start_writers(self) -> None:
        for topic, route in self.routes.items():
            if topic not in self._pipelines:
                pipeline = BatchPipeline(
                    topic,
                    route.write,
                    route.size,
                    partial(self._ack, route),
                    prepare=route.prepare,
                    dead_letters=route.dead_letters,
                    attempts=route.attempts,
                    worker=route.worker,
                )
                self._pipelines[topic] = pipeline
                self.add_future(self._run_writer(pipeline))

    async def _run_writer(self, pipeline: BatchPipeline) -> None:
        try:
            await pipeline.run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug in the writer: stop the worker, loudly
            self.log.exception("batch writer for %s crashed: %r", pipeline.name, exc)
            await self.crash(exc)

    def _ack(self, route: BatchRoute, batch: Batch) -> None:
        """The batch is durable: its offsets may be committed (and are, right away)."""
        for tp, end in batch.ends.items():
            key = cast(TP, tp)
            if end > self._committable.get(key, -1):
                self._committable[key] = end
        route.on_written(batch)
        if self._committing is not None and not self._committing.done():
            self._commit_again = True
        else:
            self._committing = self.add_future(self._commit_acknowledged())

    async def _commit_acknowledged(self) -> None:
        self._commit_again = True
        while self._commit_again:
            self._commit_again = False
            try:
                await self._commit_now()
            except Exception as exc:  # the periodic commit will try again
                self.log.warning("commit after a batch failed: %r", exc)

    async def _commit_now(self) -> None:
        """Commit what is acknowledged now, after any commit already in flight."""
        while await self.maybe_wait_for_commit_to_finish():
            pass
        await self.commit()

    def _new_offset(self, tp: TP) -> int | None:
        if tp.topic in self.routes:
            return self._committable.get(tp)  # `_should_commit` skips what is committed
        return super()._new_offset(tp)

    def _filter_tps_with_pending_acks(self, topics: Any = None) -> Iterator[TP]:
        yield from super()._filter_tps_with_pending_acks(topics)
        for tp in list(self._committable):
            if topics is None or tp in topics or tp.topic in topics:
                yield tp

    # -- rebalancing and shutdown ---------------------------------------------------------

    async def _finish_in_flight(self) -> None:
        """Nothing in hand afterwards: the records dropped are fetched again after the
        seek to the committed offsets that follows every rebalance (faust's recovery)."""
        for pipeline in self._pipelines.values():
            await pipeline.finish_in_flight()
        self._next_offset.clear()

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        if revoked and self._pipelines:
            self.stop_flow()  # nothing enters a batch until recovery seeks and resumes
            await self._finish_in_flight()
            await self._commit_now()  # while the partitions are still ours
            for tp in revoked:
                self._committable.pop(tp, None)
            self.log.info(
                "%d partitions revoked: batches in flight finished, offsets committed", len(revoked)
            )
        await super().on_partitions_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TP], generation_id: int = 0) -> None:
        self.log.info(
            "%d partitions assigned (generation %d): %s",
            len(assigned),
            generation_id,
            ", ".join(sorted(f"{tp.topic}[{tp.partition}]" for tp in assigned)),
        )
        await super().on_partitions_assigned(assigned, generation_id)

    async def wait_empty(self) -> None:
        if self._pipelines:
            await self._finish_in_flight()
            await self._commit_now()
        await super().wait_empty()

    async def on_shutdown(self) -> None:
        for pipeline in self._pipelines.values():
            pipeline.close()
        await super().on_shutdown()


class BatchTransport(_aiokafka.Transport):
    """faust's aiokafka transport, with `BatchConsumer` and its batch routes."""

    Consumer = BatchConsumer

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.routes: dict[str, BatchRoute] = {}
        self.fetch_max_wait_ms = 1500  # faust's own


def install(app: faust.App, fetch_max_wait_ms: int | None = None) -> None:
    """Give `app` the batch transport; call before anything starts the app."""
    check_faust()
    url = app.conf.broker_consumer[0]
    if url.scheme not in ("kafka", "aiokafka"):
        raise ConfigError(
            f"streams.fastpath needs faust's aiokafka driver (kafka://), not {url.scheme}://"
        )
    transport = BatchTransport(app.conf.broker_consumer, app)
    if fetch_max_wait_ms is not None:
        transport.fetch_max_wait_ms = fetch_max_wait_ms
    app.transport = transport


def subscribe(app: faust.App, route: BatchRoute) -> None:
    """Consume `route.topic` in batches of at most `route.size`, each prepared by
    `route.prepare` (when given) and written by `route.write` (`streams.pipeline`)."""
    transport = app.transport
    if not isinstance(transport, BatchTransport):
        raise ConfigError("streams.fastpath.install(app) must run before subscribe()")
    transport.routes[route.topic] = route
    app.topics.add(app.topic(route.topic, key_serializer="raw", value_serializer="raw"))
