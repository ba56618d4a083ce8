"""Shared fixtures: a real broker, the registry sandbox, real databases.

- `kafka`: a fresh Tansu broker per test; or, with ACTIONS_SYNC_TEST_BROKER=apache (the
  Apache Kafka tier of `make test`), an Apache Kafka broker per session (per xdist
  worker), or the cluster KAFKA_BOOTSTRAP_SERVERS names, with the project's topics
  deleted before each test.
- `registry`: the schema-registry sandbox over real HTTP.
- `postgres`: one PostgreSQL server per session, i.e. per worker under pytest-xdist
  (initdb in a temp dir); in CI a missing PostgreSQL fails the run instead of skipping.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from hypothesis import settings

from actions_sync.kafka import admin_config, dlq_topic
from actions_sync.topics import RECORD_OF, SETTINGS
from app.broker import EmbeddedBroker
from sandboxes.base import SandboxServer
from sandboxes.registry import create_app as registry_app

if TYPE_CHECKING:
    from tests.support.postgres import PostgresServer

# No per-example deadline: the suite shares 2 cores between its tiers, and an example that
# waits for a core is not a failure (speed is measured in bench/, never in a test). A test
# that bounds its own inputs' time says so with its own deadline.
settings.register_profile("actions-sync", deadline=None)
# The floors tier (scripts/floors sets HYPOTHESIS_PROFILE=floors) proves that the code runs
# on the lowest allowed library versions, not the properties over again: the Tansu tier
# runs every test with all its examples. A few examples per property walk the same code;
# a test's own larger max_examples is capped too (pytest_collection_modifyitems).
FLOORS_EXAMPLES = 10
settings.register_profile("floors", deadline=None, max_examples=FLOORS_EXAMPLES)
HYPOTHESIS_PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "actions-sync")
settings.load_profile(HYPOTHESIS_PROFILE)

# A shell starts a background job (`make test &`, nohup) with SIGINT ignored, and every
# process it starts inherits that: the tests that stop `up`, `broker` or `tail` with
# Ctrl-C (SIGINT) would wait on them for nothing. The children of this process get the
# default disposition back (a handler is reset to the default at exec; SIG_IGN is not).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

EXTERNAL_KAFKA = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
TEST_BROKER = os.environ.get("ACTIONS_SYNC_TEST_BROKER", "tansu")
# On a shared broker every topic of the project is deleted before each test: a worker of a
# new group reads its input from the beginning, so a record left by an earlier test would
# reach it (an outbound opt-out write of the previous test, replayed into this test's
# Salesforce sandbox, once made the source take a person's opt-out for the sync's echo).
PROJECT_TOPICS = (*RECORD_OF, SETTINGS)
IN_CI = bool(os.environ.get("CI"))


def _delete_topics(bootstrap: str, names: list[str]) -> None:
    admin = AdminClient(admin_config(bootstrap))
    existing = set(admin.list_topics(timeout=10).topics)
    doomed = [n for n in names if n in existing]
    if not doomed:
        return
    for future in admin.delete_topics(doomed, operation_timeout=30).values():
        with contextlib.suppress(KafkaException):
            future.result(30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and set(doomed) & set(admin.list_topics(timeout=10).topics):
        time.sleep(0.2)


@pytest.fixture(scope="session")
def shared_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str | None]:
    """The broker the session's tests share, or None where each test starts a Tansu."""
    if EXTERNAL_KAFKA:
        yield EXTERNAL_KAFKA
    elif TEST_BROKER == "apache":
        from tests.support.apache import ApacheKafka

        with ApacheKafka(tmp_path_factory.mktemp("apache-kafka")) as broker:
            yield broker.bootstrap
    elif TEST_BROKER == "tansu":
        yield None
    else:
        raise pytest.UsageError(f"ACTIONS_SYNC_TEST_BROKER={TEST_BROKER!r}: tansu or apache")


@pytest.fixture
def kafka(shared_kafka: str | None) -> Iterator[str]:
    """Bootstrap servers of a Kafka-protocol broker with none of the project's topics."""
    if shared_kafka:
        _delete_topics(shared_kafka, [t for n in PROJECT_TOPICS for t in (n, dlq_topic(n))])
        yield shared_kafka
        return
    with EmbeddedBroker() as broker:
        yield broker.bootstrap


@pytest.fixture(scope="session")
def registry() -> Iterator[str]:
    with SandboxServer(registry_app()) as server:
        yield server.url


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    from tests.support.postgres import PostgresError, PostgresServer

    try:
        server = PostgresServer().__enter__()
    except PostgresError as exc:
        if IN_CI:
            raise
        pytest.skip(f"PostgreSQL unavailable here: {exc}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database: a SQLite file, or a new database on the test PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/store.db"
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.create_database(f"t_{uuid.uuid4().hex[:12]}")


# Suites that walk one flow's sync rules through many scenarios with its workers as
# processes. The Kafka mechanisms under them (the batch pipeline, the publisher, the sink
# runner, the settings topic) are the ones the broker tests of the other modules run on
# Apache Kafka too, and each flow keeps one "both ways" end-to-end test there; run again
# on Apache Kafka these would repeat the same broker calls for ~40 % of that tier's time.
RULES_SUITES = {
    "test_admin_page_browser.py",
    "test_explain.py",
    "test_marketo_source.py",
    "test_reminders.py",
    "test_reminders_source.py",
    "test_reminders_stateful.py",
    "test_salesforce_source.py",
    "test_send_check.py",
    "test_unsubscribes.py",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark tests by the real parts they use, so a tier can select them (`-m broker`).

    Under pytest-xdist (`-n`), the long tests go first: the workers then start on them
    and fill in with the short ones, instead of one worker ending the run alone on a
    long test. The order is the same on every worker, as xdist requires."""
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if "kafka" in fixtures:
            item.add_marker(pytest.mark.broker)
        if "postgres" in fixtures or "postgresql" in item.name:
            item.add_marker(pytest.mark.postgres)
        if item.path.name in RULES_SUITES:
            item.add_marker(pytest.mark.rules_suite)
        if HYPOTHESIS_PROFILE == "floors":
            _cap_examples(item, FLOORS_EXAMPLES)
    if os.environ.get("PYTEST_XDIST_WORKER"):
        items.sort(key=_expected_length)


def _cap_examples(item: pytest.Item, cap: int) -> None:
    """At most `cap` examples for a hypothesis test, whatever its @settings say (they
    are read from the test function when it runs)."""
    test = getattr(item, "obj", None)
    own = getattr(test, "_hypothesis_internal_use_settings", None)
    if test is not None and isinstance(own, settings) and own.max_examples > cap:
        test._hypothesis_internal_use_settings = settings(own, max_examples=cap)


def _expected_length(item: pytest.Item) -> int:
    """0 for the end-to-end tests (worker processes), 1 for other broker tests, 2 else."""
    if item.get_closest_marker("slow"):
        return 0
    return 1 if item.get_closest_marker("broker") else 2


# authlib (confluent-kafka's registry client) puts warnings.simplefilter("always", its
# deprecation warning) in front of every filter when first imported, so pyproject's
# filterwarnings lost to it for warnings raised while test modules were collected. Imported
# here, before any test module, its filter sits below the ones pytest applies per phase.
with contextlib.suppress(ImportError):
    import authlib.deprecate  # noqa: F401
