"""The embedded broker (Tansu) and topic administration."""

from __future__ import annotations

import subprocess
import time

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from actions_sync.kafka import admin_config, consumer_config, ensure_topics, producer_config
from actions_sync.topics import INPUT_TOPICS, specs
from app.broker import EmbeddedBroker, tansu_binary


def tansu_processes(bootstrap: str) -> int:
    """Tansu processes listening on `bootstrap` (other tests run brokers of their own)."""
    pattern = f"^{tansu_binary()} .*--listener-url tcp://{bootstrap}( |$)"  # not its guard
    out = subprocess.run(["pgrep", "-fc", pattern], capture_output=True, text=True)
    return int(out.stdout.strip() or 0)


def test_embedded_broker_starts_and_stops_without_orphans() -> None:
    with EmbeddedBroker() as broker:
        assert broker.bootstrap.startswith("127.0.0.1:")
        assert tansu_processes(broker.bootstrap) == 1
    assert tansu_processes(broker.bootstrap) == 0


def test_topics_and_their_dead_letter_topics_get_our_partition_count(kafka: str) -> None:
    created = ensure_topics(kafka, specs(INPUT_TOPICS, partitions=8))
    topics = AdminClient(admin_config(kafka)).list_topics(timeout=10).topics
    assert len(created) == 2 * len(INPUT_TOPICS)
    assert all(len(topics[name].partitions) == 8 for name in created)
    assert "marketo.person.changes.dlq" in created
    assert ensure_topics(kafka, specs(INPUT_TOPICS, partitions=8)) == []


def test_group_join_is_fast_with_the_default_session_timeout(kafka: str) -> None:
    ensure_topics(kafka, specs(("marketo.person.changes",), partitions=8))
    producer = Producer(producer_config(kafka))
    for i in range(100):
        producer.produce("marketo.person.changes", b"v", str(i).encode())
    assert producer.flush(10) == 0
    consumer = Consumer(consumer_config(kafka, "join-test"))
    consumer.subscribe(["marketo.person.changes"])
    started, seen = time.monotonic(), 0
    try:
        while seen < 100 and time.monotonic() - started < 30:
            msg = consumer.poll(0.5)
            seen += msg is not None and not msg.error()
    finally:
        consumer.close()
    assert seen == 100
    # ~3 s with session.timeout.ms=6000 versus ~23 s with librdkafka's default
    assert time.monotonic() - started < 15


@pytest.mark.parametrize("bad", ["localhost", "host:port", ""])
def test_bad_bootstrap_setting_is_one_line_exit_2(bad: str) -> None:
    from tests.integration.test_cli import run_cli

    result = run_cli("dlq", "list", "marketo.person.changes", env={"KAFKA_BOOTSTRAP_SERVERS": bad})
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "KAFKA_BOOTSTRAP_SERVERS" in result.stderr
