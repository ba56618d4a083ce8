"""Snapshots of the admin settings: from the store's rows, and on the compacted topic.

`actions.settings` holds one record per change under one key, so compaction keeps only
the newest; a reader starting from the beginning has the current settings after one
record. The value is JSON (an internal topic, not part of the producer contract) and
carries the store's revision (the newest audit id): a reader never goes back to an older
snapshot, whatever order two admins' publishes arrive in.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Producer
from pydantic import ValidationError

from actions_sync.admin.model import AdminSettings
from actions_sync.errors import Retriable
from actions_sync.kafka import TopicSpec, acknowledged, ensure_topics, producer_config
from actions_sync.topics import SETTINGS

__all__ = [
    "SETTINGS_KEY",
    "SETTINGS_TOPIC",
    "Versioned",
    "decode",
    "encode",
    "ensure_topic",
    "from_stored",
    "publish",
]

SETTINGS_TOPIC = SETTINGS
SETTINGS_KEY = b"admin-settings"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Versioned:
    settings: AdminSettings
    revision: int


def from_stored(values: Mapping[str, Any]) -> AdminSettings:
    """Settings from stored values; a value no longer valid (or a key no longer known,
    after an upgrade) falls back to its default rather than stopping every agent."""
    current = AdminSettings()
    for key, value in values.items():
        if key not in AdminSettings.model_fields:
            log.warning("ignoring unknown stored admin setting %r", key)
            continue
        try:
            current = AdminSettings.model_validate({**current.model_dump(), key: value})
        except ValidationError as exc:
            log.warning("ignoring stored admin setting %s=%r: %s", key, value, exc)
    return current


def encode(snapshot: Versioned) -> bytes:
    return json.dumps(
        {"revision": snapshot.revision, "settings": snapshot.settings.model_dump(mode="json")}
    ).encode()


def decode(value: bytes) -> Versioned:
    body = json.loads(value)
    return Versioned(from_stored(body["settings"]), int(body["revision"]))


def ensure_topic(bootstrap: str, replication: int = 1) -> None:
    """One partition (one order for every change), compacted (only the newest matters)."""
    ensure_topics(
        bootstrap, [TopicSpec(SETTINGS_TOPIC, 1, replication, (("cleanup.policy", "compact"),))]
    )


def publish(bootstrap: str, snapshot: Versioned, timeout_s: float = 30.0) -> None:
    """Publish the full snapshot; return once the broker acknowledged it. A broker that
    does not answer is waited out through the shared retry policy, for `timeout_s` at
    most (librdkafka's message timeout): the store holds the change either way."""
    failures: list[str] = []
    producer = Producer(
        producer_config(bootstrap, **{"linger.ms": 0, "message.timeout.ms": int(timeout_s * 1000)})
    )
    producer.produce(
        SETTINGS_TOPIC,
        encode(snapshot),
        SETTINGS_KEY,
        on_delivery=lambda err, _msg: failures.append(str(err)) if err else None,
    )
    acknowledged(producer, "settings snapshot")
    if failures:
        raise Retriable(f"settings snapshot not acknowledged by {bootstrap}: {failures[0]}")
