"""Marketo sandbox -> `actions-sync sync start` / `worker marketo-source` processes ->
marketo.person.changes -> people worker -> store, on a real broker and SQLite: the store
ends equal to an oracle built from the sandbox's own data (its population and its field
table), also after SIGKILLs of the source mid-export and mid-paging, and under faults."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from actions_sync.admin.commands import set_value
from actions_sync.kafka import ends_of, read_topic
from actions_sync.settings import Settings
from actions_sync.store import PERSON_FIELDS, Store
from actions_sync.store import admin_settings as stored_settings
from actions_sync.topics import PERSON_CHANGES
from app.people_scenario import Expected, Report, reconcile
from app.process import spawn
from app.stack import CLI, Stack, http_client, scrape_sum
from sandboxes.base import free_port
from sandboxes.marketo.fields import FIELDS
from sandboxes.population import EPOCH, generate

T = TypeVar("T")
pytestmark = pytest.mark.slow
SINCE, UNTIL = EPOCH, EPOCH + timedelta(days=61)  # 2 windows
METRICS_PORT = free_port()
METRICS = {"ACTIONS_SYNC_METRICS_PORT": str(METRICS_PORT)}
METRICS_URL = f"http://127.0.0.1:{METRICS_PORT}/metrics"
CHUNK = 32_768  # bytes per ranged download, and per checkpoint
FAST = ("--set", "export_processing_s=0.05")


def start(kafka: str, registry: str, tmp_path: Path, *sandbox_args: str) -> tuple[Stack, str]:
    settings = Settings(
        kafka_bootstrap_servers=kafka,
        schema_registry_url=registry,
        database_url=f"sqlite:///{tmp_path}/store.db",
        group_prefix=f"t-{uuid.uuid4().hex[:8]}",
    )
    stack = Stack(settings).start()
    marketo = stack.sandbox("marketo", *FAST, *sandbox_args)
    stack.add_worker("people")
    return stack, marketo


def source_env(stack: Stack, marketo: str, **extra: str) -> dict[str, str]:
    return {
        **stack.env,
        "ACTIONS_SYNC_MARKETO_URL": marketo,
        "ACTIONS_SYNC_MARKETO_SINCE": SINCE.isoformat(),
        "ACTIONS_SYNC_MARKETO_UNTIL": UNTIL.isoformat(),
        "ACTIONS_SYNC_MARKETO_EXPORT_CHUNK_BYTES": str(CHUNK),
        "ACTIONS_SYNC_MARKETO_POLL_INTERVAL_S": "0.2",
        **extra,
    }


def source(stack: Stack, marketo: str, *command: str, **extra: str) -> subprocess.Popen[bytes]:
    """`actions-sync sync start` or `actions-sync worker marketo-source` as a process."""
    name = "-".join(command)
    return spawn(
        [*CLI, *command],
        log=stack.logdir / f"{name}-{time.monotonic_ns()}.log",
        env=source_env(stack, marketo, **extra),
    )


def wait_for(
    predicate: Callable[[], T],
    timeout_s: float = 60.0,
    what: str = "condition",
    every_s: float = 0.05,
) -> T:
    deadline = time.monotonic() + timeout_s
    while not (found := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(every_s)
    return found


def checkpoint(stack: Stack, name: str) -> dict[str, Any]:
    """The checkpoint `name`, {} before the first."""
    with Store(stack.settings.database_url) as store:
        store.migrate()
        return store.checkpoint(name) or {}


def drain(stack: Stack) -> list[Any]:
    """Every record the source published; waits until the people worker committed them."""
    records = read_topic(stack.bootstrap, PERSON_CHANGES, idle_s=1.0)
    stack.wait_drained("people", PERSON_CHANGES, ends_of(records), timeout_s=60)
    return records


def initial_oracle(people: int) -> Expected:
    """The people created inside SINCE..UNTIL, as the generator made them."""
    expected = Expected()
    for person in generate(people, 7):
        if SINCE <= person["created_at"] <= UNTIL:
            expected.apply(
                {
                    **{f: person[f] for f in PERSON_FIELDS},
                    "deleted": False,
                    "marketo_id": person["marketo_id"],
                    "changed_at": person["updated_at"],
                }
            )
    return expected


def current(marketo: str, ids: set[int], expected: Expected) -> None:
    """Set the oracle of `ids` to the sandbox's current leads (read with its own field
    table, 300 a call); a lead it no longer has was deleted."""
    names = ",".join(f.name for f in FIELDS)
    with httpx.Client(base_url=marketo, timeout=60) as http:
        token = http.get(
            "/identity/oauth/token",
            params={
                "grant_type": "client_credentials",
                "client_id": "actions-sync",
                "client_secret": "sandbox-secret",
            },
        ).json()["access_token"]
        ordered = sorted(ids)
        for at in range(0, len(ordered), 300):
            batch = ordered[at : at + 300]
            leads = http.post(
                "/rest/v1/leads.json",
                params={"_method": "GET"},
                data={
                    "filterType": "id",
                    "filterValues": ",".join(map(str, batch)),
                    "fields": names,
                },
                headers={"Authorization": f"Bearer {token}"},
            ).json()["result"]
            found = {lead["id"]: lead for lead in leads}
            for mid in batch:
                expected.newest[mid] = _oracle(mid, found.get(mid))


def _oracle(mid: int, lead: dict[str, Any] | None) -> dict[str, Any]:
    if lead is None:
        return {"marketo_id": mid, "deleted": True}
    change = {f.source: lead[f.name] for f in FIELDS if f.source in PERSON_FIELDS}
    return {
        **change,
        "marketo_id": mid,
        "deleted": False,
        "changed_at": datetime.fromisoformat(lead["updatedAt"]),
    }


def check_store(stack: Stack, expected: Expected) -> None:
    report = store_report(stack, expected)
    assert report.ok, report.mismatches
    assert report.stored_present == report.expected_present > 0


def store_report(stack: Stack, expected: Expected) -> Report:
    with Store(stack.settings.database_url) as store:
        return reconcile(store, expected)


def title(stack: Stack, marketo_id: int) -> str | None:
    with Store(stack.settings.database_url) as store:
        title: str | None = (store.person(marketo_id) or {}).get("title")
        return title


def control(marketo: str, path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    answer = http_client().post(f"{marketo}/_sandbox/marketo/{path}", json=body, timeout=60).json()
    result: list[dict[str, Any]] = answer["result"]
    return result


def update(marketo: str, *leads: dict[str, Any]) -> list[int]:
    control(marketo, "leads", {"action": "updateOnly", "lookupField": "id", "input": leads})
    return [lead["id"] for lead in leads]


def edits_in_order(marketo: str, owned: list[int], unowned: list[int]) -> list[int]:
    """Field edits (three in a row), owner removed, owner added, deletes, new people."""
    touched = [
        i
        for version in ("v1", "v2", "v3")
        for i in update(marketo, *({"id": i, "title": version} for i in owned[:5]))
    ]
    touched += update(
        marketo,
        *({"id": i, "sfdcLeadOwnerId": None, "sfdcContactOwnerId": None} for i in owned[5:10]),
    )
    touched += update(
        marketo, *({"id": i, "sfdcLeadOwnerId": "005000000000000042"} for i in unowned[:5])
    )
    control(marketo, "leads/delete", {"ids": owned[10:15]})
    new = control(
        marketo,
        "leads",
        {
            "action": "createOrUpdate",
            "lookupField": "email",
            "input": [
                {"email": f"new{n}@example.com", "firstName": "New", "sfdcLeadOwnerId": "005B"}
                for n in range(3)
            ],
        },
    )
    return [*touched, *owned[10:15], *(r["id"] for r in new)]


def republished(records: list[Any]) -> int:
    """Records beyond the first of each (person, version): what the restarts cost. The
    source's event ids are derived from (person, version), so a re-publish is byte-equal."""
    seen = Counter((msg.key(), msg.value()[5:]) for msg in records)  # key, Avro body
    return sum(seen.values()) - len(seen)


