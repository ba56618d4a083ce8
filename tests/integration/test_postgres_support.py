"""tests.support.postgres: a real throwaway PostgreSQL, reachable through SQLAlchemy."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text

from tests.support.postgres import PostgresServer

pytestmark = pytest.mark.postgres


def test_server_round_trip_and_cleanup() -> None:
    with PostgresServer() as pg:
        data_dir = pg.data_dir
        assert data_dir.is_dir()
        engine = create_engine(pg.url)
        try:
            with engine.begin() as conn:
                conn.execute(text("CREATE TABLE people (id int PRIMARY KEY, email text NOT NULL)"))
                conn.execute(
                    text("INSERT INTO people (id, email) VALUES (:id, :email)"),
                    {"id": 1, "email": "ada@example.com"},
                )
            with engine.connect() as conn:
                rows = conn.execute(text("SELECT id, email FROM people")).all()
                database = conn.execute(text("SELECT current_database()")).scalar_one()
        finally:
            engine.dispose()  # close pooled connections before the server goes away

        assert [tuple(row) for row in rows] == [(1, "ada@example.com")]
        assert database == "actions_sync"

    assert not pg.running
    assert not data_dir.exists()
    assert not pg.root.exists()
