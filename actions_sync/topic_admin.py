"""What people used kcat for, on any broker the product speaks to: `actions-sync tail`
(records decoded as JSON lines) and `actions-sync topics` (ends and consumer-group lag).

Debian's kcat (librdkafka 2.0.2) cannot talk to the embedded Tansu broker (its
ApiVersionRequest fails with "Read underflow"); these use the product's own client
(confluent-kafka's bundled librdkafka) and its Avro deserializer.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Generator, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from actions_sync.errors import UndecodableRecord
from actions_sync.kafka import DLQ_SUFFIX, admin_config
from actions_sync.serialization import Deserializer, RegistryClient
from actions_sync.topics import ALL_TOPICS, RECORD_OF, SETTINGS

__all__ = ["GroupLag", "TopicEnds", "decoded", "project_topics", "tail", "topic_ends"]

POLL_S = 0.2


def _json_default(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return str(value)  # Decimal, UUID


def decoded(msg: Any, decode: Deserializer | None) -> str:
    """One record as a JSON line: position, time, key, headers, and the value decoded from
    Avro (`value`), or its raw bytes as base64 (`value_base64`) for a dead-letter topic, a
    value that does not decode (with `error`) or a topic of no Avro record."""
    raw: Any = msg.headers() or []
    key = msg.key()
    _, millis = msg.timestamp()
    line: dict[str, Any] = {
        "topic": msg.topic(),
        "partition": msg.partition(),
        "offset": msg.offset(),
        "timestamp": datetime.fromtimestamp(millis / 1000, UTC).isoformat(),
        "key": key.decode(errors="replace") if key is not None else None,
        "headers": {k: (v.decode(errors="replace") if v is not None else None) for k, v in raw},
    }
    value = msg.value()
    if value is None:
        line["value"] = None
    elif decode is not None:
        try:
            line["value"] = decode(value)
        except UndecodableRecord as exc:
            line["error"] = str(exc)
            line["value_base64"] = base64.b64encode(value).decode()
    elif msg.topic() == SETTINGS:  # the admin settings snapshot is JSON (internal topic)
        line["value"] = json.loads(value)
    else:
        line["value_base64"] = base64.b64encode(value).decode()
    return json.dumps(line, default=_json_default)


def tail(
    bootstrap: str,
    registry_url: str | None,
    topic: str,
    from_beginning: bool = False,
    key: str | None = None,
    limit: int | None = None,
    stop: threading.Event | None = None,
) -> Generator[str, None, None]:
    """Records of `topic` as JSON lines (see `decoded`), from the end (or the beginning),
    following new ones until `limit` lines or `stop`. Joins no group, commits nothing."""
    record = None if topic.endswith(DLQ_SUFFIX) else RECORD_OF.get(topic)
    registry = RegistryClient(registry_url) if record and registry_url else None
    decode = Deserializer(registry, record) if registry and record else None
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "actions-sync-tail",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
        }
    )
    wanted = key.encode() if key is not None else None
    try:
        meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None:
            raise KafkaException(meta.error if meta else f"no topic {topic}")
        start = OFFSET_BEGINNING if from_beginning else OFFSET_END
        consumer.assign([TopicPartition(topic, p, start) for p in sorted(meta.partitions)])
        shown = 0
        while (limit is None or shown < limit) and not (stop and stop.is_set()):
            msg = consumer.poll(POLL_S)
            if msg is None or msg.error():
                continue
            if wanted is not None and msg.key() != wanted:
                continue
            shown += 1
            yield decoded(msg, decode)
    finally:
        consumer.close()
        if registry is not None:
            registry.close()


@dataclass
class GroupLag:
    """A consumer group's committed offsets on one topic, against the topic's ends."""

    group: str
    committed: dict[int, int]  # partition -> next offset to consume (absent: none committed)
    lag: dict[int, int]  # partition -> records between the committed offset and the end

    @property
    def total(self) -> int:
        return sum(self.lag.values())


@dataclass
class TopicEnds:
    topic: str
    ends: dict[int, int]  # partition -> high watermark (next offset to be written)
    groups: list[GroupLag] = field(default_factory=list)

    @property
    def records(self) -> int:
        return sum(self.ends.values())


def project_topics(bootstrap: str, timeout_s: float = 10.0) -> list[str]:
    """The project's topics (and their dead-letter topics) that exist on the broker."""
    admin = AdminClient(admin_config(bootstrap))
    present = admin.list_topics(timeout=timeout_s).topics
    ours = {name for topic in ALL_TOPICS for name in (topic, topic + DLQ_SUFFIX)}
    return sorted(ours & set(present))


def _groups(admin: AdminClient, timeout_s: float) -> list[str]:
    listed = admin.list_consumer_groups(request_timeout=timeout_s).result(timeout_s)
    return sorted(g.group_id for g in listed.valid)


def topic_ends(
    bootstrap: str,
    topics: Iterable[str],
    groups: Iterable[str] | None = None,
    timeout_s: float = 10.0,
) -> list[TopicEnds]:
    """Each topic's end offsets, and the lag of every consumer group (those the broker
    lists, or `groups`) that committed an offset on it: committed against end, per
    partition. A partition the group never committed counts from its start (0)."""
    admin = AdminClient(admin_config(bootstrap))
    names = list(topics)
    group_ids = list(groups) if groups is not None else _groups(admin, timeout_s)
    meta = admin.list_topics(timeout=timeout_s).topics
    probe = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "actions-sync-topics",
            "enable.auto.commit": False,
        }
    )
    try:
        out = [
            TopicEnds(
                name,
                {
                    p: probe.get_watermark_offsets(TopicPartition(name, p), timeout=timeout_s)[1]
                    for p in sorted(meta[name].partitions)
                },
            )
            for name in names
            if name in meta
        ]
        for group in group_ids:
            # A consumer that never subscribes reads a group's commits without joining it.
            reader = Consumer(
                {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False}
            )
            try:
                for entry in out:
                    asked = [TopicPartition(entry.topic, p) for p in entry.ends]
                    committed = {
                        tp.partition: tp.offset
                        for tp in reader.committed(asked, timeout=timeout_s)
                        if tp.offset >= 0
                    }
                    if committed:
                        entry.groups.append(
                            GroupLag(
                                group,
                                committed,
                                {
                                    p: max(0, end - committed.get(p, 0))
                                    for p, end in entry.ends.items()
                                },
                            )
                        )
            finally:
                reader.close()
        return out
    finally:
        probe.close()