def finished(proc: subprocess.Popen[bytes], timeout_s: float = 60.0) -> int:
    return proc.wait(timeout_s)


def test_initial_sync_killed_mid_export_resumes_and_lands_exactly_the_owned_people(
    kafka: str, registry: str, tmp_path: Path
) -> None:
    stack, marketo = start(kafka, registry, tmp_path, "--seed-people", "30000")
    try:
        first = source(stack, marketo, "sync", "start")
        wait_for(
            lambda: checkpoint(stack, "marketo.initial_sync").get("offset"),
            what="a mid-file checkpoint",
        )
        first.send_signal(signal.SIGKILL)
        first.wait()
        assert not checkpoint(stack, "marketo.initial_sync")["done"]
        assert finished(source(stack, marketo, "sync", "start")) == 0
        records = drain(stack)
        check_store(stack, initial_oracle(30000))
    finally:
        stack.stop()
    assert 0 <= republished(records) <= CHUNK // 100  # at most one chunk's rows, again


def test_an_admin_turning_the_people_sync_off_stops_the_load_at_a_checkpoint(
    kafka: str, registry: str, tmp_path: Path
) -> None:
    stack, marketo = start(
        kafka, registry, tmp_path, "--seed-people", "30000", "--latency-ms", "150"
    )  # ~6 s of ranged downloads
    try:
        first = source(stack, marketo, "sync", "start")
        wait_for(
            lambda: checkpoint(stack, "marketo.initial_sync").get("offset"),
            what="a mid-file checkpoint",
        )
        set_value(stack.settings, "people_sync", "off")
        assert finished(first) == 0  # stopped, not failed
        assert not checkpoint(stack, "marketo.initial_sync")["done"]
        assert finished(source(stack, marketo, "sync", "start")) == 0  # on again: resumes
        drain(stack)
        check_store(stack, initial_oracle(30000))
    finally:
        stack.stop()


