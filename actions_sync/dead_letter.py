"""The one dead-letter mechanism: a bad record goes to `<topic>.dlq` with its reason.

Headers (DESIGN.md): error.class, error.message, error.stage, source.topic,
source.partition, source.offset. Key and value are the original bytes, untouched, so a
record can be replayed once the cause is fixed (`actions-sync dlq replay TOPIC`) —
except a record too large for its dead-letter topic (the limit is the topic's
`max.message.bytes`, read from the broker, and the producer's `message.max.bytes`): its
value (and, if need be, its key) is cut to fit, and `value.truncated: true` with
`value.original_size` (bytes) say so. Such a record could never be dead-lettered whole,
and retrying it would stop its partition for good.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from actions_sync.errors import Retriable, Skippable
from actions_sync.kafka import (
    LIBRDKAFKA_MESSAGE_MAX,
    acknowledged,
    dlq_topic,
    max_message_bytes,
    producer_config,
)
from actions_sync.metrics import DEAD_LETTERS
from actions_sync.retry import Backoff, retrying_blocking

__all__ = ["HEADERS", "TRUNCATED", "DeadLetter", "DeadLetterProducer", "dead_letter"]

HEADERS = (
    "error.class",
    "error.message",
    "error.stage",
    "source.topic",
    "source.partition",
    "source.offset",
)
TRUNCATED = ("truncated", "original_size")  # `value.truncated`, `value.original_size`
MAX_MESSAGE = 2000  # characters of the error message kept in a header
MIN_LIMIT = 16_384  # bytes: a broker refusing less is misconfigured, not shrunk further
log = logging.getLogger(__name__)


def _room(limit: int) -> int:
    """Bytes of key, value and headers that fit in a record batch of `limit` bytes: the
    rest is framing (batch header 61 bytes, varints) and lz4's worst-case growth of
    incompressible bytes (1/255), since the broker checks the compressed batch."""
    return limit - 1024 - limit // 128


@dataclass(frozen=True)
class DeadLetter:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]

    def header(self, name: str) -> str:
        return dict(self.headers)[name].decode()

    @property
    def size(self) -> int:
        """Bytes of key, value and headers."""
        return (
            len(self.key or b"")
            + len(self.value or b"")
            + sum(len(h) + len(v) for h, v in self.headers)
        )

    def fitted(self, limit: int) -> DeadLetter:
        """This letter, cut to fit a record batch of `limit` bytes: the value first, the
        key too if it alone takes more than half the room."""
        room = _room(limit)
        if self.size <= room:
            return self
        room -= sum(len(h) + len(v) for h, v in self.headers) + 2 * 64  # + cut headers
        key, key_cut = _cut("key", self.key, room // 2)
        value, value_cut = _cut("value", self.value, room - len(key or b""))
        return DeadLetter(self.topic, key, value, self.headers + key_cut + value_cut)


def _cut(
    name: str, data: bytes | None, room: int
) -> tuple[bytes | None, tuple[tuple[str, bytes], ...]]:
    if data is None or len(data) <= room:
        return data, ()
    return data[: max(room, 0)], (
        (f"{name}.{TRUNCATED[0]}", b"true"),
        (f"{name}.{TRUNCATED[1]}", str(len(data)).encode()),
    )


def dead_letter(
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    error: BaseException,
    stage: str | None = None,
) -> DeadLetter:
    """The dead letter for one record of `topic` that failed with `error`."""
    stage = stage or (error.stage if isinstance(error, Skippable) else "process")
    values = (
        type(error).__name__,
        str(error)[:MAX_MESSAGE],
        stage,
        topic,
        str(partition),
        str(offset),
    )
    return DeadLetter(
        dlq_topic(topic),
        key,
        value,
        tuple((h, v.encode()) for h, v in zip(HEADERS, values, strict=True)),
    )


class DeadLetterProducer:
    """Publishes dead letters and returns only when the broker has every one of them.

    Callers commit the source offsets after `send` returns: a record is never lost. A
    broker that does not answer is waited for, and letters it failed are sent again,
    through the shared retry policy (`actions_sync.retry`): `send` does not give up.
    """

    def __init__(
        self,
        bootstrap: str,
        backoff: Backoff | None = None,
        sleep: Callable[[float], None] = time.sleep,
        **config: Any,
    ) -> None:
        settings = producer_config(bootstrap, **{"linger.ms": 5, **config})
        self._bootstrap = bootstrap
        self._local_max = int(settings.get("message.max.bytes", LIBRDKAFKA_MESSAGE_MAX))
        self._limits: dict[str, int] = {}  # DLQ topic -> largest record batch it takes
        self._backoff = backoff or Backoff(base_s=0.5, cap_s=5.0)
        self._sleep = sleep
        self._producer = Producer(settings)

    def send(self, letters: Iterable[DeadLetter]) -> int:
        """Publish `letters`; return their count once the broker acknowledged them all."""
        todo = list(letters)
        count = len(todo)

        def attempt() -> None:
            nonlocal todo
            todo = self._send_once(todo)
            if todo:
                raise Retriable(f"{len(todo)} dead letters not delivered")

        if todo:
            retrying_blocking(attempt, backoff=self._backoff, sleep=self._sleep)
        return count

    def _send_once(self, letters: list[DeadLetter]) -> list[DeadLetter]:
        """Send `letters` in runs that fit one record batch each; return those that
        failed (a letter too large for its topic halves that topic's known limit)."""
        failed: list[DeadLetter] = []
        fitted = [(letter, letter.fitted(self._limit(letter.topic))) for letter in letters]
        room = _room(min(self._limit(letter.topic) for letter in letters))
        for run in _runs(fitted, room):
            for letter, fit in run:
                self._produce(letter, fit, failed)
            acknowledged(self._producer, "dead letters", self._backoff, self._sleep)
        return failed

    def _produce(self, letter: DeadLetter, fit: DeadLetter, failed: list[DeadLetter]) -> None:
        def delivered(err: Any, _msg: Any) -> None:
            if err is None:
                DEAD_LETTERS.labels(letter.topic, letter.header("error.class")).inc()
                return
            log.warning("dead letter to %s failed: %s", letter.topic, err)
            if err.code() == KafkaError.MSG_SIZE_TOO_LARGE:
                self._shrink(letter.topic, fit.size)
            failed.append(letter)

        try:
            self._producer.produce(
                fit.topic, fit.value, fit.key, headers=list(fit.headers), on_delivery=delivered
            )
        except BufferError:  # local queue full: deliver what is queued, then this one
            acknowledged(self._producer, "dead letters", self._backoff, self._sleep)
            self._produce(letter, fit, failed)
        except KafkaException as exc:  # refused locally (e.g. MSG_SIZE_TOO_LARGE)
            delivered(exc.args[0], None)

    def _limit(self, topic: str) -> int:
        """The largest record batch `topic` takes: the broker's word (asked once), capped
        by this producer's own `message.max.bytes`."""
        limit = self._limits.get(topic)
        if limit is None:
            try:
                told = max_message_bytes(self._bootstrap, topic)
            except Retriable as exc:  # asked again next time; the producer's cap till then
                log.warning("%s", exc)
                return self._local_max
            if told is None:
                log.info(
                    "the broker does not say how large a record %s takes: %d bytes"
                    " (the producer's message.max.bytes)",
                    topic,
                    self._local_max,
                )
            limit = self._limits[topic] = min(told or self._local_max, self._local_max)
        return limit

    def _shrink(self, topic: str, refused: int) -> None:
        """The broker refused a letter as too large: it takes less than it said."""
        self._limits[topic] = max(min(self._limit(topic), refused) // 2, MIN_LIMIT)

    def close(self) -> None:
        self._producer.flush(10)


def _runs(
    fitted: list[tuple[DeadLetter, DeadLetter]], room: int
) -> Iterator[list[tuple[DeadLetter, DeadLetter]]]:
    """Consecutive letters whose fitted sizes add up to at most `room`: sent and
    acknowledged one run at a time, no record batch can exceed the topic's limit."""
    run: list[tuple[DeadLetter, DeadLetter]] = []
    size = 0
    for pair in fitted:
        if run and size + pair[1].size > room:
            yield run
            run, size = [], 0
        run.append(pair)
        size += pair[1].size
    if run:
        yield run
