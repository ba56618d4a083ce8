"""The settings of a test's own stack, made one way."""

from __future__ import annotations

import uuid
from pathlib import Path

from actions_sync.kafka import ensure_topics
from actions_sync.settings import Settings
from actions_sync.topics import specs


def stack_settings(kafka: str, registry: str, tmp_path: Path, topics: tuple[str, ...]) -> Settings:
    """A SQLite store in `tmp_path`, consumer groups of the test's own, and `topics`
    created (with their dead-letter topics) at the stack's partition count. On a broker
    the tests share, the `kafka` fixture has deleted every project topic already."""
    settings = Settings(
        kafka_bootstrap_servers=kafka,
        schema_registry_url=registry,
        database_url=f"sqlite:///{tmp_path}/store.db",
        group_prefix=f"t-{uuid.uuid4().hex[:8]}",
    )
    ensure_topics(kafka, specs(topics, settings.partitions))
    return settings
