"""The store's password apart from DATABASE_URL (ACTIONS_SYNC_DATABASE_PASSWORD): a password
with URL-reserved characters reaches PostgreSQL intact (issue 14, item 8). The compose file
gives the same POSTGRES_PASSWORD raw to PostgreSQL and to the workers."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from actions_sync.errors import ConfigError
from actions_sync.settings import Settings, load_settings
from actions_sync.store import Store
from tests.support.postgres import SERVICE_USER, PostgresServer

pytestmark = pytest.mark.postgres

PASSWORD = "p@ss:w/o?r#d%41 ;'\"x"  # every character a URL reserves, and a %-escape


def test_a_password_with_url_reserved_characters_reaches_postgres() -> None:
    role = f"pw_{uuid.uuid4().hex[:8]}"
    with PostgresServer() as server:
        admin = create_engine(server.url)
        with admin.begin() as db:
            quoted = PASSWORD.replace("'", "''")
            db.execute(text(f"CREATE ROLE {role} LOGIN PASSWORD '{quoted}'"))
            db.execute(text(f"GRANT ALL ON SCHEMA public TO {role}"))
        # The test server trusts every local login: this role must give its password.
        hba = server.data_dir / "pg_hba.conf"
        hba.write_text(f"host all {role} 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
        with admin.begin() as db:
            db.execute(text("SELECT pg_reload_conf()"))
        admin.dispose()
        url = server.url.replace(f"//{SERVICE_USER}@", f"//{role}@")

        settings = Settings(database_url=url, database_password=PASSWORD)
        with Store(settings.database_url) as store:
            store.migrate()
            store.apply_people([], [])

        wrong = Settings(database_url=url, database_password=PASSWORD[:-1])
        engine = create_engine(wrong.database_url)
        with pytest.raises(OperationalError, match="password authentication failed"):
            engine.connect().close()
        engine.dispose()


def test_the_password_replaces_one_in_the_url_and_is_refused_for_sqlite(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = Settings(
        database_url="postgresql+psycopg://actions:old@db:5432/actions", database_password=PASSWORD
    )
    assert settings.database_url.startswith("postgresql+psycopg://actions:p%40ss%3Aw%2Fo%3F")
    assert settings.database_url.endswith("@db:5432/actions")
    monkeypatch.setenv("DATABASE_URL", "sqlite:///store.db")
    monkeypatch.setenv("ACTIONS_SYNC_DATABASE_PASSWORD", PASSWORD)
    load_settings.cache_clear()
    try:
        with pytest.raises(ConfigError) as raised:
            load_settings()
    finally:
        load_settings.cache_clear()
    assert str(raised.value) == "ACTIONS_SYNC_DATABASE_PASSWORD is for a PostgreSQL DATABASE_URL"
    assert PASSWORD not in str(raised.value)
