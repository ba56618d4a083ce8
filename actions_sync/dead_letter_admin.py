"""Reading and replaying dead-letter topics (`actions-sync dlq list|replay TOPIC`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

from confluent_kafka import Consumer, Message, Producer

from actions_sync.errors import Retriable
from actions_sync.kafka import acknowledged, consumer_config, dlq_topic, producer_config, read_topic

__all__ = ["describe", "read_dead_letters", "replay_dead_letters"]

REPLAY_GROUP = "actions-sync-dlq-replay"
log = logging.getLogger(__name__)


def describe(msg: Message) -> dict[str, Any]:
    """A dead letter as a flat JSON-able dict: position, key, size and reason headers."""
    raw: Any = msg.headers() or []  # consumed messages carry [(name, bytes | None)]
    headers = {k: (v.decode(errors="replace") if v else "") for k, v in raw}
    key = msg.key()
    return {"partition": msg.partition(), "offset": msg.offset(),
            "key": key.decode(errors="replace") if key else None,
            "value_bytes": len(msg.value() or b""), **headers}


def read_dead_letters(bootstrap: str, topic: str, limit: int = 100) -> Iterator[dict[str, Any]]:
    """The first `limit` dead letters of `topic`, with their reason headers."""
    for msg in read_topic(bootstrap, dlq_topic(topic))[:limit]:
        yield describe(msg)


def replay_dead_letters(bootstrap: str, topic: str, idle_s: float = 3.0) -> int:
    """Publish the not-yet-replayed dead letters of `topic` back to it (not those whose
    value was truncated to fit the dead-letter topic: they stay there, listed).

    Progress is the consumer group `actions-sync-dlq-replay`: its offsets are committed
    only after the broker has acknowledged every replayed record.
    """
    consumer = Consumer(consumer_config(bootstrap, REPLAY_GROUP))
    producer = Producer(producer_config(bootstrap))
    count, last = 0, float("inf")  # the idle clock starts once partitions are assigned
    failures: list[str] = []

    def assigned(*_: Any) -> None:
        nonlocal last
        last = time.monotonic()

    consumer.subscribe([dlq_topic(topic)], on_assign=assigned)
    deadline = time.monotonic() + 60  # a group join takes seconds, not minutes
    try:
        while time.monotonic() - min(last, deadline) < idle_s:
            msg = consumer.poll(0.2)
            if msg is None or msg.error():
                continue
            last = time.monotonic()
            if _truncated(msg):
                log.warning("not replaying %s@%d: its value was truncated to fit the"
                            " dead-letter topic (see `dlq list`)", msg.topic(), msg.offset())
                continue
            producer.produce(topic, msg.value(), msg.key(),
                             headers=[("replayed.from", f"{msg.topic()}@{msg.offset()}".encode())],
                             on_delivery=lambda err, _: failures.append(str(err)) if err else None)
            count += 1
        acknowledged(producer, "replayed records")
        if failures:  # committing now would skip them for good
            raise Retriable(f"{len(failures)} replayed records failed ({failures[0]});"
                            " nothing was committed")
        if count:
            consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    return count


def _truncated(msg: Message) -> bool:
    """A letter cut to fit its topic (`actions_sync.dead_letter`): its bytes are not the
    record's, so publishing them back would only dead-letter them again."""
    raw: Any = msg.headers() or []
    return any(name in ("key.truncated", "value.truncated") for name, _ in raw)
