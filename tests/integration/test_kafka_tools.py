"""`actions-sync tail` and `actions-sync topics` (what people used kcat for), end to end on
the real broker: records published with the product's own publisher, read back by the CLI
as a real process."""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import sys
import threading
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from actions_sync.kafka import dlq_topic, ensure_topics
from actions_sync.publish import Publisher
from actions_sync.serialization import RegistryClient
from actions_sync.topics import PERSON_CHANGES, specs
from tests.factories import person_change
from tests.integration.test_cli import run_cli
from tests.support.checks import present

pytestmark = pytest.mark.broker


def _publish_people(kafka: str, registry: str, ids: list[int]) -> None:
    client = RegistryClient(registry)
    try:
        publisher = Publisher(kafka, client)
        publisher.publish(
            PERSON_CHANGES,
            "PersonChange",
            [(str(i), person_change(i, first_name=f"P{i}")) for i in ids],
        )
        publisher.flush()
    finally:
        client.close()


def _lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def test_tail_prints_records_decoded_from_avro_with_their_position_and_headers(
    kafka: str, registry: str
) -> None:
    ensure_topics(kafka, specs((PERSON_CHANGES,), 2))
    _publish_people(kafka, registry, [1, 2, 3])
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka, "SCHEMA_REGISTRY_URL": registry}

    result = run_cli("tail", PERSON_CHANGES, "--from-beginning", "--max", "3", env=env)
    assert result.returncode == 0, result.stderr
    records = sorted(_lines(result.stdout), key=lambda r: r["key"])
    assert [r["key"] for r in records] == ["1", "2", "3"]
    assert [r["value"]["first_name"] for r in records] == ["P1", "P2", "P3"]
    assert [r["value"]["marketo_id"] for r in records] == [1, 2, 3]
    assert all(
        r["topic"] == PERSON_CHANGES
        and r["partition"] in (0, 1)
        and r["offset"] >= 0
        and isinstance(r["headers"], dict)
        for r in records
    )

    only = run_cli("tail", PERSON_CHANGES, "--from-beginning", "--key", "2", "--max", "1", env=env)
    assert [r["value"]["marketo_id"] for r in _lines(only.stdout)] == [2]


def test_tail_prints_dead_letters_raw_as_base64_with_their_reason_headers(
    kafka: str, registry: str
) -> None:
    ensure_topics(kafka, specs((PERSON_CHANGES,), 1))
    producer = Producer({"bootstrap.servers": kafka})
    producer.produce(
        dlq_topic(PERSON_CHANGES),
        b"\x00not avro",
        key=b"7",
        headers=[("error.class", b"UndecodableRecord"), ("error.stage", b"decode")],
    )
    producer.flush(30)
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka, "SCHEMA_REGISTRY_URL": registry}

    result = run_cli("tail", dlq_topic(PERSON_CHANGES), "--from-beginning", "--max", "1", env=env)
    [letter] = _lines(result.stdout)
    assert base64.b64decode(letter["value_base64"]) == b"\x00not avro"
    assert letter["key"] == "7" and "value" not in letter
    assert letter["headers"] == {"error.class": "UndecodableRecord", "error.stage": "decode"}


def test_tail_follows_new_records_and_ends_cleanly_on_ctrl_c(kafka: str, registry: str) -> None:
    ensure_topics(kafka, specs((PERSON_CHANGES,), 2))
    _publish_people(kafka, registry, [1])
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka, "SCHEMA_REGISTRY_URL": registry}
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "tail", PERSON_CHANGES, "--from-beginning"],
        env={**_clean_env(), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = _readline(proc, timeout_s=60)
        assert json.loads(first)["key"] == "1"
        _publish_people(kafka, registry, [2])  # published while it follows
        assert json.loads(_readline(proc, timeout_s=60))["key"] == "2"
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "Traceback" not in err, err


def test_topics_shows_end_offsets_and_each_groups_lag_per_partition(kafka: str) -> None:
    ensure_topics(kafka, specs((PERSON_CHANGES,), 2))
    producer = Producer({"bootstrap.servers": kafka, "linger.ms": 0})
    for partition, count in ((0, 3), (1, 2)):
        for n in range(count):  # one record a batch: a broker's ends count records exactly
            producer.produce(PERSON_CHANGES, b"v", key=b"k%d" % n, partition=partition)
            producer.flush(30)
    group = "actions-sync-topics-test"
    committer = Consumer(
        {"bootstrap.servers": kafka, "group.id": group, "enable.auto.commit": False}
    )
    try:  # committed without joining: 1 of partition 0's 3 records, both of partition 1's
        committer.commit(
            offsets=[TopicPartition(PERSON_CHANGES, 0, 1), TopicPartition(PERSON_CHANGES, 1, 2)],
            asynchronous=False,
        )
    finally:
        committer.close()
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka}

    result = run_cli("topics", "--json", env=env)
    assert result.returncode == 0, result.stderr
    by_topic = {entry["topic"]: entry for entry in _lines(result.stdout)}
    assert set(by_topic) >= {PERSON_CHANGES, dlq_topic(PERSON_CHANGES)}
    entry = by_topic[PERSON_CHANGES]
    assert entry["partitions"] == 2 and entry["ends"] == {"0": 3, "1": 2}
    [ours] = [g for g in entry["groups"] if g["group"] == group]
    assert ours["lag"] == 2 and ours["lag_by_partition"] == {"0": 2, "1": 0}
    assert ours["committed"] == {"0": 1, "1": 2}
    assert by_topic[dlq_topic(PERSON_CHANGES)]["groups"] == []  # nobody committed there

    text = run_cli("topics", env=env).stdout
    assert f"{PERSON_CHANGES}  partitions 2  end offsets 5 (0:3 1:2)" in text
    assert f"  group {group}  lag 2 (0:2 1:0)" in text


def _clean_env() -> dict[str, str]:
    import os

    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ACTIONS_SYNC_")
        and k not in ("KAFKA_BOOTSTRAP_SERVERS", "SCHEMA_REGISTRY_URL")
    }


def _readline(proc: subprocess.Popen[str], timeout_s: float) -> str:
    """The next line of the process's stdout, or fail after `timeout_s`."""
    got: list[str] = []
    out = present(proc.stdout)
    reader = threading.Thread(target=lambda: got.append(out.readline()), daemon=True)
    reader.start()
    reader.join(timeout_s)
    assert got and got[0], f"no line within {timeout_s}s"
    return got[0]
