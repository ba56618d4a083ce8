"""The Publisher's one produce loop, over a fake producer: what it hands librdkafka."""

from __future__ import annotations

from typing import Any

import pytest

import actions_sync.publish as publish
from actions_sync.errors import Retriable
from actions_sync.publish import POLL_EVERY, Publisher
from tests.factories import person_change


class FakeProducer:
    """Records produce calls; `full` of them first raise BufferError (a full queue)."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.sent: list[tuple[Any, ...]] = []
        self.polls: list[float] = []
        self.full = 0
        self.delivered = config["on_delivery"]
        self.unanswered: list[int] = []  # what each flush leaves unacknowledged
        self.errors: list[str] = []  # delivery errors the next flush reports

    def produce(self, topic: str, value: Any = None, key: Any = None, **kw: Any) -> None:
        if self.full:
            self.full -= 1
            raise BufferError("queue full")
        self.sent.append((topic, key, value, kw.get("headers")))

    def poll(self, timeout: float) -> int:
        self.polls.append(timeout)
        return 0

    def flush(self, timeout: float) -> int:
        if self.unanswered:
            return self.unanswered.pop(0)
        for error in self.errors:
            self.delivered(error, None)
        self.errors = []
        return 0


class Registry:
    def register(self, subject: str, schema_text: str) -> int:
        return 5


@pytest.fixture
def publisher(monkeypatch: pytest.MonkeyPatch) -> Publisher:
    monkeypatch.setattr(publish, "Producer", FakeProducer)
    return Publisher("unused:9092", Registry())  # type: ignore[arg-type]


def sent(publisher: Publisher) -> list[tuple[Any, ...]]:
    return publisher._producer.sent  # type: ignore[attr-defined, no-any-return]


def test_records_encoded_ahead_are_sent_as_publish_sends_them(publisher: Publisher) -> None:
    changes = [person_change(n) for n in range(3)]
    publisher.publish("t", "PersonChange", [(str(c["marketo_id"]), c) for c in changes])
    serialize = publisher.serializer("t", "PersonChange")
    encoded = [(str(c["marketo_id"]).encode(), serialize(c)) for c in changes]
    assert publisher.publish_raw("t", iter(encoded)) == 3
    assert sent(publisher)[:3] == sent(publisher)[3:] == [("t", k, v, None) for k, v in encoded]
    assert serialize is publisher.serializer("t", "PersonChange")


def test_a_full_queue_is_waited_out_in_order_with_the_headers(publisher: Publisher) -> None:
    publisher._producer.full = 2  # type: ignore[attr-defined]
    headers: list[tuple[str, str | bytes | None]] = [("error", b"bad")]
    assert publisher.publish_raw("dlq", [(b"1", b"a"), (b"2", b"b")], headers) == 2
    assert sent(publisher) == [("dlq", b"1", b"a", headers), ("dlq", b"2", b"b", headers)]
    assert publisher._producer.polls == [0.05, 0.05]  # type: ignore[attr-defined]


def test_delivery_reports_are_served_every_few_hundred_records_across_calls(
    publisher: Publisher,
) -> None:
    for _ in range(3):
        publisher.publish_raw("t", [(b"k", b"v")] * (POLL_EVERY // 2 + 1))
    assert publisher._producer.polls == [0]  # type: ignore[attr-defined]


def test_progress_is_reported_by_thousands_then_the_rest(publisher: Publisher) -> None:
    seen: list[int] = []
    changes = [(str(n), person_change(n)) for n in range(2500)]
    assert publisher.publish("t", "PersonChange", changes, seen.append) == 2500
    assert seen == [1000, 1000, 500]


def test_flush_waits_out_a_broker_that_does_not_answer_by_the_shared_policy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(publish, "Producer", FakeProducer)
    sleeps: list[float] = []
    publisher = Publisher("unused:9092", Registry(), sleep=sleeps.append)  # type: ignore[arg-type]
    publisher._producer.unanswered = [3, 3]  # type: ignore[attr-defined]
    publisher.flush()
    assert len(sleeps) == 2


def test_a_failed_delivery_is_reported_by_one_flush_not_every_later_one(
    publisher: Publisher,
) -> None:
    publisher._producer.errors = ["MSG_TIMED_OUT"]  # type: ignore[attr-defined]
    with pytest.raises(Retriable, match="1 records failed: MSG_TIMED_OUT"):
        publisher.flush()
    publisher.flush()  # the caller sent them again: nothing left to report
