"""Wiring of a stream worker (`streams.app`): the batch setting each worker runs on."""

from __future__ import annotations

import pytest

from actions_sync.settings import Settings
from streams.app import create_app


def test_the_router_has_a_batch_setting_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACTIONS_SYNC_ROUTER_BATCH_SIZE", "30000")
    settings = Settings(kafka_bootstrap_servers="127.0.0.1:9092")
    assert settings.router_batch_size == 30_000 and settings.people_batch_size == 20_000
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
