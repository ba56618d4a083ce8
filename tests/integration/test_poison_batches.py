"""A poison batch never stalls a partition, and a store outage is retried visibly: the
people worker process on a real broker and a PostgreSQL server of its own (issue 10,
item 5). The shared mechanism is `streams.pipeline` (unit-tested in
tests/unit/streams/test_pipeline.py)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text

from actions_sync.kafka import Ends, ensure_topics, read_topic
from actions_sync.settings import Settings
from actions_sync.store import Store
from actions_sync.store import parked as parking
from actions_sync.topics import PERSON_CHANGES, SALES_ACTIVITIES, specs
from app.stack import Stack, scrape_sum
from streams.rules.people import person_row
from tests.factories import person_change, sales_activity
from tests.integration.test_activities_end_to_end import Topics
from tests.integration.test_people_end_to_end import dead_letter_headers, publish
from tests.support.checks import present
from tests.support.postgres import PostgresServer

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

POISON = 910_001  # the store refuses this person's row (a trigger), not as an outage
RETRIES = "actions_sync_batch_retries_total"


@pytest.fixture
def pg() -> Iterator[PostgresServer]:
    """A PostgreSQL of this test's own: it is stopped and started again."""
    with PostgresServer() as server:
        yield server


def refuse_person(url: str, marketo_id: int, table: str = "persons") -> None:
    """A trigger that refuses one person's rows of `table` with SQLSTATE P0001 (not an
    outage)."""
    engine = create_engine(url)
    with engine.begin() as db:
        db.execute(
            text(f"""
            CREATE FUNCTION refuse_poison() RETURNS trigger AS $$
            BEGIN
                IF NEW.marketo_id = {marketo_id} THEN
                    RAISE EXCEPTION 'row refused for person %', NEW.marketo_id;
                END IF;
                RETURN NEW;
            END $$ LANGUAGE plpgsql""")
        )
        db.execute(
            text(
                f"CREATE TRIGGER refuse_poison BEFORE INSERT OR UPDATE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION refuse_poison()"
            )
        )
    engine.dispose()


def test_a_poison_record_is_dead_lettered_and_a_store_outage_retried(
    kafka: str, registry: str, pg: PostgresServer
) -> None:
    settings = Settings(
        kafka_bootstrap_servers=kafka,
        schema_registry_url=registry,
        database_url=pg.url,
        group_prefix=f"t-{uuid.uuid4().hex[:8]}",
    )
    ensure_topics(kafka, specs((PERSON_CHANGES,), settings.partitions))
    with Store(pg.url) as store:
        store.migrate()
    refuse_person(pg.url, POISON)
    first = [(str(i), person_change(i, 1)) for i in range(1, 201)]
    first.insert(100, (str(POISON), person_change(POISON, 1)))
    ends: Ends = {}
    publish(kafka, registry, first, ends)

    with Stack(settings) as stack:
        worker = stack.add_worker("people", {"ACTIONS_SYNC_BATCH_ATTEMPTS": "2"})
        stack.wait_drained("people", PERSON_CHANGES, ends, timeout_s=120)
        letters = dead_letter_headers(kafka)
        assert {(h["source.partition"], h["source.offset"]) for h in letters} == {
            poison_position(kafka)
        }
        assert {(h["error.stage"], h["error.class"]) for h in letters} == {
            ("write", "ProgrammingError")
        }  # P0001, not an outage
        assert "row refused for person 910001" in letters[0]["error.message"]
        with Store(pg.url) as store:
            assert store.person(POISON) is None
            assert all(store.person(i) is not None for i in range(1, 201))

        # A 20 s outage: retried without end, counted, and nothing lost.
        pg.halt()
        resumed = threading.Timer(20, pg.resume)
        resumed.start()
        try:
            second = [
                (str(i), person_change(i, 2, title="after the outage")) for i in range(1, 201)
            ]
            publish(kafka, registry, second, ends)
            deadline = time.monotonic() + 60
            while scrape_sum([worker.metrics_url], RETRIES) == 0:
                assert time.monotonic() < deadline, "no batch retry counted"
                time.sleep(0.5)
        finally:
            resumed.join()
        stack.wait_drained("people", PERSON_CHANGES, ends, timeout_s=120)
        stack.check_workers()
        assert scrape_sum([worker.metrics_url], RETRIES) > 0
        assert "outage: retried until it ends" in worker.log.read_text()
    with Store(pg.url) as store:
        assert all(present(store.person(i))["title"] == "after the outage" for i in range(1, 201))
    assert len(dead_letter_headers(kafka)) == len(letters)  # the outage dead-lettered nothing


def poison_position(kafka: str) -> tuple[str, str]:
    """Where the broker put the poison record (its key is its Marketo ID)."""
    found = [m for m in read_topic(kafka, PERSON_CHANGES) if m.key() == str(POISON).encode()]
    assert len(found) == 1
    return str(found[0].partition()), str(found[0].offset())


def test_the_activity_router_dead_letters_a_poison_activity_and_moves_on(
    kafka: str, registry: str, pg: PostgresServer
) -> None:
    """The same mechanism in the router: an activity whose parking the store refuses."""
    settings = Settings(
        kafka_bootstrap_servers=kafka,
        schema_registry_url=registry,
        database_url=pg.url,
        group_prefix=f"t-{uuid.uuid4().hex[:8]}",
    )
    ensure_topics(kafka, specs((SALES_ACTIVITIES,), settings.partitions))
    known = [person_row(person_change(i, 1, sfdc_contact_id=f"003{i}")) for i in range(1, 41)]
    with Store(pg.url) as store:
        store.migrate()
        store.apply_people(known, [])
    refuse_person(pg.url, POISON, table="parked_activities")
    routed = [sales_activity("SEND_SALES_EMAIL", i % 40 + 1) for i in range(150)]
    parked = [sales_activity("SEND_SALES_EMAIL", 920_000 + i) for i in range(20)]
    poison = sales_activity("SEND_SALES_EMAIL", POISON)
    topics = Topics(kafka, registry)
    try:
        topics.publish(routed[:75] + parked[:10] + [poison] + parked[10:] + routed[75:])
        with Stack(settings) as stack:
            stack.add_worker("activities", {"ACTIONS_SYNC_BATCH_ATTEMPTS": "2"})
            stack.wait_drained("activities", SALES_ACTIVITIES, topics.ends, timeout_s=120)
            letters = list(topics.dead().values())
            assert [(h["error.stage"], h["error.class"]) for h in letters] == [
                ("write", "ProgrammingError")
            ]
            assert "row refused for person 910001" in letters[0]["error.message"]
            assert {a["activity_id"] for a in routed} <= set(topics.marketo())
            with Store(pg.url) as store:
                assert parking.count(store.engine) == len(parked)
    finally:
        topics.close()
