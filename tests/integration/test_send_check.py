"""Send checks -> send-check worker process -> decisions (SPEC S10), on a real broker and
store, against the Marketo sandbox over HTTP: OK, UNSUBSCRIBED (the store, one lead, one
of two leads sharing the email), CHECK_DISABLED after a live settings change, and
CHECK_UNAVAILABLE whenever Marketo cannot answer in time (faults, slow, 606, 607, the
sandbox stopped, wrong credentials); a burst of 300+ checks looked up in few calls, one of
them a POST with `_method=GET`; one decision per check across kill -9.
"""

from __future__ import annotations

import random
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, cast

import httpx
import pytest
from sqlalchemy import insert

from actions_sync.admin import set_value
from actions_sync.kafka import dlq_topic, read_topic
from actions_sync.publish import Publisher
from actions_sync.serialization import Deserializer, RegistryClient
from actions_sync.store import Store
from actions_sync.store.unsubscribes import unsubscribes
from actions_sync.topics import SEND_CHECKS, SEND_DECISIONS
from app.process import stop
from app.stack import Stack, http_client
from tests.support.stacks import stack_settings

pytestmark = pytest.mark.slow

TOPICS = (SEND_CHECKS, SEND_DECISIONS)
STALE = datetime(2026, 1, 1, tzinfo=UTC)
CREDENTIALS = {
    "grant_type": "client_credentials",
    "client_id": "actions-sync",
    "client_secret": "sandbox-secret",
}