def test_lead_changes_reach_the_store_in_order_across_a_kill_mid_paging(
    kafka: str, registry: str, tmp_path: Path
) -> None:
    stack, marketo = start(kafka, registry, tmp_path, "--seed-people", "3000", "--latency-ms", "60")
    expected = initial_oracle(3000)
    owned = sorted(expected.present())
    try:
        assert finished(source(stack, marketo, "sync", "start")) == 0
        worker = source(stack, marketo, "worker", "marketo-source")
        touched = edits_in_order(marketo, owned, sorted(set(expected.newest) - set(owned)))
        wait_for(lambda: title(stack, owned[0]) == "v3", what="the third edit")
        mark = checkpoint(stack, "marketo.lead_changes")
        touched += update(marketo, *({"id": i, "title": "bulk"} for i in range(1, 1501)))
        wait_for(lambda: checkpoint(stack, "marketo.lead_changes") != mark, what="a page")
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        worker, metrics = source(stack, marketo, "worker", "marketo-source", **METRICS), METRICS_URL
        current(marketo, set(touched), expected)
        wait_for(lambda: store_report(stack, expected).ok, what="the oracle", every_s=0.5)
        assert scrape_sum([metrics], "actions_sync_records_published_total") > 0  # pages left
        worker.send_signal(signal.SIGTERM)
        assert finished(worker) == 0  # a clean shutdown
        records = drain(stack)
    finally:
        stack.stop()
    check_store(stack, expected)
    assert republished(records) <= 300 + len(touched)  # a page again, and pages' overlaps


def source_enabled(metrics_url: str) -> float | None:
    """The source's `actions_sync_source_enabled` gauge, None while it is not served."""
    try:
        text = http_client().get(metrics_url, timeout=2.0).text
    except httpx.TransportError:
        return None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "actions_sync_source_enabled":
                return sample.value
    return None


def calls_to(marketo: str, endpoint: str) -> int:
    return sum(
        endpoint in e["path"] for e in http_client().get(f"{marketo}/_sandbox/journal").json()
    )


