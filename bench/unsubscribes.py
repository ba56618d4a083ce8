"""Unsubscribes both ways with Salesforce (SPEC S9): the whole flow as it runs in
production, at the Salesforce sandbox's real limits (the API_NOTES defaults: 200 records
a collection call, 2,000 rows a query page, 100,000 calls a day).

In one run, on the embedded stack (Tansu, registry, SQLite store) with the Salesforce
sandbox (in this process, so that its record writes can be counted) holding
`--unsubscribes + --optouts` people (each a Lead, about a third a Contact too; the store
knows them all, and last night's reconciliation is done), and the three S9 workers as
processes (`salesforce-source`, `unsubscribes`, `salesforce-optout-sink`, settings at
their defaults but the poll interval):
  - `--unsubscribes` people unsubscribe in Actions (an `Unsubscribe` on
    `actions.unsubscribes`, `occurred_at` = its publish time) and `--optouts` others are
    opted out in Salesforce by a person (an API user of their own, so that their writes
    carry that user's `LastModifiedById`, one PATCH of their Lead each), the two kinds
    shuffled over `--span-s`;
  - Actions -> Salesforce: from `occurred_at` to the SystemModstamp of the sync's write
    of the person's last record (their Lead, and Contact if any); baseline: the raw
    publish -> consume time of `actions.unsubscribes` for a plain consumer;
  - Salesforce -> Actions: from the person's write (its SystemModstamp) to the row in the
    store's `unsubscribes` (read every 0.25 s); baselines: the poll interval, and the
    time to `salesforce.optouts` (the source's share);
  - API calls per opt-out on the push side (collection calls in the sandbox's request
    journal / Actions unsubscribes) and per person's opt-out on the pull side (queries);
  - writes per edit: the sync's record writes in the org (counted in the sandbox) per
    record an Actions unsubscribe opts out, store rows per person's opt-out, and what the
    source published (the sync's own writes must never come back: echoes = 0).

Targets: A -> SF p99 <= 2 s; SF -> A p99 <= poll interval + 10 s; push calls per opt-out
<= 0.02; writes per edit <= 1; echoes 0.

    .venv/bin/python bench/unsubscribes.py [--unsubscribes 20000] [--optouts 20000]
                                           [--span-s 120] [--poll-s 30]
"""

from __future__ import annotations

import argparse
import queue
import random
import statistics
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
from _common import (
    Arrivals,
    add_backend_options,
    bench_stack,
    cpu_seconds,
    load_average,
    metric_sum,
    pct,
)
from sqlalchemy import select

from actions_sync.publish import Publisher
from actions_sync.serialization import RegistryClient
from actions_sync.settings import Settings
from actions_sync.store import Store
from actions_sync.store.unsubscribes import unsubscribes
from actions_sync.topics import OUTBOUND_SALESFORCE_OPTOUTS, SALESFORCE_OPTOUTS, UNSUBSCRIBES
from app.stack import Stack
from sandboxes.base import JOURNAL_KEY, SandboxServer
from sandboxes.population import generate
from sandboxes.salesforce import STATE_KEY, SalesforceConfig, create_app
from sandboxes.salesforce.state import SalesforceState
from sandboxes.salesforce.timefmt import parse_datetime
from streams import unsubscribe_reconcile
from streams.rules.people import person_row

PERSON = ("bench-person", "bench-person-secret", "0050000000000PERSN")  # an API user
OPTED = "HasOptedOutOfEmail"
CHANGED_AT = datetime(2026, 6, 1, tzinfo=UTC)
TOPICS = (UNSUBSCRIBES, SALESFORCE_OPTOUTS, OUTBOUND_SALESFORCE_OPTOUTS)
PUSH = "/composite/sobjects"  # the opt-out sink's collection updates
PULL = ("/query", "/queryAll", "/deleted/", "/updated/")  # the source's reads
PEOPLE_WRITERS = 4  # threads editing as the person (a PATCH each)


