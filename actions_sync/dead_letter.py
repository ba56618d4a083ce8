"""The one dead-letter mechanism: a bad record goes to `<topic>.dlq` with its reason.

Headers (DESIGN.md): error.class, error.message, error.stage, source.topic,
source.partition, source.offset. Key and value are the original bytes, untouched, so a
record can be replayed once the cause is fixed (`actions-sync dlq replay TOPIC`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Producer

from actions_sync.errors import Retriable, Skippable
from actions_sync.kafka import dlq_topic, producer_config
from actions_sync.metrics import DEAD_LETTERS

__all__ = ["HEADERS", "DeadLetter", "DeadLetterProducer", "dead_letter"]

HEADERS = (
    "error.class", "error.message", "error.stage",
    "source.topic", "source.partition", "source.offset",
)
MAX_MESSAGE = 2000  # characters of the error message kept in a header


@dataclass(frozen=True)
class DeadLetter:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]

    def header(self, name: str) -> str:
        return dict(self.headers)[name].decode()


def dead_letter(
    topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None,
    error: BaseException, stage: str | None = None,
) -> DeadLetter:
    """The dead letter for one record of `topic` that failed with `error`."""
    stage = stage or (error.stage if isinstance(error, Skippable) else "process")
    values = (type(error).__name__, str(error)[:MAX_MESSAGE], stage, topic, str(partition),
              str(offset))
    return DeadLetter(dlq_topic(topic), key, value,
                      tuple((h, v.encode()) for h, v in zip(HEADERS, values, strict=True)))


class DeadLetterProducer:
    """Publishes dead letters and returns only when the broker has every one of them.

    Callers commit the source offsets after `send` returns: a record is never lost.
    """

    def __init__(self, bootstrap: str, **config: Any) -> None:
        self._producer = Producer(producer_config(bootstrap, **{"linger.ms": 5, **config}))

    def send(self, letters: Iterable[DeadLetter], timeout_s: float = 30.0) -> int:
        failures: list[str] = []

        def delivered(err: Any, _msg: Any) -> None:
            if err is not None:
                failures.append(str(err))

        count = 0
        for letter in letters:
            self._producer.produce(letter.topic, letter.value, letter.key,
                                   headers=list(letter.headers), on_delivery=delivered)
            DEAD_LETTERS.labels(letter.topic, letter.header("error.class")).inc()
            count += 1
        if count and self._producer.flush(timeout_s) > 0:
            raise Retriable(f"dead letters not acknowledged within {timeout_s}s")
        if failures:
            raise Retriable(f"dead-letter delivery failed: {failures[0]}")
        return count

    def close(self) -> None:
        self._producer.flush(10)
