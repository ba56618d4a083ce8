"""The unsubscribe agent's catch-up against its own batch handler (SPEC S9, writes per
edit <= 1): an unsubscribe the handler is storing and pushing at the moment a catch-up
pass runs is pushed once, not a second time by the catch-up.

The handler stores the row, publishes its opt-outs and marks the row pushed under the
agent's lock; a catch-up that read its page of unpushed rows before taking that lock
pushed the row again (bench/unsubscribes.py saw 7 opt-outs of 654 sent twice, and
counted as written twice). Real broker, store and registry; the agent in process.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from actions_sync.admin.model import AdminSettings
from actions_sync.dead_letter import DeadLetterProducer
from actions_sync.kafka import dlq_topic, ensure_topics, read_topic
from actions_sync.publish import Publisher
from actions_sync.serialization import RegistryClient
from actions_sync.store import Store
from actions_sync.store.unsubscribes import mark_pushed, store_unsubscribes
from actions_sync.topics import OUTBOUND_SALESFORCE_OPTOUTS, specs
from streams.rules.people import person_row
from streams.unsubscribes import UnsubscribeAgent
from tests.conftest import EXTERNAL_KAFKA, _delete_topics
from tests.factories import person_change


@pytest.fixture
def agent(kafka: str, registry: str, tmp_path: Path) -> Iterator[UnsubscribeAgent]:
    if EXTERNAL_KAFKA:
        _delete_topics(kafka, [OUTBOUND_SALESFORCE_OPTOUTS, dlq_topic(OUTBOUND_SALESFORCE_OPTOUTS)])
    ensure_topics(kafka, specs((OUTBOUND_SALESFORCE_OPTOUTS,), 1))
    client = RegistryClient(registry)
    with Store(f"sqlite:///{tmp_path}/store.db") as store:
        store.migrate()
        store.apply_people([person_row(person_change(1, sfdc_lead_id="00Q000000000001AAA"))], [])
        yield UnsubscribeAgent(
            store, Publisher(kafka, client), client, AdminSettings, DeadLetterProducer(kafka)
        )
    client.close()


def test_a_catch_up_during_the_handlers_push_does_not_push_again(
    agent: UnsubscribeAgent, kafka: str
) -> None:
    engine = agent.store.engine
    moved: list[int] = []
    with agent._lock:  # the handler, mid-batch: its row stored, its opt-outs being sent
        store_unsubscribes(
            engine,
            [
                {
                    "marketo_id": 1,
                    "email": "person1@example.com",
                    "source": "CLICKED_LINK",
                    "occurred_at": datetime.now(UTC),
                    "event_id": str(uuid.uuid4()),
                }
            ],
        )
        pass_ = threading.Thread(target=lambda: moved.append(agent.catch_up()))
        pass_.start()
        time.sleep(1.0)  # lets a catch-up that reads before locking read the row now
        mark_pushed(engine, {1: None}, datetime.now(UTC))  # the handler has sent it
    pass_.join(timeout=60)

    assert moved == [0]
    assert read_topic(kafka, OUTBOUND_SALESFORCE_OPTOUTS, idle_s=1.0) == []