class Person:
    """Opts Leads out as a person would, through the API as their own user, from a few
    threads fed by a queue; the ids edited so far."""

    def __init__(self, url: str) -> None:
        token = httpx.post(
            f"{url}/services/oauth2/token",
            data={
                "grant_type": "client_credentials",
                "client_id": PERSON[0],
                "client_secret": PERSON[1],
            },
            timeout=30,
        ).json()["access_token"]
        self._base = f"{url}/services/data/v62.0/sobjects/Lead"
        self._headers = {"Authorization": f"Bearer {token}"}
        self.todo: queue.Queue[str | None] = queue.Queue()
        self.done = 0
        self.failed: list[str] = []
        self._threads = [
            threading.Thread(target=self._run, daemon=True) for _ in range(PEOPLE_WRITERS)
        ]
        for thread in self._threads:
            thread.start()

    def _run(self) -> None:
        with httpx.Client(headers=self._headers, timeout=60) as client:
            while (lead := self.todo.get()) is not None:
                answer = client.patch(f"{self._base}/{lead}", json={OPTED: True})
                if answer.status_code == 204:
                    self.done += 1
                else:
                    self.failed.append(f"{lead}: {answer.status_code} {answer.text[:200]}")

    def close(self) -> None:
        for _ in self._threads:
            self.todo.put(None)
        for thread in self._threads:
            thread.join()
        if self.failed:
            raise SystemExit(f"{len(self.failed)} of the person's edits failed: {self.failed[0]}")


class WriteCount:
    """Counts the org's record writes per (user, Id): wraps the sandbox state's `modify`,
    through which every update of a record goes (API calls and people's edits alike)."""

    def __init__(self, state: SalesforceState) -> None:
        self.writes: Counter[tuple[str, str]] = Counter()
        self._modify = state.modify

        def modify(
            record: dict[str, Any], values: dict[str, Any], user: str, now: str, tx: Any
        ) -> None:
            self.writes[user, record["Id"]] += 1
            self._modify(record, values, user, now, tx)

        state.modify = modify  # type: ignore[method-assign]


class StoreWatch:
    """Reads the store's `unsubscribes` every 0.25 s in a thread: Marketo id -> when its
    row was first seen (wall clock)."""

    def __init__(self, database_url: str) -> None:
        self.seen: dict[int, float] = {}
        self._stop = threading.Event()
        self._store = Store(database_url)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with self._store.engine.connect() as conn:
            while not self._stop.is_set():
                now = time.time()
                for (mid,) in conn.execute(select(unsubscribes.c.marketo_id)):
                    self.seen.setdefault(int(mid), now)
                conn.rollback()  # a fresh snapshot next time
                self._stop.wait(0.25)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._store.close()


def seed_store(database_url: str, people: list[dict[str, Any]]) -> None:
    """Every person known to the store with their Salesforce ids, as the people sync
    leaves them; last night's reconciliation finished (on a fresh store the unsubscribes
    worker would start one in its first minute, walking both sides mid-run)."""
    with Store(database_url) as store:
        store.save_checkpoint(
            unsubscribe_reconcile.CHECKPOINT,
            {"phase": "done", "finished_at": datetime.now(UTC).isoformat()},
        )
        for start in range(0, len(people), 5000):
            store.apply_people(
                [
                    person_row({**p, "changed_at": CHANGED_AT, "deleted": False})
                    for p in people[start : start + 5000]
                ],
                [],
            )


def unsubscribe(marketo_id: int) -> tuple[str, dict[str, Any]]:
    return str(marketo_id), {
        "event_id": str(uuid.uuid4()),
        "marketo_id": marketo_id,
        "email": f"person{marketo_id}@example.com",
        "occurred_at": datetime.now(UTC),
        "source": "CLICKED_LINK",
    }


