"""Reading and replaying dead-letter topics (`actions-sync dlq list|replay TOPIC`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from confluent_kafka import Consumer, Message, TopicPartition

from actions_sync.kafka import consumer_config, dlq_topic, producer_config

__all__ = ["read_dead_letters", "replay_dead_letters"]

REPLAY_GROUP = "actions-sync-dlq-replay"


def _drain(consumer: Consumer, topic: str) -> Iterator[Message]:
    """Every message of `topic` from the consumer's position up to the current end."""
    meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
    if meta is None or meta.error is not None:
        return
    ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in meta.partitions}
    consumer.subscribe([topic])
    pending = {p for p, end in ends.items() if end > 0}
    idle = 0
    while pending and idle < 20:
        msg = consumer.poll(0.5)
        if msg is None:
            idle += 1
            pending = {p for p in pending
                       if (pos := consumer.position([TopicPartition(topic, p)])[0].offset) < 0
                       or pos < ends[p]}
            continue
        idle = 0
        if msg.error():
            continue
        yield msg
        if msg.offset() + 1 >= ends[msg.partition()]:
            pending.discard(msg.partition())


def _describe(msg: Message) -> dict[str, Any]:
    headers = {k: (v.decode(errors="replace") if v else "") for k, v in msg.headers() or []}
    return {"partition": msg.partition(), "offset": msg.offset(),
            "key": msg.key().decode(errors="replace") if msg.key() else None,
            "value_bytes": len(msg.value() or b""), **headers}


def read_dead_letters(bootstrap: str, topic: str, limit: int = 100) -> Iterator[dict[str, Any]]:
    """The first `limit` dead letters of `topic`, with their reason headers."""
    consumer = Consumer(consumer_config(bootstrap, "actions-sync-dlq-reader"))
    try:
        for count, msg in enumerate(_drain(consumer, dlq_topic(topic))):
            if count >= limit:
                break
            yield _describe(msg)
    finally:
        consumer.close()


def replay_dead_letters(bootstrap: str, topic: str) -> int:
    """Publish not-yet-replayed dead letters back to `topic`; commit after each delivery."""
    from confluent_kafka import Producer

    consumer = Consumer(consumer_config(bootstrap, REPLAY_GROUP))
    producer = Producer(producer_config(bootstrap))
    count = 0
    try:
        for msg in _drain(consumer, dlq_topic(topic)):
            producer.produce(topic, msg.value(), msg.key(),
                             headers=[("replayed.from", f"{msg.topic()}@{msg.offset()}".encode())])
            count += 1
        if producer.flush(30) == 0 and count:
            consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    return count