class Checks:
    """Publishes send checks and reads the decisions back, decoded, by check id."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.registry = RegistryClient(stack.registry_url)
        self.publisher = Publisher(stack.bootstrap, self.registry)
        self.decode = Deserializer(self.registry, "SendDecision")

    def send(self, *people: tuple[int, str], requested_at: datetime | None = None) -> list[str]:
        checks: list[dict[str, Any]] = [
            {
                "check_id": str(uuid.uuid4()),
                "marketo_id": marketo_id,
                "email": email,
                "requested_at": requested_at or datetime.now(UTC),
            }
            for marketo_id, email in people
        ]
        self.publisher.publish(
            SEND_CHECKS, "SendCheck", [(str(c["marketo_id"]), c) for c in checks]
        )
        self.publisher.flush()
        return [c["check_id"] for c in checks]

    def decisions(self) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for msg in read_topic(self.stack.bootstrap, SEND_DECISIONS, idle_s=0.5):
            decision = self.decode(msg.value())
            out[decision["check_id"]].append(decision)
        return out

    def wait(self, ids: list[str], timeout_s: float = 60) -> dict[str, str]:
        """check id -> reason, once every one of `ids` is answered."""
        deadline = time.monotonic() + timeout_s
        while True:
            got = self.decisions()
            if all(i in got for i in ids):
                return {i: reason(got[i][0]) for i in ids}
            self.stack.check_workers()
            assert time.monotonic() < deadline, (
                f"{sum(i in got for i in ids)} of {len(ids)}"
                f" checks answered in {timeout_s:.0f}s; logs in {self.stack.logdir}"
            )
            time.sleep(0.3)

    def ready(self) -> None:
        """Wait until a worker answers: the tests' checks are sent once it runs (a check
        read after its deadline is CHECK_UNAVAILABLE). The warm-up check is stale
        already, so it is answered without a Marketo call."""
        self.wait(self.send((0, "warm-up@example.com"), requested_at=STALE), timeout_s=90)

    def close(self) -> None:
        self.registry.close()


def reason(decision: dict[str, Any]) -> str:
    """`allowed/REASON`, so that a wrong `allowed` shows in the same assertion."""
    return f"{'allowed' if decision['allowed'] else 'blocked'}/{decision['reason']}"


@pytest.fixture
def stack(kafka: str, registry: str, tmp_path: Any) -> Iterator[Stack]:
    settings = stack_settings(kafka, registry, tmp_path, TOPICS)
    with Store(settings.database_url) as store:
        store.migrate()
    set_value(settings, "marketo_unsubscribe_check", "true")
    with Stack(settings) as running:
        yield running


@pytest.fixture
def checks(stack: Stack) -> Iterator[Checks]:
    c = Checks(stack)
    yield c
    c.close()


def marketo_sync(
    url: str, *leads: dict[str, Any], action: str = "createOrUpdate", lookup: str = "email"
) -> list[dict[str, Any]]:
    """Change leads as people in the Marketo org do (control route: no API budget)."""
    answer = http_client().post(
        f"{url}/_sandbox/marketo/leads",
        timeout=30,
        json={"action": action, "lookupField": lookup, "input": list(leads)},
    )
    answer.raise_for_status()
    return list(answer.json()["result"])


def lookups(url: str) -> list[dict[str, Any]]:
    """The lead lookups the sandbox answered (its journal)."""
    return [
        e
        for e in http_client().get(f"{url}/_sandbox/journal", timeout=30).json()
        if e["path"] == "/rest/v1/leads.json"
    ]


def faults(url: str, **plan: float) -> None:
    http_client().post(f"{url}/_sandbox/faults", json=plan, timeout=10).raise_for_status()


def store_unsubscribe(stack: Stack, marketo_id: int, email: str) -> None:
    with Store(stack.settings.database_url) as store, store.engine.begin() as conn:
        conn.execute(
            insert(unsubscribes).values(
                marketo_id=marketo_id, email=email, source="MANUAL", occurred_at=datetime.now(UTC)
            )
        )


def wait_for(predicate: Callable[[], bool], what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"{what} not within {timeout_s:.0f}s"
        time.sleep(0.3)


def test_checks_are_answered_from_the_store_and_marketo_and_follow_the_setting(
    stack: Stack, checks: Checks
) -> None:
    marketo = stack.sandbox("marketo", "--seed-people", "20")
    marketo_sync(marketo, {"email": "person3@example.com", "unsubscribed": True})
    twin = marketo_sync(marketo, {"email": "person4@example.com"}, action="createDuplicate")
    marketo_sync(marketo, {"id": 4, "unsubscribed": True}, lookup="id")  # one of the two
    store_unsubscribe(stack, 5, "person5@example.com")
    stack.add_worker(
        "send-check",
        {"ACTIONS_SYNC_MARKETO_URL": marketo, "ACTIONS_SYNC_SEND_CHECK_DEADLINE_S": "10"},
    )
    checks.ready()
    ok, one, shared, held, nobody = checks.send(
        (1, "person1@example.com"),
        (3, "person3@example.com"),
        (twin[0]["id"], "person4@example.com"),
        (5, "person5@example.com"),
        (99, "nobody@example.com"),
    )
    checks.send((8, " "))  # no email to look up: a rule violation
    checks.publisher.publish_raw(SEND_CHECKS, [(b"7", b"not avro")])
    checks.publisher.flush()

    assert checks.wait([ok, one, shared, held, nobody]) == {
        ok: "allowed/OK",
        one: "blocked/UNSUBSCRIBED",
        shared: "blocked/UNSUBSCRIBED",
        held: "blocked/UNSUBSCRIBED",
        nobody: "allowed/OK",
    }
    asked = " ".join(e["query"] for e in lookups(marketo))
    assert "person1@example.com" in asked and "person5@example.com" not in asked
    wait_for(
        lambda: len(read_topic(stack.bootstrap, dlq_topic(SEND_CHECKS), idle_s=0.5)) == 2,
        "the undecodable and the email-less check on the DLQ",
    )

    set_value(stack.settings, "marketo_unsubscribe_check", "false")  # live: no restart
    answers: list[str] = []
    while not answers or answers[-1] != "allowed/CHECK_DISABLED":
        assert len(answers) < 60, f"the setting change never applied: {answers}"
        answers.append(next(iter(checks.wait(checks.send((3, "person3@example.com"))).values())))
    before = len(lookups(marketo))
    late = checks.send((3, "person3@example.com"), (5, "person5@example.com"))
    assert set(checks.wait(late).values()) == {"allowed/CHECK_DISABLED"}
    assert len(lookups(marketo)) == before  # no call while the check is off


def burst(marketo: str, calls: int) -> None:
    """Another integration spending the instance's rate window (606 for everyone)."""
    with httpx.Client(base_url=marketo, timeout=30) as http:
        token = http.get("/identity/oauth/token", params=CREDENTIALS).json()["access_token"]
        with ThreadPoolExecutor(8) as pool:
            list(
                pool.map(
                    lambda _: http.get(
                        "/rest/v1/leads/describe.json", headers={"Authorization": f"Bearer {token}"}
                    ),
                    range(calls),
                )
            )


def codes_to_worker(marketo: str, since: int) -> list[str | None]:
    return [e["code"] for e in lookups(marketo)[since:]]


