"""The admin page (SPEC S12) over real HTTP and a real store, without a browser: login,
the session cookie, CSRF, settings saved through the audited path with errors beside the
field, the preview by the router's rule, the metrics sampler and its chart. The browser
tests (test_admin_page_browser.py) drive the same page in Chromium against real workers."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from actions_sync.admin.http import create_app
from actions_sync.admin.status import Point, Sampler, chart_svg
from actions_sync.settings import Settings
from actions_sync.store import Store
from actions_sync.store import admin_settings as stored
from app.admin import preview
from app.stack import http_client
from sandboxes.base import SandboxServer
from tests.conftest import EXTERNAL_KAFKA

TOKEN = "page-t0ken-of-the-test"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


Server = tuple[str, Store]  # the admin server's URL, its store
Client = httpx.Client


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Store]]:
    settings = Settings(database_url=f"sqlite:///{tmp_path}/store.db", admin_token=SecretStr(TOKEN))
    with Store(settings.database_url) as store:
        store.migrate()
        with SandboxServer(create_app(settings, store, preview)) as running:
            yield running.url, store


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as opened:
        yield opened


def logged_in(client: httpx.Client, url: str) -> tuple[httpx.Client, str]:
    client.base_url = httpx.URL(url)
    answer = client.post("/ui/login", data={"token": TOKEN, "user": "ada"})
    assert answer.status_code == 303
    page = client.get("/ui/")
    [csrf] = set(CSRF.findall(page.text))
    return client, csrf


def form(values: dict[str, object], csrf: str | None) -> dict[str, list[str]]:
    """The settings form as the page posts it (booleans: a hidden false, then the box)."""
    fields: dict[str, list[str]] = {"csrf": [csrf]} if csrf else {}
    for key, value in values.items():
        if isinstance(value, bool):
            fields[key] = ["false", "true"] if value else ["false"]
        else:
            fields[key] = [str(value)]
    return fields


def test_login_sets_a_strict_http_only_session_cookie_and_a_wrong_token_is_refused(
    server: Server,
) -> None:
    url, _ = server
    with httpx.Client(base_url=url, timeout=30) as client:
        assert 'name="token"' in client.get("/ui/").text
        wrong = client.post("/ui/login", data={"token": "nope"})
        assert wrong.status_code == 401 and "wrong token" in wrong.text
        assert not client.cookies
        right = client.post("/ui/login", data={"token": TOKEN, "user": "ada"})
        cookie = right.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and TOKEN not in cookie
        assert "Settings" in client.get("/ui/").text
        assert client.get("/settings").status_code == 401  # the JSON API still wants the token
        assert client.get("/favicon.ico").status_code == 404  # not a 401 in every page view


def test_a_change_is_audited_and_a_bad_value_is_shown_beside_its_field(
    server: Server, client: Client
) -> None:
    url, store = server
    client, csrf = logged_in(client, url)
    saved = client.post("/ui/settings", data=form({"salesforce_log_calls": False}, csrf))
    assert saved.status_code == 200 and "saved: salesforce_log_calls" in saved.text
    [entry] = stored.audit_log(store.engine)
    assert (entry.key, entry.changed_by, entry.old_value, entry.new_value) == (
        "salesforce_log_calls",
        "page:ada",
        True,
        False,
    )
    assert "page:ada" in saved.text  # the audit trail on the page

    bad = client.post(
        "/ui/settings", data=form({"unsubscribe_field": "Nope", "people_sync": True}, csrf)
    )
    assert bad.status_code == 400
    assert re.search(r'id="error-unsubscribe_field">[^<]*__c', bad.text)
    assert len(stored.audit_log(store.engine)) == 1  # nothing of it applied


@pytest.mark.parametrize("csrf", [None, "forged"])
def test_a_state_change_without_the_sessions_csrf_token_is_refused(
    server: Server, client: Client, csrf: str | None
) -> None:
    url, store = server
    client, _ = logged_in(client, url)
    refused = client.post("/ui/settings", data=form({"people_sync": True}, csrf))
    assert refused.status_code == 403
    assert client.post("/ui/logout", data={}).status_code == 403
    assert stored.audit_log(store.engine) == []


def test_the_preview_is_the_routers_subject_and_needs_a_session(
    server: Server, client: Client
) -> None:
    url, _ = server
    client, _ = logged_in(client, url)
    shown = client.get(
        "/ui/preview",
        params={"template": "{{activity_type}} | {{activity_subject}} ({{call_outcome}})"},
    )
    assert shown.json() == {"subject": "Call | Discovery call (Interested)"}
    bad = client.get("/ui/preview", params={"template": "{{nope}}"})
    assert bad.status_code == 400 and "unknown placeholder" in bad.json()["error"]
    assert (
        http_client().get(f"{url}/ui/preview?template=x", follow_redirects=False).status_code == 303
    )


def test_the_sampler_charts_rate_and_lag_per_flow(tmp_path: Path) -> None:
    pages = {
        "http://a/metrics": "# TYPE actions_sync_events_in counter\n"
        'actions_sync_events_in_total{worker="activities",topic="t"} %s\n'
        'actions_sync_consumer_lag{worker="activities",topic="t",partition="0"} %s\n'
    }
    counts = iter([(0, 5), (300, 2)])

    def fetch(url: str) -> str:
        return pages[url] % next(counts)

    targets = tmp_path / "targets.json"
    targets.write_text(json.dumps({"activities-0": "http://a/metrics"}))
    sampler = Sampler(targets, keep=3, fetch=fetch)
    sampler.sample(now=1000.0)
    sampler.sample(now=1015.0)
    assert list(sampler.series["activities"]) == [Point(1000.0, 0.0, 5.0), Point(1015.0, 20.0, 2.0)]
    svg = chart_svg(list(sampler.series["activities"]))
    assert svg.count("<polyline") == 2 and "now 20.0/s" in svg and "now 2" in svg


def test_the_salesforce_usage_is_the_orgs_newest_figure_from_a_real_budget(tmp_path: Path) -> None:
    """Salesforce's own count of the org's calls (Sforce-Limit-Info, seen by the sinks'
    budget and exported) is what the page shows: the newest figure, never a sum."""
    from prometheus_client import generate_latest

    from connectors.salesforce.budget import Budget

    Budget(reserve=10, pause_s=1).observe("api-usage=1234/15000")
    exported = generate_latest().decode()
    pages = {"http://a/metrics": exported, "http://b/metrics": exported}
    targets = tmp_path / "targets.json"
    targets.write_text(
        json.dumps(
            {"salesforce-sink-0": "http://a/metrics", "salesforce-source-0": "http://b/metrics"}
        )
    )
    sampler = Sampler(targets, keep=3, fetch=pages.__getitem__)
    sampler.sample(now=1000.0)
    assert sampler.salesforce_usage == (1234.0, 15000.0)


def test_the_status_reads_group_lag_members_and_dlq_sizes_from_the_broker(kafka: str) -> None:
    """Committed offsets against end offsets, per group and partition, and the members,
    from the broker itself; a dead-letter topic's size."""
    from confluent_kafka import Consumer, Producer

    from actions_sync.admin.status import consumer_groups, dlq_sizes
    from actions_sync.kafka import TopicSpec, consumer_config, dlq_topic, ensure_topics

    ensure_topics(kafka, [TopicSpec("t.in", 1, 1), TopicSpec(dlq_topic("t.in"), 1, 1)])
    producer = Producer({"bootstrap.servers": kafka})
    for n in range(5):
        producer.produce("t.in", b"%d" % n)
        producer.flush()  # one batch a record: Tansu's end offset is a batch's base + 1
    producer.produce(dlq_topic("t.in"), b"dead")
    producer.flush()
    consumer = Consumer(consumer_config(kafka, "p-router"))
    consumer.subscribe(["t.in"])
    try:
        seen = 0
        deadline = time.monotonic() + 60
        while seen < 2 and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                seen += 1
                consumer.commit(message=msg, asynchronous=False)
        [group] = consumer_groups(kafka, "p")
        assert group.group == "p-router"
        if EXTERNAL_KAFKA or os.environ.get("ACTIONS_SYNC_TEST_BROKER") == "apache":
            [member] = group.members
            assert "t.in[0]" in member
        else:  # Tansu's DescribeGroups lists no members (the page says so)
            assert group.members == []
        [part] = group.partitions
        assert (part.topic, part.partition, part.end) == ("t.in", 0, 5)
        assert part.lag == 5 - (part.committed or 0) and part.committed == 2
    finally:
        consumer.close()
    assert consumer_groups(kafka, "other") == []
    assert dlq_sizes(kafka, ["t.in", "t.none"]) == {"t.in": 1, "t.none": None}
