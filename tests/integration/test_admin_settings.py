"""Admin settings (SPEC S12) end to end: the CLI against a real store, the audit, the
compacted `actions.settings` topic on a real broker, and LiveSettings following changes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka.admin import (  # type: ignore[attr-defined]  # not in its __all__
    AdminClient,
    ConfigResource,
)
from prometheus_client import REGISTRY

from actions_sync.admin import LiveSettings, set_value
from actions_sync.admin.live import load
from actions_sync.admin.snapshot import SETTINGS_TOPIC, decode
from actions_sync.kafka import admin_config, read_topic
from actions_sync.settings import Settings
from actions_sync.store import Store
from actions_sync.store import admin_settings as stored


def cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`actions-sync settings ...` on a store only (no broker: nothing to publish to)."""
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    env["DATABASE_URL"] = database_url
    return subprocess.run(
        [sys.executable, "-m", "app", "settings", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def wait_until(predicate: Callable[[], object], timeout_s: float = 10.0) -> float:
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout_s, "not within the time limit"
        time.sleep(0.05)
    return time.monotonic() - started


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/store.db"


def test_cli_sets_shows_and_audits_a_setting(sqlite_url: str) -> None:
    changed = cli(sqlite_url, "set", "salesforce_log_calls", "false")
    assert changed.returncode == 0, changed.stderr
    assert changed.stdout.strip() == "salesforce_log_calls: true -> false"
    assert "stored and audited but not published (KAFKA_BOOTSTRAP_SERVERS" in changed.stderr
    shown = cli(sqlite_url, "show")
    assert shown.returncode == 0
    line = next(ln for ln in shown.stdout.splitlines() if "salesforce_log_calls" in ln)
    assert "false" in line and "by cli:" in line
    with Store(sqlite_url) as store:
        [entry] = stored.audit_log(store.engine)
        assert (entry.key, entry.old_value, entry.new_value) == (
            "salesforce_log_calls",
            True,
            False,
        )
        assert entry.changed_by.startswith("cli:")
        assert load(store.engine).settings.salesforce_log_calls is False


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (("set", "no_such_setting", "1"), "valid settings: people_sync"),
        (("set", "salesforce_log_emails", "maybe"), "expected true or false"),
        (("set", "unsubscribe_objects", "Account"), "'Lead' or 'Contact'"),
        (("set", "salesforce_subject_template", "{{nope}}"), "{{activity_type}}"),
    ],
)
def test_cli_rejects_bad_settings_in_one_line(
    sqlite_url: str, args: tuple[str, str, str], names: str
) -> None:
    result = cli(sqlite_url, *args)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and names in result.stderr
    with Store(sqlite_url) as store:
        store.migrate()
        assert stored.audit_log(store.engine) == []  # nothing written


def test_every_change_is_audited_in_order(database_url: str) -> None:
    settings = Settings(database_url=database_url)
    for value in ("Contact", "Lead", "Lead,Contact"):
        set_value(settings, "unsubscribe_objects", value)
    with Store(database_url) as store:
        log = stored.audit_log(store.engine)
        rows = [(e.old_value, e.new_value) for e in reversed(log)]
        assert rows == [
            (["Lead", "Contact"], ["Contact"]),
            (["Contact"], ["Lead"]),
            (["Lead"], ["Lead", "Contact"]),
        ]
        assert stored.read(store.engine).revision == log[0].id


def test_a_change_is_published_compacted_and_live_within_seconds(
    kafka: str, sqlite_url: str
) -> None:
    settings = Settings(kafka_bootstrap_servers=kafka, database_url=sqlite_url)
    set_value(settings, "salesforce_log_replies", "false")
    *_, newest = read_topic(kafka, SETTINGS_TOPIC, idle_s=1.0)  # older runs' on Apache Kafka
    assert decode(newest.value()).settings.salesforce_log_replies is False
    topic = ConfigResource("topic", SETTINGS_TOPIC)
    admin = AdminClient(admin_config(kafka))
    configs = admin.describe_configs([topic])[topic].result(10)
    assert configs["cleanup.policy"].value == "compact"

    with Store(sqlite_url) as store, LiveSettings(store.engine, kafka) as live:
        assert live.current().salesforce_log_replies is False  # read at start
        set_value(settings, "salesforce_log_emails", "false")
        took = wait_until(lambda: not live.current().salesforce_log_emails)
    assert took < 5


def test_the_store_wins_over_a_snapshot_left_by_another_store(kafka: str, tmp_path: Path) -> None:
    elsewhere = Settings(
        kafka_bootstrap_servers=kafka, database_url=f"sqlite:///{tmp_path}/other.db"
    )
    for value in ("false", "true", "false"):  # a higher revision than ours
        set_value(elsewhere, "salesforce_log_emails", value)
    ours = f"sqlite:///{tmp_path}/ours.db"
    with Store(ours) as store:
        store.migrate()
        with LiveSettings(store.engine, kafka) as live:
            time.sleep(1.0)
            assert live.current().salesforce_log_emails is True


def test_without_a_broker_live_settings_follow_the_store(sqlite_url: str) -> None:
    settings = Settings(database_url=sqlite_url)
    with Store(sqlite_url) as store:
        store.migrate()
        with LiveSettings(store.engine, store_every_s=0.2) as live:
            assert live.current().people_sync is False
            set_value(settings, "people_sync", "on")
            wait_until(lambda: live.current().people_sync, timeout_s=5)
            assert (
                REGISTRY.get_sample_value("actions_sync_admin_settings_revision")
                == live.revision
                >= 1
            )  # operators see which workers applied the change