def schedule(
    actions: list[int], salesforce: list[int], span_s: float, seed: int = 7
) -> Iterator[tuple[float, str, int]]:
    """(offset s, side, Marketo id): both kinds shuffled, evenly over `span_s`."""
    events = [("actions", m) for m in actions] + [("salesforce", m) for m in salesforce]
    random.Random(seed).shuffle(events)
    for n, (side, mid) in enumerate(events):
        yield span_s * n / len(events), side, mid


def records(state: SalesforceState) -> dict[str, dict[str, Any]]:
    """Every Lead and Contact of the org, by Id (copies)."""
    with state.lock:
        return {
            i: dict(r) for sobject in ("Lead", "Contact") for i, r in state.records[sobject].items()
        }


def stamp(record: dict[str, Any]) -> float:
    moment = parse_datetime(record["SystemModstamp"])
    assert moment is not None
    return moment.timestamp()


def delivered(metrics_url: str) -> float:
    """Opt-out records the sink has resolved (written, or found written already)."""
    return sum(
        metric_sum(metrics_url, "actions_sync_deliveries_total", outcome=outcome)
        for outcome in ("accepted", "skipped")
    )


def wait_for(what: str, done: Any, stack: Stack, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        stack.check_workers()
        if time.monotonic() > deadline:
            raise SystemExit(f"{what}: not within {timeout_s:.0f} s; logs in {stack.logdir}")
        time.sleep(0.25)


def run(args: argparse.Namespace) -> None:
    total = args.unsubscribes + args.optouts
    people = list(generate(total + 2))  # the last two: warm-up
    by_id = {p["marketo_id"]: p for p in people}
    actions = list(range(1, args.unsubscribes + 1))
    salesforce = list(range(args.unsubscribes + 1, total + 1))
    targets = {
        m: [by_id[m]["sfdc_lead_id"], *filter(None, [by_id[m]["sfdc_contact_id"]])]
        for m in [*actions, total + 1]
    }
    writes_expected = sum(len(targets[m]) for m in actions)
    published: dict[str, float] = {}
    config = SalesforceConfig(seed_people=total + 2, users=(":".join(PERSON),))
    app = create_app(config)
    state, counted = app[STATE_KEY], WriteCount(app[STATE_KEY])
    integration = config.integration_user_id
    with SandboxServer(app) as server, bench_stack(args, TOPICS) as stack:
        url = server.url
        seed_store(stack.settings.database_url, people)
        env = {
            "ACTIONS_SYNC_SALESFORCE_URL": url,
            "ACTIONS_SYNC_SALESFORCE_POLL_INTERVAL_S": str(args.poll_s),
        }
        workers = [
            stack.add_worker(name, env)
            for name in ("salesforce-source", "unsubscribes", "salesforce-optout-sink")
        ]
        sink = workers[2]
        registry = RegistryClient(stack.registry_url)
        publisher = Publisher(stack.bootstrap, registry)
        raw = Arrivals(stack.bootstrap, UNSUBSCRIBES)
        pulled = Arrivals(stack.bootstrap, SALESFORCE_OPTOUTS)
        outbound = Arrivals(stack.bootstrap, OUTBOUND_SALESFORCE_OPTOUTS)
        watch = StoreWatch(stack.settings.database_url)
        person = Person(url)
        # Warm-up: one of each way through, so every worker has joined and polled.
        publisher.publish(UNSUBSCRIBES, "Unsubscribe", [unsubscribe(total + 1)])
        publisher.flush()
        person.todo.put(by_id[total + 2]["sfdc_lead_id"])
        wait_for(
            "the warm-up",
            lambda: (
                {total + 1, total + 2} <= watch.seen.keys()
                and delivered(sink.metrics_url) >= len(targets[total + 1])
            ),
            stack,
            3 * args.poll_s + 120,
        )
        cpu_before = {w.name: cpu_seconds([w.proc.pid]) for w in workers}
        calls_before = len(app[JOURNAL_KEY].entries())
        writes_before = counted.writes.copy()
        print(
            f"warm-up done; load average {load_average()}; "
            f"{total:,} edits over {args.span_s:.0f} s, poll every {args.poll_s:.0f} s"
        )

        started = time.monotonic()
        pending: list[tuple[str, dict[str, Any]]] = []
        for offset, side, mid in schedule(actions, salesforce, args.span_s):
            ahead = started + offset - time.monotonic()
            if ahead > 0.02 or len(pending) >= 200:  # publish what is due, then wait
                if pending:
                    publisher.publish(UNSUBSCRIBES, "Unsubscribe", pending)
                    publisher.flush()
                    pending = []
                if ahead > 0:
                    time.sleep(ahead)
            if side == "actions":
                pending.append(unsubscribe(mid))
                published[str(mid)] = time.time()
            else:
                person.todo.put(by_id[mid]["sfdc_lead_id"])
        publisher.publish(UNSUBSCRIBES, "Unsubscribe", pending)
        publisher.flush()
        person.close()
        driven_s = time.monotonic() - started
        wait_for(
            "every Actions unsubscribe written to Salesforce",
            lambda: delivered(sink.metrics_url) >= writes_expected + len(targets[total + 1]),
            stack,
            600,
        )
        wait_for(
            "every Salesforce opt-out in the store",
            lambda: set(salesforce) <= watch.seen.keys(),
            stack,
            3 * args.poll_s + 600,
        )
        time.sleep(args.poll_s + 5)  # one more poll: an echo would come now
        stack.check_workers()
        cpu = {w.name: cpu_seconds([w.proc.pid]) - cpu_before[w.name] for w in workers}
        load = load_average()
        watch.close()
        raw.close()
        pulled.close()
        outbound.close()
        registry.close()
        entries = app[JOURNAL_KEY].entries()[calls_before:]
        sfdc = records(state)
        sync_writes = counted.writes - writes_before
        accepted = metric_sum(
            sink.metrics_url, "actions_sync_deliveries_total", outcome="accepted"
        ) - len(targets[total + 1])
        outcomes = {
            o: metric_sum(sink.metrics_url, "actions_sync_deliveries_total", outcome=o)
            for o in ("accepted", "skipped", "rejected", "retried")
        }
        source_published = (
            metric_sum(workers[0].metrics_url, "actions_sync_records_published_total") - 1
        )
        pulled_in_store = (
            metric_sum(
                workers[1].metrics_url,
                "actions_sync_unsubscribes_synced_total",
                direction="from_salesforce",
            )
            - 1
        )

    # Actions -> Salesforce
    a_to_s, unwritten = [], 0
    for mid in actions:
        written = [sfdc[i] for i in targets[mid]]
        if not all(r[OPTED] and r["LastModifiedById"] == integration for r in written):
            unwritten += 1
            continue
        a_to_s.append(max(map(stamp, written)) - published[str(mid)])
    topic = [raw.first[k] - published[k] for k in published]
    # Salesforce -> Actions
    s_to_a, to_topic = [], []
    for mid in salesforce:
        lead = sfdc[by_id[mid]["sfdc_lead_id"]]
        edited = stamp(lead)
        s_to_a.append(watch.seen[mid] - edited)
        to_topic.append(pulled.first[lead["Id"]] - edited)
    echoes = sum(1 for m in actions for i in targets[m] if i in pulled.first)
    push = sum(1 for e in entries if e.method == "PATCH" and e.path.endswith(PUSH))
    pull = sum(1 for e in entries if e.method == "GET" and any(p in e.path for p in PULL))
    limited = sum(1 for e in entries if e.code == "REQUEST_LIMIT_EXCEEDED")
    by_sync = {i: n for (user, i), n in sync_writes.items() if user == integration}
    written_twice = sum(1 for n in by_sync.values() if n > 1)
    wanted = {i for m in actions for i in targets[m]}

    print(
        f"\n{args.unsubscribes:,} Actions unsubscribes + {args.optouts:,} Salesforce "
        f"opt-outs, shuffled, driven in {driven_s:.0f} s (asked {args.span_s:.0f} s); "
        f"poll {args.poll_s:.0f} s; load average at the end {load}"
    )
    print("| measure | p50 | p99 | max | target | baseline (same run) |")
    print("|---|---|---|---|---|---|")
    print(
        f"| Actions -> Salesforce (occurred_at -> SystemModstamp of the sync's write) | "
        f"{pct(a_to_s, 0.5):.2f} s | {pct(a_to_s, 0.99):.2f} s | {max(a_to_s):.2f} s | "
        f"p99 <= 2 s | publish -> consume of `{UNSUBSCRIBES}`: p50 {pct(topic, 0.5):.3f} s,"
        f" p99 {pct(topic, 0.99):.3f} s |"
    )
    print(
        f"| Salesforce -> Actions (person's SystemModstamp -> store row) | "
        f"{pct(s_to_a, 0.5):.1f} s | {pct(s_to_a, 0.99):.1f} s | {max(s_to_a):.1f} s | "
        f"p99 <= {args.poll_s + 10:.0f} s | poll interval {args.poll_s:.0f} s; to "
        f"`{SALESFORCE_OPTOUTS}`: p50 {pct(to_topic, 0.5):.1f} s, p99 "
        f"{pct(to_topic, 0.99):.1f} s |"
    )
    full = -(-writes_expected // 200)  # the fewest calls: every collection 200 records
    print(
        f"\npush: {push} collection calls for {args.unsubscribes:,} unsubscribes "
        f"({writes_expected:,} records): {push / args.unsubscribes:.4f} calls per opt-out "
        f"(target <= 0.02; full collections: {full / args.unsubscribes:.4f}),"
        f" {writes_expected / max(push, 1):.0f} records per call; "
        f"pull: {pull} query calls for {args.optouts:,} opt-outs "
        f"({pull / args.optouts:.4f} per opt-out); REQUEST_LIMIT_EXCEEDED: {limited}"
    )
    print(
        f"writes per edit: the sync wrote {sum(by_sync.values()):,} records in Salesforce "
        f"for {writes_expected:,} to opt out ({sum(by_sync.values()) / writes_expected:.3f}"
        f"; {written_twice} written twice, {len(by_sync.keys() - wanted)} not asked for, "
        f"{unwritten} unsubscribes not written; the sink counted {accepted:,.0f} accepted"
        f"); store rows {pulled_in_store:,.0f} for "
        f"{args.optouts:,} person's opt-outs ({pulled_in_store / args.optouts:.3f}); the "
        f"source published {source_published:,.0f} ({source_published / args.optouts:.3f}"
        f" per opt-out), the sync's own writes among them (echoes): {echoes}"
    )
    print(
        f"opt-out records for the sink on `{OUTBOUND_SALESFORCE_OPTOUTS}`: "
        f"{outbound.records - len(targets[total + 1]):,} for {writes_expected:,} targets "
        f"({len(outbound.first) - len(targets[total + 1]):,} distinct); the sink's "
        f"deliveries: " + ", ".join(f"{o} {n:,.0f}" for o, n in outcomes.items())
    )
    print(
        "CPU s over the run: "
        + ", ".join(f"{n} {s:.1f}" for n, s in cpu.items())
        + f"; mean A->S {statistics.fmean(a_to_s):.2f} s"
    )


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--unsubscribes", type=int, default=20_000)
    cli.add_argument("--optouts", type=int, default=20_000)
    cli.add_argument("--span-s", type=float, default=120.0)
    cli.add_argument(
        "--poll-s", type=float, default=Settings.model_fields["salesforce_poll_interval_s"].default
    )
    add_backend_options(cli)
    args = cli.parse_args()
    if min(args.unsubscribes, args.optouts) < 1 or args.span_s <= 0 or args.poll_s <= 0:
        cli.error("--unsubscribes and --optouts must be >= 1, --span-s and --poll-s > 0")
    run(args)


if __name__ == "__main__":
    main()
