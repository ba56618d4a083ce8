"""Kafka client configuration and topic administration, shared by every worker.

Defaults are chosen for fast, safe group work on both Tansu and Apache Kafka:
a 6 s session timeout makes a librdkafka group join take ~3 s instead of ~23 s, and the
classic consumer protocol is used (Tansu does not speak KIP-848).
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    ConfigResource,
    NewTopic,
)

from actions_sync.errors import ConfigError, Retriable
from actions_sync.retry import Backoff, retrying_blocking

__all__ = [
    "LIBRDKAFKA_MESSAGE_MAX",
    "Ends",
    "GroupProgress",
    "TopicSpec",
    "acknowledged",
    "admin_config",
    "consumer_config",
    "dlq_topic",
    "ends_of",
    "ensure_topics",
    "max_message_bytes",
    "producer_config",
    "read_topic",
    "wait_for_broker",
    "written",
]

DLQ_SUFFIX = ".dlq"
# librdkafka's default `message.max.bytes`: the largest record a producer sends unless
# configured otherwise (it refuses a larger one locally with MSG_SIZE_TOO_LARGE).
LIBRDKAFKA_MESSAGE_MAX = 1_000_000
ACK_WAIT_S = 10.0  # one wait for acknowledgements; a broker away longer is retried
log = logging.getLogger(__name__)


def dlq_topic(topic: str) -> str:
    """The dead-letter topic of `topic`."""
    return topic + DLQ_SUFFIX


def admin_config(bootstrap: str) -> dict[str, Any]:
    return {"bootstrap.servers": bootstrap, "socket.timeout.ms": 10_000}


def producer_config(bootstrap: str, **overrides: Any) -> dict[str, Any]:
    """Idempotent, batched producer: acks=all, lz4, small linger for throughput."""
    return {
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 20,
        "batch.num.messages": 10_000,
        "compression.type": "lz4",
        **overrides,
    }


def consumer_config(
    bootstrap: str, group_id: str, session_timeout_ms: int = 6000, **overrides: Any
) -> dict[str, Any]:
    """Manual commits only after the effect is durable (at-least-once in)."""
    return {
        "bootstrap.servers": bootstrap,
        "group.id": group_id,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": session_timeout_ms,
        "heartbeat.interval.ms": max(500, session_timeout_ms // 6),
        "group.protocol": "classic",
        "partition.assignment.strategy": "cooperative-sticky",
        **overrides,
    }


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication: int = 1
    config: tuple[tuple[str, str], ...] = ()


def wait_for_broker(bootstrap: str, timeout_s: float = 30.0) -> None:
    """Block until the cluster answers a metadata request, or raise `Retriable`."""
    deadline = time.monotonic() + timeout_s
    _wait_for_port(bootstrap.split(",")[0], deadline)  # spares librdkafka's refusal noise
    admin = AdminClient(admin_config(bootstrap))
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            admin.list_topics(timeout=2)
            return
        except KafkaException as exc:
            last = exc
            time.sleep(0.2)
    raise Retriable(f"Kafka at {bootstrap} did not answer within {timeout_s:.0f}s: {last}")


def acknowledged(
    producer: Producer,
    what: str,
    backoff: Backoff | None = None,
    sleep: Callable[[float], None] = time.sleep,
    wait_s: float = ACK_WAIT_S,
) -> None:
    """Block until the broker acknowledged (or refused) everything `producer` holds.

    A broker that does not answer (paused, restarting, a leader moving) is waited for
    through the shared retry policy, without limit: librdkafka keeps retrying each record
    until its `message.timeout.ms` (5 min by default), after which it reports it failed
    to the delivery callback, so this returns at the latest then. The callers read their
    delivery reports afterwards.
    """

    def flushed() -> None:
        left = producer.flush(wait_s)
        if left:
            raise Retriable(f"{left} {what} not acknowledged within {wait_s:.0f}s")

    retrying_blocking(flushed, backoff=backoff or Backoff(base_s=0.5, cap_s=5.0), sleep=sleep)


def max_message_bytes(bootstrap: str, topic: str, timeout_s: float = 10.0) -> int | None:
    """The largest record batch `topic` accepts (its `max.message.bytes`, else the
    broker's `message.max.bytes`); None when the broker does not say (Tansu answers
    DescribeConfigs with no entries). `Retriable` when it cannot be asked now."""
    admin = AdminClient(admin_config(bootstrap))
    try:
        limit = _config_value(
            admin, ConfigResource(ConfigResource.Type.TOPIC, topic), "max.message.bytes", timeout_s
        )
        if limit is None:
            brokers = list(admin.list_topics(timeout=timeout_s).brokers)
            limit = (
                _config_value(
                    admin,
                    ConfigResource(ConfigResource.Type.BROKER, str(brokers[0])),
                    "message.max.bytes",
                    timeout_s,
                )
                if brokers
                else None
            )
    except (KafkaException, TimeoutError) as exc:
        raise Retriable(f"cannot read the size limit of {topic}: {exc}") from exc
    return limit


def _config_value(
    admin: AdminClient, resource: ConfigResource, name: str, timeout_s: float
) -> int | None:
    future = admin.describe_configs([resource], request_timeout=timeout_s)[resource]
    entry = future.result(timeout_s).get(name)
    return None if entry is None or entry.value is None else int(entry.value)


Ends = dict[tuple[str, int], int]  # (topic, partition) -> next offset after what was written


class GroupProgress:
    """`progress(topic, ends)` of consumer group `group`, asked as often as a caller
    polls: one client kept for all the questions (a client made per question costs ~10
    ms of CPU here and a connection and coordinator lookup on the broker, and waits are
    polled several times a second). A consumer that never subscribes does not join (or
    disturb) the group."""

    def __init__(self, bootstrap: str, group: str) -> None:
        from confluent_kafka import Consumer

        self._consumer = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False}
        )

    def progress(self, topic: str, ends: Ends) -> tuple[int, int]:
        """(records of `topic` committed by the group, records written), up to `ends`.

        Committed offsets are the durable measure of progress: a redelivered record
        counts once, and only after its effect was made durable. `ends` come from the
        producer's delivery reports, not from the broker's high watermarks: Tansu answers
        ListOffsets with the last batch's base offset + 1, which undercounts multi-record
        batches.
        """
        from confluent_kafka import TopicPartition

        mine = {p: end for (t, p), end in ends.items() if t == topic}
        if not mine:
            return 0, 0
        for attempt in range(10):
            try:
                committed = self._consumer.committed(
                    [TopicPartition(topic, p) for p in mine], timeout=10
                )
                break
            except KafkaException:  # NOT_COORDINATOR / loading on a fresh broker
                if attempt == 9:
                    raise
                time.sleep(0.5)
        done = sum(min(max(tp.offset, 0), mine[tp.partition]) for tp in committed)
        return done, sum(mine.values())

    def close(self) -> None:
        self._consumer.close()


def read_topic(
    bootstrap: str, topic: str, idle_s: float = 2.0, ends_within_s: float = 30.0
) -> list[Any]:
    """Every record of `topic` from the beginning: at least up to each partition's end
    when the read began (given `ends_within_s` to get there: a first fetch of many
    partitions can take longer than `idle_s` on some brokers), then until none arrives
    for `idle_s`.

    For inspection (tests, the demo's report, `dlq list`); it joins no group.
    """
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "actions-sync-reader",
            "enable.auto.commit": False,
        }
    )
    records: list[Any] = []
    try:
        meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None:
            return records
        partitions = [TopicPartition(topic, p, 0) for p in meta.partitions]
        try:  # where each partition ends now; an empty one is already there
            ends = {
                tp.partition: consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in partitions
            }
        except KafkaException:  # the broker will not say: read until idle alone
            ends = {}
        behind = {p for p, end in ends.items() if end > 0}
        consumer.assign(partitions)
        started = last = time.monotonic()
        while time.monotonic() - last < idle_s or (
            behind and time.monotonic() - started < ends_within_s
        ):
            msg = consumer.poll(0.2)
            if msg is not None and not msg.error():
                records.append(msg)
                last = time.monotonic()
                partition, offset = msg.partition(), msg.offset()
                if (
                    partition is not None
                    and offset is not None
                    and offset + 1 >= ends.get(partition, 0)
                ):
                    behind.discard(partition)
        return records
    finally:
        consumer.close()


def ends_of(records: Iterable[Any]) -> Ends:
    """Where each partition ends after `records` (messages, e.g. from `read_topic`)."""
    ends: Ends = {}
    for msg in records:
        key = (msg.topic(), msg.partition())
        ends[key] = max(ends.get(key, 0), msg.offset() + 1)
    return ends


def written(bootstrap: str, topics: Iterable[str]) -> Ends:
    """Where each partition of `topics` ends, read from the records themselves (Tansu's
    high watermarks undercount multi-record batches): what a consumer must reach."""
    ends: Ends = {}
    for topic in topics:
        ends.update(ends_of(read_topic(bootstrap, topic, idle_s=1.0)))
    return ends


def _wait_for_port(hostport: str, deadline: float) -> None:
    host, port = hostport.rsplit(":", 1)
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)


def ensure_topics(bootstrap: str, specs: Iterable[TopicSpec], timeout_s: float = 30.0) -> list[str]:
    """Create the topics that are missing; return the names created.

    Pre-creating matters: an auto-created topic gets the broker's partition count, not ours.
    """
    admin = AdminClient(admin_config(bootstrap))
    existing = set(admin.list_topics(timeout=timeout_s).topics)
    missing = [s for s in specs if s.name not in existing]
    if not missing:
        return []
    futures = admin.create_topics(
        [NewTopic(s.name, s.partitions, s.replication, config=dict(s.config)) for s in missing],
        operation_timeout=timeout_s,
    )
    created = []
    for name, future in futures.items():
        try:
            future.result(timeout_s)
            created.append(name)
        except KafkaException as exc:
            err = exc.args[0]
            if err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue  # another worker won the race
            if err.code() == KafkaError.INVALID_REPLICATION_FACTOR:
                raise ConfigError(
                    f"ACTIONS_SYNC_REPLICATION_FACTOR: cannot create {name}: {err.str()}"
                ) from exc
            raise
    _wait_for_metadata(admin, created, timeout_s)
    return created


def _wait_for_metadata(admin: AdminClient, names: list[str], timeout_s: float) -> None:
    """Topic creation is asynchronous; wait until every partition has a leader."""
    deadline = time.monotonic() + timeout_s
    while names and time.monotonic() < deadline:
        topics = admin.list_topics(timeout=5).topics
        if all(n in topics and topics[n].partitions and not topics[n].error for n in names):
            return
        time.sleep(0.1)
