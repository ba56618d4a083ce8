"""Wiring of a stream worker (`streams.app`): the batch setting each worker runs on."""

from __future__ import annotations

import pytest

from actions_sync.settings import Settings
from streams.app import create_app


def test_the_router_has_a_batch_setting_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACTIONS_SYNC_ROUTER_BATCH_SIZE", "30000")
    settings = Settings(kafka_bootstrap_servers="127.0.0.1:9092")
    assert settings.router_batch_size == 30_000 and settings.people_batch == 20_000
    app = create_app(settings, "activities", settings.router_batch_size)
    assert app.conf.broker_max_poll_records == 30_000  # fetches fill its batches


def test_unset_the_router_runs_on_the_people_batch_size_as_before(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("ACTIONS_SYNC_ROUTER_BATCH_SIZE", raising=False)
    settings = Settings(kafka_bootstrap_servers="127.0.0.1:9092", people_batch_size=700)
    assert settings.router_batch_size is None
    app = create_app(settings, "activities", settings.router_batch_size)
    assert app.conf.broker_max_poll_records == 700


def test_the_people_batch_is_the_stores_unless_set() -> None:
    """20,000 on SQLite (faster in larger transactions), 5,000 on PostgreSQL (as fast,
    and a worker holds ~100 MB less: bench/RESULTS.md, issue 15)."""
    kafka = "127.0.0.1:9092"
    sqlite = Settings(kafka_bootstrap_servers=kafka, database_url="sqlite:///x.db")
    pg = Settings(kafka_bootstrap_servers=kafka, database_url="postgresql+psycopg://h/db")
    assert (sqlite.people_batch, pg.people_batch) == (20_000, 5_000)
    assert create_app(pg, "people").conf.broker_max_poll_records == 5_000
    chosen = Settings(
        kafka_bootstrap_servers=kafka, database_url=pg.database_url, people_batch_size=700
    )
    assert chosen.people_batch == 700
