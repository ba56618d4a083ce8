"""Reading and replaying dead-letter topics (`actions-sync dlq list|replay TOPIC`)."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from confluent_kafka import Consumer, Message, Producer, TopicPartition

from actions_sync.errors import ConfigError, Retriable
from actions_sync.kafka import acknowledged, consumer_config, dlq_topic, producer_config, read_topic

__all__ = ["Selection", "describe", "parse_since", "read_dead_letters", "replay_dead_letters"]

REPLAY_GROUP = "actions-sync-dlq-replay"
log = logging.getLogger(__name__)
_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """`--since`: an ISO 8601 time (UTC unless it says otherwise) or an age: 30m, 2h, 1d."""
    if match := _DURATION.match(text.strip()):
        seconds = int(match.group(1)) * _UNIT_S[match.group(2)]
        return (now or datetime.now(UTC)) - timedelta(seconds=seconds)
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(
            f"--since {text!r}: expected an ISO 8601 time"
            " (2026-12-02T08:00:00Z) or an age (30m, 2h, 1d)"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Selection:
    """Which dead letters a command takes: every one by default."""

    reason: str | None = None  # in error.class or error.message, any case
    key: str | None = None  # the record key, exactly
    since: datetime | None = None  # dead-lettered at or after
    positions: frozenset[tuple[int, int]] | None = None  # (partition, offset): the page's picks

    def __call__(self, letter: dict[str, Any]) -> bool:
        reason = f"{letter.get('error.class', '')}: {letter.get('error.message', '')}"
        return (
            (self.reason is None or self.reason.lower() in reason.lower())
            and (self.key is None or letter["key"] == self.key)
            and (
                self.since is None
                or datetime.fromisoformat(letter["dead_lettered_at"]) >= self.since
            )
            and (
                self.positions is None or (letter["partition"], letter["offset"]) in self.positions
            )
        )


def describe(msg: Message) -> dict[str, Any]:
    """A dead letter as a flat JSON-able dict: position, key, time, size and reason headers."""
    raw: Any = msg.headers() or []  # consumed messages carry [(name, bytes | None)]
    headers = {k: (v.decode(errors="replace") if v else "") for k, v in raw}
    key = msg.key()
    _, millis = msg.timestamp()
    return {
        "partition": msg.partition(),
        "offset": msg.offset(),
        "key": key.decode(errors="replace") if key else None,
        "dead_lettered_at": datetime.fromtimestamp(millis / 1000, UTC).isoformat(),
        "value_bytes": len(msg.value() or b""),
        **headers,
    }


def read_dead_letters(
    bootstrap: str, topic: str, limit: int = 100, selection: Selection = Selection()
) -> Iterator[dict[str, Any]]:
    """The first `limit` dead letters of `topic` that `selection` takes, with reasons."""
    letters = (describe(msg) for msg in read_topic(bootstrap, dlq_topic(topic)))
    for count, letter in enumerate(filter(selection, letters)):
        if count >= limit:
            return
        yield letter


def replay_dead_letters(
    bootstrap: str,
    topic: str,
    selection: Selection = Selection(),
    dry_run: bool = False,
    idle_s: float = 3.0,
) -> list[dict[str, Any]]:
    """Publish the not-yet-replayed dead letters of `topic` that `selection` takes back to
    it; return them (with `dry_run`, only say which they would be). Letters whose value
    was truncated to fit the dead-letter topic are not replayed: they stay there, listed.

    Progress is the consumer group `actions-sync-dlq-replay`: its offsets are committed
    only after the broker has acknowledged every replayed record, and in each partition
    only up to the first letter the selection skipped, so that skipped letters stay
    replayable. (A letter replayed after a skipped one may be replayed again by a later
    replay: the flows apply a record twice as once — versions, the delivery ledger.)
    """
    consumer = Consumer(consumer_config(bootstrap, REPLAY_GROUP))
    producer = Producer(producer_config(bootstrap))
    replayed: list[dict[str, Any]] = []
    done: dict[int, int] = {}  # partition -> offset after its replayed prefix
    skipped: set[int] = set()  # partitions where a letter was skipped
    last = float("inf")  # the idle clock starts once partitions are assigned
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
            last, letter = time.monotonic(), describe(msg)
            partition, offset = letter["partition"], letter["offset"]
            if not selection(letter) or _truncated(msg):
                if _truncated(msg):
                    log.warning(
                        "not replaying %s@%d: its value was truncated to fit the"
                        " dead-letter topic (see `dlq list`)",
                        msg.topic(),
                        offset,
                    )
                skipped.add(partition)
                continue
            replayed.append(letter)
            if partition not in skipped:
                done[partition] = offset + 1
            if not dry_run:
                producer.produce(
                    topic,
                    msg.value(),
                    msg.key(),
                    headers=[("replayed.from", f"{msg.topic()}/{partition}@{offset}".encode())],
                    on_delivery=lambda err, _: failures.append(str(err)) if err else None,
                )
        acknowledged(producer, "replayed records")
        if failures:  # committing now would skip them for good
            raise Retriable(
                f"{len(failures)} replayed records failed ({failures[0]}); nothing was committed"
            )
        if done and not dry_run:
            consumer.commit(
                offsets=[
                    TopicPartition(dlq_topic(topic), partition, offset)
                    for partition, offset in done.items()
                ],
                asynchronous=False,
            )
    finally:
        consumer.close()
    return replayed


def _truncated(msg: Message) -> bool:
    """A letter cut to fit its topic (`actions_sync.dead_letter`): its bytes are not the
    record's, so publishing them back would only dead-letter them again."""
    raw: Any = msg.headers() or []
    return any(name in ("key.truncated", "value.truncated") for name, _ in raw)