def test_marketo_unable_to_answer_in_time_blocks_the_send(stack: Stack, checks: Checks) -> None:
    marketo = stack.sandbox(
        "marketo", "--seed-people", "20", "--set", "rate_calls=30", "--set", "daily_quota=400"
    )
    stack.add_worker(
        "send-check",
        {
            "ACTIONS_SYNC_MARKETO_URL": marketo,
            "ACTIONS_SYNC_SEND_CHECK_CALLS_PER_WINDOW": "20",
            "ACTIONS_SYNC_SEND_CHECK_DEADLINE_S": "5",
        },
    )
    checks.ready()
    person = (1, "person1@example.com")
    assert set(checks.wait(checks.send(person)).values()) == {"allowed/OK"}

    # 604/608/611/713 on every call: retried until the deadline, then blocked
    faults(marketo, error_rate=1.0)
    seen = len(lookups(marketo))
    assert set(checks.wait(checks.send(person)).values()) == {"blocked/CHECK_UNAVAILABLE"}
    assert set(codes_to_worker(marketo, seen)) <= {"604", "608", "611", "713"}
    # slow: Marketo answers after the 5 s deadline
    faults(marketo, error_rate=0.0, latency_ms=8000)
    assert set(checks.wait(checks.send(person)).values()) == {"blocked/CHECK_UNAVAILABLE"}
    faults(marketo, latency_ms=0)
    assert set(checks.wait(checks.send(person)).values()) == {"allowed/OK"}
    # 606: another integration spent the rolling window; waiting for it passes the deadline
    burst(marketo, 30)
    seen = len(lookups(marketo))
    assert set(checks.wait(checks.send(person)).values()) == {"blocked/CHECK_UNAVAILABLE"}
    assert "606" in codes_to_worker(marketo, seen)
    # a check read after its deadline (a backlog) is answered at once, without a call
    seen = len(lookups(marketo))
    stale = checks.send(person, requested_at=STALE)
    assert set(checks.wait(stale).values()) == {"blocked/CHECK_UNAVAILABLE"}
    assert len(lookups(marketo)) == seen


def test_a_used_up_daily_quota_blocks_without_calling_again(stack: Stack, checks: Checks) -> None:
    marketo = stack.sandbox("marketo", "--seed-people", "20", "--set", "daily_quota=3")
    stack.add_worker(
        "send-check",
        {"ACTIONS_SYNC_MARKETO_URL": marketo, "ACTIONS_SYNC_SEND_CHECK_DEADLINE_S": "10"},
    )
    checks.ready()
    person = (1, "person1@example.com")
    answers = [checks.wait(checks.send(person)) for _ in range(4)]  # 3 calls, then 607

    assert [next(iter(a.values())) for a in answers] == ["allowed/OK"] * 3 + [
        "blocked/CHECK_UNAVAILABLE"
    ]
    assert codes_to_worker(marketo, 0) == [None, None, None, "607"]
    http_client().post(f"{marketo}/_sandbox/marketo/quota/reset", timeout=10).raise_for_status()
    assert set(checks.wait(checks.send(person, person)).values()) == {
        "blocked/CHECK_UNAVAILABLE"
    }  # paused until Marketo's midnight: no spinning
    assert len(lookups(marketo)) == 4


def test_sandbox_stopped_or_wrong_credentials_block_the_send(stack: Stack, checks: Checks) -> None:
    marketo = stack.sandbox("marketo", "--seed-people", "20")
    wrong = stack.add_worker(
        "send-check",
        {
            "ACTIONS_SYNC_MARKETO_URL": marketo,
            "ACTIONS_SYNC_MARKETO_CLIENT_SECRET": "wrong",
            "ACTIONS_SYNC_SEND_CHECK_DEADLINE_S": "5",
        },
    )
    checks.ready()
    person = (1, "person1@example.com")
    assert set(checks.wait(checks.send(person, person)).values()) == {"blocked/CHECK_UNAVAILABLE"}
    assert not lookups(marketo)  # refused at the identity endpoint (HTTP 401)
    stop(wrong.proc)
    stack.workers.remove(wrong)

    stack.add_worker(
        "send-check",
        {"ACTIONS_SYNC_MARKETO_URL": marketo, "ACTIONS_SYNC_SEND_CHECK_DEADLINE_S": "5"},
    )
    checks.ready()
    assert set(checks.wait(checks.send(person)).values()) == {"allowed/OK"}
    port = str(marketo.rsplit(":", 1)[1])
    sandbox = next(p for p in stack._sandboxes if port in cast("list[str]", p.args))  # argv list
    stop(sandbox)
    assert set(checks.wait(checks.send(person, person)).values()) == {"blocked/CHECK_UNAVAILABLE"}