def test_the_people_sync_runs_only_while_an_admin_has_it_on(
    kafka: str, registry: str, tmp_path: Path
) -> None:
    """SPEC S12 "initiate data sync": `sync start` turns the people_sync setting on (audited);
    with it off the lead-changes worker waits, checkpoint kept, and catches up once on."""
    stack, marketo = start(kafka, registry, tmp_path, "--seed-people", "300")
    owned = sorted(initial_oracle(300).present())
    try:
        assert finished(source(stack, marketo, "sync", "start")) == 0
        with Store(stack.settings.database_url) as store:
            entry = stored_settings.audit_log(store.engine, limit=1)[0]
        assert (entry.key, entry.new_value) == ("people_sync", True)
        assert entry.changed_by.endswith("(sync start)")
        set_value(stack.settings, "people_sync", "off")
        worker = source(stack, marketo, "worker", "marketo-source", **METRICS)
        wait_for(lambda: source_enabled(METRICS_URL) == 0, what="the source waiting")
        update(marketo, {"id": owned[0], "title": "edited while off"})
        time.sleep(1.5)  # ~7 polls at the 0.2 s interval, were it polling
        assert calls_to(marketo, "leadchanges") == 0
        set_value(stack.settings, "people_sync", "on")
        wait_for(lambda: title(stack, owned[0]) == "edited while off", what="the edit")
        assert source_enabled(METRICS_URL) == 1
        worker.send_signal(signal.SIGTERM)
        assert finished(worker) == 0
    finally:
        stack.stop()


def token(http: httpx.Client) -> str:
    answer = http.get(
        "/identity/oauth/token",
        params={
            "grant_type": "client_credentials",
            "client_id": "actions-sync",
            "client_secret": "sandbox-secret",
        },
    ).json()
    return str(answer["access_token"])


def burst(marketo: str, calls: int = 130, concurrency: int = 20) -> tuple[float, float]:
    """Another integration hammering the same instance (its GET leads.json are tagged
    `_burst=1`): 615s while it has 20 in flight, then 606s for everyone for a window."""
    with httpx.Client(base_url=marketo, timeout=30) as http:
        auth = {"Authorization": f"Bearer {token(http)}"}
        begun = time.time()
        with ThreadPoolExecutor(concurrency) as pool:
            list(
                pool.map(
                    lambda _: http.get(
                        "/rest/v1/leads.json",
                        headers=auth,
                        params={
                            "filterType": "id",
                            "filterValues": "1",
                            "fields": "id",
                            "_burst": "1",
                        },
                    ),
                    range(calls),
                )
            )
        return begun, time.time()


def limited_outside(marketo: str, bursts: list[tuple[float, float]]) -> list[dict[str, Any]]:
    """606/615 answers to the source that no burst explains (the window is 20 s)."""
    journal = http_client().get(f"{marketo}/_sandbox/journal").json()
    return [
        e
        for e in journal
        if e["code"] in ("606", "615")
        and "_burst=1" not in e["query"]
        and not any(a <= e["at"] <= b + 20.5 for a, b in bursts)
    ]


def test_initial_sync_completes_through_faults_token_expiry_and_rate_limit_bursts(
    kafka: str, registry: str, tmp_path: Path
) -> None:
    stack, marketo = start(
        kafka,
        registry,
        tmp_path,
        "--seed-people",
        "30000",
        "--error-rate",
        "0.1",
        "--set",
        "timeout_rate=0.03",
        "--set",
        "timeout_s=1.0",
        "--token-expiry-s",
        "2",
        "--set",
        "late_file_rate=0.5",
    )
    try:
        sync = source(stack, marketo, "sync", "start")
        wait_for(lambda: checkpoint(stack, "marketo.initial_sync"), what="the export plan")
        bursts = [burst(marketo)]
        assert finished(sync, timeout_s=90) == 0
        drain(stack)
        check_store(stack, initial_oracle(30000))
        codes = {
            e["code"] or str(e["status"])
            for e in http_client().get(f"{marketo}/_sandbox/journal").json()
        }
        assert {"602", "606"} <= codes and codes & {"604", "608", "611", "713"}
        assert limited_outside(marketo, bursts) == []  # never limited by its own pace
    finally:
        stack.stop()


@pytest.mark.parametrize("command", [("sync", "start"), ("worker", "marketo-source")])
def test_the_source_names_the_missing_setting_and_exits_2(command: tuple[str, str]) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ACTIONS_SYNC_", "KAFKA_", "SCHEMA_REGISTRY"))
    }
    done = subprocess.run([*CLI, *command], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "ACTIONS_SYNC_MARKETO_URL" in done.stderr
