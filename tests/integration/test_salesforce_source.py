"""`actions-sync worker salesforce-source` as a process, on a real broker and SQLite store,
against the Salesforce sandbox process, where a person edits through their own API user
(`sandbox salesforce --user`): people's opt-outs reach `salesforce.optouts`, the sync's
own writes and re-subscribes never do, the admin settings steer it live, and a `kill -9`
between publishing and checkpointing loses nothing (the page is published again, byte for
byte the same records, which the consumer absorbs)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from actions_sync.admin.commands import set_value
from actions_sync.kafka import read_topic
from actions_sync.serialization import Deserializer, RegistryClient
from actions_sync.settings import Settings
from actions_sync.store import Store
from actions_sync.store.unsubscribes import OptOutWrite, record_optout_writes
from actions_sync.topics import SALESFORCE_OPTOUTS
from app.process import spawn
from app.stack import CLI, Stack, http_client
from sandboxes.base import free_port
from sandboxes.population import generate, sfdc_id

pytestmark = pytest.mark.slow
ALICE = ("alice-app", "alice-secret", "0050000000000ALICE")  # a person's own API user
INTEGRATION = ("actions-sync", "sandbox-secret")
DATA = "/services/data/v62.0"
OPT_OUT = {"HasOptedOutOfEmail": True}
CHECKPOINTS = ("salesforce.optouts.Lead", "salesforce.optouts.Contact")


def lead(n: int) -> str:
    return sfdc_id("00Q", n)


CONTACTS = [p["sfdc_contact_id"] for p in generate(100, 7) if p["sfdc_contact_id"]]


def contact(n: int) -> str:
    """The n-th seeded Contact (not every person has one)."""
    return str(CONTACTS[n - 1])


class Rig:
    def __init__(self, kafka: str, registry: str, tmp_path: Path, people: int) -> None:
        self.database = tmp_path / "store.db"
        self.settings = Settings(
            kafka_bootstrap_servers=kafka,
            schema_registry_url=registry,
            database_url=f"sqlite:///{self.database}",
            group_prefix=f"t-{uuid.uuid4().hex[:8]}",
        )
        self.stack = Stack(self.settings).start()
        self.salesforce = self.stack.sandbox(
            "salesforce", "--seed-people", str(people), "--user", ":".join(ALICE)
        )
        self.metrics_port = free_port()

    def source(self, **env: str) -> subprocess.Popen[bytes]:
        return spawn(
            [*CLI, "worker", "salesforce-source"],
            log=self.stack.logdir / f"source-{time.monotonic_ns()}.log",
            env={
                **self.stack.env,
                "ACTIONS_SYNC_SALESFORCE_URL": self.salesforce,
                "ACTIONS_SYNC_SALESFORCE_POLL_INTERVAL_S": "0.2",
                "ACTIONS_SYNC_METRICS_PORT": str(self.metrics_port),
                **env,
            },
        )

    def api(self, client_id: str, secret: str, *_: str) -> httpx.Client:
        """A REST client logged in with these credentials (a person's, or the sync's)."""
        token = (
            http_client()
            .post(
                f"{self.salesforce}/services/oauth2/token",
                data={
                    "grant_type": "client_credentials",
                    "client_id": client_id,
                    "client_secret": secret,
                },
            )
            .json()["access_token"]
        )
        return httpx.Client(
            base_url=self.salesforce + DATA,
            timeout=30,
            headers={"Authorization": f"Bearer {token}"},
        )

    def checkpoint(self, name: str) -> dict[str, Any] | None:
        with Store(self.settings.database_url) as store:
            store.migrate()
            return store.checkpoint(name)

    def records(self) -> list[Any]:
        return read_topic(self.stack.bootstrap, SALESFORCE_OPTOUTS, idle_s=0.5)

    def published_ids(self) -> list[str]:
        return sorted(m.key().decode() for m in self.records())

    def decoded(self) -> list[dict[str, Any]]:
        registry = RegistryClient(self.stack.registry_url)
        try:
            decode = Deserializer(registry, "SalesforceOptOut")
            return [decode(m.value()) for m in self.records()]
        finally:
            registry.close()

    def queries(self) -> int:
        journal = http_client().get(f"{self.salesforce}/_sandbox/journal").json()
        return sum("/query" in e["path"] for e in journal)

    def enabled(self) -> float | None:
        try:
            text = (
                http_client().get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2).text
            )
        except httpx.TransportError:
            return None
        line = next(
            (x for x in text.splitlines() if x.startswith("actions_sync_source_enabled{")), None
        )
        return float(line.rsplit(" ", 1)[1]) if line else None


def wait_for(predicate: Callable[[], Any], timeout_s: float = 60.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout_s
    while not (found := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return found


def edit(api: httpx.Client, sobject: str, record_id: str, fields: dict[str, Any]) -> None:
    response = api.patch(f"/sobjects/{sobject}/{record_id}", json=fields)
    assert response.status_code == 204, response.text


def opt_out_many(api: httpx.Client, ids: list[str]) -> None:
    for at in range(0, len(ids), 200):
        response = api.patch(
            "/composite/sobjects",
            json={
                "allOrNone": True,
                "records": [
                    {"attributes": {"type": "Lead"}, "id": i, **OPT_OUT} for i in ids[at : at + 200]
                ],
            },
        )
        assert all(r["success"] for r in response.json()), response.text


def finished(proc: subprocess.Popen[bytes], timeout_s: float = 60.0) -> int:
    return proc.wait(timeout_s)


@pytest.fixture
def rig(kafka: str, registry: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Rig]:
    rig = Rig(kafka, registry, tmp_path, getattr(request, "param", 100))
    try:
        yield rig
    finally:
        rig.stack.stop()


def test_people_opt_outs_flow_and_the_syncs_own_writes_never_come_back(rig: Rig) -> None:
    worker = rig.source()
    wait_for(lambda: all(rig.checkpoint(n) for n in CHECKPOINTS), what="the cursors")
    with rig.api(*ALICE) as alice, rig.api(*INTEGRATION) as sync:
        edit(alice, "Lead", lead(1), OPT_OUT)
        edit(alice, "Contact", contact(1)[:15], OPT_OUT)  # a 15-character id, as people paste
        edit(sync, "Lead", lead(2), OPT_OUT)  # the sync's write: its own user
        edit(sync, "Lead", lead(3), OPT_OUT)  # ... which a person then edits otherwise
        with Store(rig.settings.database_url) as store:
            record_optout_writes(
                store.engine,
                [OptOutWrite(lead(3), "HasOptedOutOfEmail", "Lead", 3, datetime.now(UTC))],
            )
        edit(alice, "Lead", lead(3), {"FirstName": "Renamed"})
        edit(alice, "Lead", lead(5), OPT_OUT)
        edit(alice, "Lead", lead(5), {"HasOptedOutOfEmail": False})  # a re-subscribe
        edit(alice, "Lead", lead(9), OPT_OUT)  # the last edit: once it is out, all are read
    wait_for(lambda: lead(9) in rig.published_ids(), what="the last opt-out")
    time.sleep(1.0)  # a few more polls, re-reading the lookback window
    worker.send_signal(signal.SIGTERM)
    assert finished(worker) == 0

    records = rig.decoded()
    assert sorted(r["sfdc_id"] for r in records) == sorted([lead(1), lead(9), contact(1)])
    assert {r["last_modified_by_id"] for r in records} == {ALICE[2]}
    assert {(r["sobject"], r["field"]) for r in records} == {
        ("Lead", "HasOptedOutOfEmail"),
        ("Contact", "HasOptedOutOfEmail"),
    }


@pytest.mark.parametrize("rig", [600], indirect=True)
def test_a_kill_between_publishing_and_checkpointing_loses_nothing(rig: Rig) -> None:
    worker = rig.source()
    wait_for(lambda: all(rig.checkpoint(n) for n in CHECKPOINTS), what="the cursors")
    saved = rig.checkpoint(CHECKPOINTS[0])
    expected = [lead(n) for n in range(1, 451)]  # three calls of 200, 200 and 50
    with (
        sqlite3.connect(rig.database, timeout=30, isolation_level=None) as lock,
        rig.api(*ALICE) as alice,
    ):
        lock.execute("BEGIN EXCLUSIVE")  # the store cannot save the checkpoint for now
        opt_out_many(alice, expected)
        wait_for(lambda: len(rig.records()) >= len(expected), what="the opt-outs published")
        worker.send_signal(signal.SIGKILL)  # published, not checkpointed
        worker.wait()
        lock.execute("ROLLBACK")
    assert rig.checkpoint(CHECKPOINTS[0]) == saved
    worker = rig.source()
    wait_for(
        lambda: (rig.checkpoint(CHECKPOINTS[0]) or {}).get("id") == expected[-1],
        what="the cursor past the last opt-out",
    )
    worker.send_signal(signal.SIGTERM)
    assert finished(worker) == 0

    records = rig.records()
    assert sorted({m.key().decode() for m in records}) == expected  # nothing missed
    copies = Counter((m.key(), m.value()) for m in records)
    assert len(copies) == len(expected)  # each republished record is byte-equal: absorbed
    assert min(copies.values()) >= 2  # all were published again after the restart


def test_with_unsubscribe_sync_off_it_polls_nothing_and_catches_up_when_on(rig: Rig) -> None:
    worker = rig.source(ACTIONS_SYNC_SALESFORCE_LOOKBACK_S="0")  # the cursor alone
    wait_for(lambda: all(rig.checkpoint(n) for n in CHECKPOINTS), what="the cursors")
    set_value(rig.settings, "unsubscribe_sync", "off")
    wait_for(lambda: rig.enabled() == 0, what="the source waiting")
    polled = rig.queries()
    with rig.api(*ALICE) as alice:
        edit(alice, "Contact", contact(2), OPT_OUT)
    time.sleep(1.5)  # ~7 polls at the 0.2 s interval, were it polling
    assert rig.queries() == polled and rig.published_ids() == []

    set_value(rig.settings, "unsubscribe_sync", "on")

    wait_for(lambda: rig.published_ids() == [contact(2)], what="the opt-out made while off")
    assert rig.enabled() == 1
    worker.send_signal(signal.SIGTERM)
    assert finished(worker) == 0


def test_the_admins_custom_field_and_objects_are_the_ones_read(rig: Rig) -> None:
    set_value(rig.settings, "unsubscribe_field", "ActionsSync_Opt_Out__c")
    set_value(rig.settings, "unsubscribe_objects", "Contact")
    worker = rig.source()
    wait_for(lambda: rig.checkpoint(CHECKPOINTS[1]), what="the Contact cursor")
    with rig.api(*ALICE) as alice:
        edit(alice, "Contact", contact(1), OPT_OUT)  # the standard field: not the chosen one
        edit(alice, "Lead", lead(3), {"ActionsSync_Opt_Out__c": True})  # Leads are not chosen
        edit(alice, "Contact", contact(2), {"ActionsSync_Opt_Out__c": True})

    wait_for(lambda: rig.published_ids() == [contact(2)], what="the custom-field opt-out")
    time.sleep(1.0)
    worker.send_signal(signal.SIGTERM)
    assert finished(worker) == 0
    assert [r["field"] for r in rig.decoded()] == ["ActionsSync_Opt_Out__c"]
    assert rig.checkpoint(CHECKPOINTS[0]) is None  # Leads never polled


def test_the_source_names_the_missing_setting_and_exits_2() -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ACTIONS_SYNC_", "KAFKA_", "SCHEMA_REGISTRY"))
    }
    done = subprocess.run(
        [*CLI, "worker", "salesforce-source"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2 and "ACTIONS_SYNC_SALESFORCE_URL" in done.stderr