def test_a_burst_of_checks_is_looked_up_in_few_calls_the_long_one_as_a_form(
    stack: Stack, checks: Checks
) -> None:
    marketo = stack.sandbox("marketo")
    emails = [f"a.rather.long.address.of.person.{i:04d}@sales.example.com" for i in range(350)]
    created = marketo_sync(
        marketo, *({"email": e, "unsubscribed": i % 7 == 0} for i, e in enumerate(emails))
    )
    ids = checks.send(
        *((c["id"], e) for c, e in zip(created, emails, strict=True)), (created[0]["id"], emails[0])
    )  # the same email twice: one lookup
    stack.add_worker(
        "send-check",
        {
            "ACTIONS_SYNC_MARKETO_URL": marketo,
            "ACTIONS_SYNC_SEND_CHECK_CALLS_PER_WINDOW": "100",
            "ACTIONS_SYNC_SEND_CHECK_DEADLINE_S": "60",
        },
    )

    answers = checks.wait(ids)
    expected = ["blocked/UNSUBSCRIBED" if i % 7 == 0 else "allowed/OK" for i in range(350)] + [
        "blocked/UNSUBSCRIBED"
    ]
    assert [answers[i] for i in ids] == expected
    calls = lookups(marketo)
    assert 2 <= len(calls) <= 4  # 350 distinct emails: 300 + 50, or a little more split
    assert any(c["method"] == "POST" and c["query"] == "_method=GET" for c in calls)
    assert all(c["status"] == 200 and c["code"] is None for c in calls)


PEOPLE = 2000
REPLAY = {
    "ACTIONS_SYNC_SEND_CHECK_CALLS_PER_WINDOW": "100",
    "ACTIONS_SYNC_SEND_CHECK_MAX_IN_FLIGHT": "1",
    "ACTIONS_SYNC_SEND_CHECK_BATCH_SIZE": "300",
    "ACTIONS_SYNC_SEND_CHECK_DEADLINE_S": "300",
}  # restarts take seconds each


def many_checks(stack: Stack, checks: Checks) -> tuple[str, list[str], set[str]]:
    """A slow sandbox (250 ms a call) with PEOPLE leads, 1 in 5 unsubscribed, and 20,000
    checks of them: (sandbox URL, check ids, the ids to block)."""
    marketo = stack.sandbox("marketo", "--latency-ms", "250")
    leads = marketo_sync(
        marketo,
        *({"email": f"person{i}@example.com", "unsubscribed": i % 5 == 0} for i in range(PEOPLE)),
    )
    ids = checks.send(
        *((leads[n % PEOPLE]["id"], f"person{n % PEOPLE}@example.com") for n in range(20_000))
    )
    return marketo, ids, {i for n, i in enumerate(ids) if (n % PEOPLE) % 5 == 0}


def assert_answered_once(checks: Checks, ids: list[str], blocked: set[str]) -> None:
    checks.wait(ids, timeout_s=180)
    decisions = checks.decisions()
    assert set(decisions) == set(ids)
    # one decision each: a replay publishes the decision given, decided_at included
    assert all(len({tuple(sorted(d.items())) for d in decisions[i]}) == 1 for i in ids)
    assert {reason(decisions[i][0]) for i in blocked} == {"blocked/UNSUBSCRIBED"}
    assert {reason(decisions[i][0]) for i in set(ids) - blocked} == {"allowed/OK"}


def test_kill_9_mid_batch_answers_every_check_once(stack: Stack, checks: Checks) -> None:
    marketo, ids, blocked = many_checks(stack, checks)
    env = {"ACTIONS_SYNC_MARKETO_URL": marketo, **REPLAY}
    worker = stack.add_worker("send-check", env)
    for _ in range(3):  # kill once this copy looks up, at a random moment of a batch
        seen = len(lookups(marketo))

        def more(seen: int = seen) -> bool:
            return len(lookups(marketo)) > seen + 2

        wait_for(more, f"lookups after a restart (logs in {stack.logdir})")
        time.sleep(random.uniform(0, 0.5))
        worker.proc.kill()
        worker.proc.wait()
        stack.workers.remove(worker)
        worker = stack.add_worker("send-check", env)
    assert len(checks.decisions()) < len(ids), "all answered before the last kill"

    assert_answered_once(checks, ids, blocked)


def test_a_second_copy_joining_mid_stream_answers_each_check_once(
    stack: Stack, checks: Checks
) -> None:
    marketo, ids, blocked = many_checks(stack, checks)
    env = {"ACTIONS_SYNC_MARKETO_URL": marketo, **REPLAY}
    first = stack.add_worker("send-check", env)
    wait_for(lambda: len(lookups(marketo)) > 2, f"lookups (logs in {stack.logdir})")
    second = stack.add_worker("send-check", env)  # partitions move while batches are out
    wait_for(lambda: stack.handled_by(second) > 0, "the second copy handling checks", 90)

    assert_answered_once(checks, ids, blocked)
    assert stack.handled_by(first) > 0
