"""The admin page (SPEC S12) in headless Chromium (Debian's chromium + chromedriver, driven
by Selenium, which never downloads a browser), against real workers: the activity router
and both sinks as processes on a real broker, the Marketo and Salesforce sandboxes over
HTTP, a real store, the admin server as `actions-sync worker admin-api` runs it.

One stack and one browser per module. Screenshots go to each test's tmp_path (printed).
Without Chromium these tests skip, except in CI (env CI), where they fail.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from actions_sync.admin.live import load
from actions_sync.kafka import dlq_topic, read_topic, written
from actions_sync.publish import Publisher
from actions_sync.serialization import RegistryClient
from actions_sync.store import PERSON_FIELDS, Store
from actions_sync.store import admin_settings as stored
from actions_sync.topics import (
    OUTBOUND_MARKETO_ACTIVITIES,
    OUTBOUND_SALESFORCE_TASKS,
    PERSON_CHANGES,
    SALES_ACTIVITIES,
)
from app.broker import EmbeddedBroker
from app.stack import Stack
from sandboxes.population import generate
from streams.rules.people import person_row
from tests.conftest import EXTERNAL_KAFKA, _delete_topics
from tests.factories import person_change, sales_activity
from tests.support.stacks import stack_settings
from tests.support.vendors import ledger_ids, marketo_activities, salesforce_tasks

pytestmark = [pytest.mark.slow, pytest.mark.broker]

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
TOPICS = (PERSON_CHANGES, SALES_ACTIVITIES, OUTBOUND_MARKETO_ACTIVITIES, OUTBOUND_SALESFORCE_TASKS)
SEED_PEOPLE = 10  # both sandboxes hold people 1..10 of the population (seed 7)
CONTACT, LEAD = 6, 2  # a Contact with an opportunity; an owned Lead (see test_full_chain)
DAY = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
WAIT_S = 90.0


def person(marketo_id: int) -> dict[str, Any]:
    """A store row of a person both sandboxes know."""
    population = {p["marketo_id"]: p for p in generate(SEED_PEOPLE, 7)}
    return person_row(
        person_change(marketo_id, 0, **{f: population[marketo_id][f] for f in PERSON_FIELDS})
    )


def activity(type_: str, marketo_id: int) -> dict[str, Any]:
    return sales_activity(
        type_, marketo_id, activity_id=str(uuid.uuid4()), occurred_at=DAY + timedelta(minutes=1)
    )


def wait_until(predicate: Callable[[], object], what: str, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"{what} not within {timeout_s:.0f}s"
        time.sleep(0.5)


def in_marketo(stack: Stack, activity_id: str) -> bool:
    assert stack.marketo_url
    return activity_id in ledger_ids(marketo_activities(stack.marketo_url))


def task_ids(stack: Stack) -> set[str]:
    assert stack.salesforce_url
    return {str(t.get("ActionsSync_Id__c")) for t in salesforce_tasks(stack.salesforce_url)}


@pytest.fixture(scope="module")
def bootstrap(request: pytest.FixtureRequest) -> Iterator[str]:
    """A broker for this module (the `kafka` fixture is per test): the session's shared
    one where there is one (conftest's `shared_kafka` where it has it, else
    KAFKA_BOOTSTRAP_SERVERS), its project topics deleted first; else a Tansu of its own."""
    try:
        shared = request.getfixturevalue("shared_kafka")
    except pytest.FixtureLookupError:
        shared = EXTERNAL_KAFKA
    if shared:
        _delete_topics(shared, [t for n in TOPICS for t in (n, dlq_topic(n))])
        yield shared
        return
    with EmbeddedBroker() as broker:
        yield broker.bootstrap


@pytest.fixture(scope="module")
def stack(
    bootstrap: str, registry: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    logdir = tmp_path_factory.mktemp("admin-page")
    settings = stack_settings(bootstrap, registry, logdir, TOPICS)
    with Store(settings.database_url) as store:
        store.migrate()
        store.apply_people([person(CONTACT)], [])
    with Stack(settings, logdir=logdir) as running:
        running.start_vendors(seed_people=SEED_PEOPLE)
        running.add_worker("admin-api")  # first: it samples the others as they are added
        # Unknown people are dead-lettered after 3 s parked (the replay test's cause).
        running.add_worker(
            "activities",
            {"ACTIONS_SYNC_ACTIVITIES_PARK_S": "3", "ACTIONS_SYNC_ACTIVITIES_RETRY_S": "0.5"},
        )
        running.add_worker("marketo-sink")
        running.add_worker("salesforce-sink")
        print(f"admin page stack logs: {logdir}")
        yield running
        for worker in running.workers:  # all at once: each takes seconds to leave its group
            worker.proc.terminate()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        message = (
            f"{CHROMIUM} or {CHROMEDRIVER} missing: apt-get install chromium"
            " chromium-driver (scripts/bootstrap --test)"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,2400",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()


def shot(browser: Any, tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.png"
    browser.save_screenshot(str(path))
    print(f"screenshot: {path}")
    return path


def by_id(browser: Any, element_id: str, timeout_s: float = 30.0) -> Any:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, timeout_s).until(
        expected_conditions.presence_of_element_located((By.ID, element_id))
    )


def log_in(browser: Any, stack: Stack, token: str | None = None) -> None:
    browser.delete_all_cookies()
    browser.get(f"{stack.admin_url}/ui/")
    by_id(browser, "token").send_keys(token or stack.admin_token)
    by_id(browser, "user").send_keys("ada")
    by_id(browser, "login-button").click()
    by_id(browser, "login-error" if token else "settings-form")  # the answer has loaded


def test_a_wrong_token_is_refused_and_the_right_one_opens_a_strict_session(
    stack: Stack, browser: Any, tmp_path: Path
) -> None:
    log_in(browser, stack, token="not-the-token")
    assert "wrong token" in by_id(browser, "login-error").text
    assert browser.get_cookies() == []
    shot(browser, tmp_path, "wrong-token")

    log_in(browser, stack)
    by_id(browser, "settings-form")
    [cookie] = browser.get_cookies()
    assert (cookie["httpOnly"], cookie["sameSite"]) == (True, "Strict")
    assert stack.admin_token not in browser.current_url + cookie["value"]
    assert browser.execute_script("return document.cookie") == ""  # HttpOnly: not for JS
    # The live preview, rendered on the server by the router's rule.
    template = by_id(browser, "salesforce_subject_template")
    template.clear()
    template.send_keys("{{activity_type}} | {{call_outcome}}")
    wait_until(lambda: by_id(browser, "preview").text == "Call | Interested", "the preview", 30)
    shot(browser, tmp_path, "admin")


def test_calls_turned_off_on_the_page_reach_marketo_and_not_salesforce(
    stack: Stack, browser: Any, tmp_path: Path
) -> None:
    log_in(browser, stack)
    box = by_id(browser, "salesforce_log_calls")
    assert box.is_selected()
    box.click()
    by_id(browser, "save").click()
    assert "saved: salesforce_log_calls" in by_id(browser, "note").text
    [row] = [
        r.text
        for r in by_id(browser, "audit").find_elements("css selector", "tr")
        if "salesforce_log_calls" in r.text
    ]
    assert "page:ada" in row and "true → false" in row
    shot(browser, tmp_path, "calls-off")
    with Store(stack.settings.database_url) as store:
        revision = load(store.engine).revision
        assert load(store.engine).settings.salesforce_log_calls is False
    router = next(w for w in stack.workers if w.name == "activities")
    wait_until(
        lambda: (
            f"admin settings revision {revision} applied" in router.log.read_text(errors="replace")
        ),
        "the router applying the change",
    )

    call, email = activity("RECEIVED_SALES_CALL", CONTACT), activity("SEND_SALES_EMAIL", CONTACT)
    registry = RegistryClient(stack.registry_url)
    publisher = Publisher(stack.bootstrap, registry)
    try:
        publisher.publish(
            SALES_ACTIVITIES, "SalesActivity", [(str(CONTACT), call), (str(CONTACT), email)]
        )
        publisher.flush()
    finally:
        del publisher
        registry.close()
    # The email is the control: its Task shows the Salesforce sink delivers.
    wait_until(
        lambda: in_marketo(stack, call["activity_id"]) and in_marketo(stack, email["activity_id"]),
        "both activities in Marketo",
    )
    wait_until(lambda: email["activity_id"] in task_ids(stack), "the email's Task")
    stack.wait_drained(
        "salesforce-sink",
        OUTBOUND_SALESFORCE_TASKS,
        written(stack.bootstrap, (OUTBOUND_SALESFORCE_TASKS,)),
        timeout_s=WAIT_S,
    )
    assert call["activity_id"] not in task_ids(stack)


def test_a_dead_letter_replays_from_the_page_after_its_cause_is_fixed(
    stack: Stack, browser: Any, tmp_path: Path
) -> None:
    unknown = activity("SEND_SALES_EMAIL", LEAD)  # LEAD is not in the store yet
    registry = RegistryClient(stack.registry_url)
    publisher = Publisher(stack.bootstrap, registry)
    try:
        publisher.publish(SALES_ACTIVITIES, "SalesActivity", [(str(LEAD), unknown)])
        publisher.flush()
    finally:
        del publisher
        registry.close()

    def dead() -> list[Any]:
        return [
            m
            for m in read_topic(stack.bootstrap, dlq_topic(SALES_ACTIVITIES), idle_s=0.5)
            if m.key() == str(LEAD).encode()
        ]

    wait_until(dead, "the unknown person's dead letter")
    [letter] = dead()
    position = f"{letter.partition()}:{letter.offset()}"

    log_in(browser, stack)
    browser.get(f"{stack.admin_url}/ui/dlq/{SALES_ACTIVITIES}")
    row = by_id(browser, "letters").find_element("css selector", f'tr[data-position="{position}"]')
    assert "PersonUnknown" in row.text and "person_unknown" in row.text
    shot(browser, tmp_path, "dead-letters")

    with Store(stack.settings.database_url) as store:  # the cause, fixed
        store.apply_people([person(LEAD)], [])
    before = written(stack.bootstrap, (SALES_ACTIVITIES,))
    row.find_element("css selector", 'input[name="position"]').click()
    assert by_id(browser, "dry-run").is_selected()
    by_id(browser, "replay-selected").click()
    assert by_id(browser, "replay-result").text == "1 dead letters would be replayed (dry run)."
    assert position in by_id(browser, "letters").text
    assert written(stack.bootstrap, (SALES_ACTIVITIES,)) == before  # a dry run publishes nothing

    browser.get(f"{stack.admin_url}/ui/dlq/{SALES_ACTIVITIES}")
    by_id(browser, "dry-run").click()
    by_id(browser, "letters").find_element(
        "css selector", f'tr[data-position="{position}"] button[name="one"]'
    ).click()
    assert by_id(browser, "replay-result").text == "1 dead letters replayed."
    shot(browser, tmp_path, "replayed")
    wait_until(
        lambda: in_marketo(stack, unknown["activity_id"]), "the replayed activity in Marketo"
    )


def test_a_change_without_the_csrf_token_is_refused(
    stack: Stack, browser: Any, tmp_path: Path
) -> None:
    log_in(browser, stack)
    by_id(browser, "settings-form")
    with Store(stack.settings.database_url) as store:
        audited = len(stored.audit_log(store.engine))
    post = """
        const [header, done] = [arguments[0], arguments[arguments.length - 1]];
        const csrf = document.querySelector('input[name="csrf"]').value;
        fetch("/ui/settings", {method: "POST", credentials: "same-origin",
            headers: header ? {"X-CSRF-Token": csrf} : {},
            body: new URLSearchParams({unsubscribe_reconcile_at: "03:00"})})
          .then(r => done(r.status), e => done(String(e)));"""
    browser.set_script_timeout(30)
    assert browser.execute_async_script(post, False) == 403  # the cookie alone: refused
    with Store(stack.settings.database_url) as store:
        assert len(stored.audit_log(store.engine)) == audited
    assert browser.execute_async_script(post, True) == 200  # with the session's token
    with Store(stack.settings.database_url) as store:
        assert load(store.engine).settings.unsubscribe_reconcile_at == "03:00"
    browser.get(f"{stack.admin_url}/ui/")  # the whole page, charts sampled meanwhile
    by_id(browser, "status")
    shot(browser, tmp_path, "status")
