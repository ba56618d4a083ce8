"""The Salesforce opt-out sink against the Salesforce sandbox over real HTTP (no Kafka),
with a real store for its record of what it wrote."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from actions_sync.store import Store
from actions_sync.store.unsubscribes import written_optouts
from connectors.outcome import Kind
from connectors.salesforce.client import SalesforceClient
from connectors.salesforce.optout_sink import OptOutSink
from sandboxes.base import JOURNAL_KEY, SandboxServer
from sandboxes.salesforce import STATE_KEY, SalesforceConfig, create_app

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
OPTED = "HasOptedOutOfEmail"


class Org:
    def __init__(self) -> None:
        self.app = create_app(SalesforceConfig(seed_people=300))
        self.server = SandboxServer(self.app)

    def ids(self, sobject: str) -> list[str]:
        with self.app[STATE_KEY].lock:
            return [
                r["Id"]
                for r in self.app[STATE_KEY].records[sobject].values()
                if not r.get("IsConverted")
            ]

    def value(self, sobject: str, sfdc_id: str, field: str = OPTED) -> Any:
        with self.app[STATE_KEY].lock:
            return self.app[STATE_KEY].records[sobject][sfdc_id][field]

    def updates(self) -> int:
        return sum(
            1
            for e in self.app[JOURNAL_KEY].entries()
            if e.method == "PATCH" and e.path.endswith("composite/sobjects")
        )


@pytest.fixture
def org() -> Iterator[Org]:
    org = Org()
    with org.server:
        yield org


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(f"sqlite:///{tmp_path}/store.db") as store:
        store.migrate()
        yield store


def write(sobject: str, sfdc_id: str, at: int = 0, field: str = OPTED) -> dict[str, Any]:
    return {
        "sobject": sobject,
        "sfdc_id": sfdc_id,
        "field": field,
        "marketo_id": 1,
        "occurred_at": T0 + timedelta(minutes=at),
        "origin": "unsubscribe:x",
    }


def deliver(org: Org, store: Store, *batches: list[dict[str, Any]]) -> list[list[Kind]]:
    async def go() -> list[list[Kind]]:
        sink = OptOutSink(
            SalesforceClient(org.server.url, "actions-sync", "sandbox-secret", timeout_s=5.0),
            store.engine,
        )
        try:
            await sink.start()
            return [[o.kind for o in await sink.deliver(b)] for b in batches]
        finally:
            await sink.aclose()

    return asyncio.run(go())


def test_opt_outs_go_200_a_call_leads_and_contacts_mixed_and_twice_is_one_effect(
    org: Org, store: Store
) -> None:
    leads, contacts = org.ids("Lead")[:250], org.ids("Contact")[:50]
    batch = [write("Lead", i) for i in leads] + [write("Contact", i) for i in contacts]
    assert deliver(org, store, batch) == [[Kind.ACCEPTED] * 300]
    assert org.updates() == 2  # 300 records, 200 per collection call
    assert all(org.value("Lead", i) is True for i in leads)
    assert all(org.value("Contact", i) is True for i in contacts)
    assert written_optouts(store.engine, OPTED, leads + contacts) == set(leads + contacts)

    # The same opt-outs again (a redelivery): nothing is written.
    assert deliver(org, store, batch[:10]) == [[Kind.SKIPPED] * 10]
    assert org.updates() == 2


def test_a_later_unsubscribe_is_written_again_and_one_id_twice_in_a_batch_is_one_write(
    org: Org, store: Store
) -> None:
    lead = org.ids("Lead")[0]
    deliver(org, store, [write("Lead", lead)])
    assert deliver(
        org,
        store,
        [write("Lead", lead, at=5), write("Lead", lead, at=5, field="ActionsSync_Opt_Out__c")],
    ) == [[Kind.ACCEPTED, Kind.ACCEPTED]]
    assert org.updates() == 2
    assert org.value("Lead", lead, "ActionsSync_Opt_Out__c") is True


def test_a_field_the_org_lacks_is_refused_with_its_reason_and_the_rest_written(
    org: Org, store: Store
) -> None:
    leads = org.ids("Lead")[:3]
    kinds = deliver(
        org,
        store,
        [
            write("Lead", leads[0]),
            write("Lead", leads[1], field="Nope__c"),
            write("Lead", leads[2]),
        ],
    )
    assert kinds == [[Kind.ACCEPTED, Kind.REJECTED, Kind.ACCEPTED]]
    assert written_optouts(store.engine, OPTED, leads) == {leads[0], leads[2]}
