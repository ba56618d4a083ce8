"""Send-check latency and throughput (SPEC S10), against the Marketo sandbox at Marketo's
real limits (100 calls per rolling 20 s, 10 in flight, 300 filter values a call).

In one run, on the embedded stack (Tansu, registry) with one `actions-sync worker
send-check` process given the whole instance's limits (100 calls / 20 s, 10 in flight):
  0. baseline: 100 checks/s for `--baseline-s` with `marketo_unsubscribe_check` off (the
     same path, no Marketo call): the floor of decision latency on this machine now;
  a. paced: 100 checks/s for `--paced-s` with the check on (default deadline, 2 s):
     decision latency from `requested_at` to the decision's produce time, p50/p99/max,
     and the reasons (none should be CHECK_UNAVAILABLE);
  b. saturated: a backlog of `--backlog` checks (distinct emails) for a worker started
     with a 60 s deadline (so none expires: 40,000 take ~27 s at the ceiling):
     decisions/s from the first to the last lookup and end to end, emails per call,
     606/615 answers, the most calls in 20 s.

Targets: (a) p99 <= 300 ms; (b) >= 1,200 decisions/s, >= 80 % of the 1,500/s that
100 calls / 20 s x 300 emails allow, zero 606/615.

    .venv/bin/python bench/send_check.py [--paced-s 60] [--backlog 40000] [--latency-ms 0]
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import httpx
from _common import add_backend_options, bench_stack, busiest_window, journal
from confluent_kafka import OFFSET_END, Consumer, TopicPartition

from actions_sync.admin import set_value
from actions_sync.publish import Publisher
from actions_sync.serialization import Deserializer, RegistryClient
from actions_sync.topics import SEND_CHECKS, SEND_DECISIONS
from app.process import stop
from app.stack import Stack, Worker

LEADS = 60_000
CEILING = 1500.0  # decisions/s: 100 calls / 20 s x 300 emails


def email(i: int) -> str:
    return f"person{i % LEADS}@example.com"


class Decisions:
    """Reads decisions from the topic's end in a thread: check id -> (produce ms, reason)."""

    def __init__(self, stack: Stack, registry: RegistryClient) -> None:
        self.decode = Deserializer(registry, "SendDecision")
        self.seen: dict[str, tuple[int, str]] = {}
        self._stop = threading.Event()
        self._consumer = Consumer(
            {
                "bootstrap.servers": stack.bootstrap,
                "group.id": f"bench-{uuid.uuid4().hex[:6]}",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 10,
            }
        )
        parts = (
            self._consumer.list_topics(SEND_DECISIONS, timeout=10).topics[SEND_DECISIONS].partitions
        )
        self._consumer.assign([TopicPartition(SEND_DECISIONS, p, OFFSET_END) for p in parts])
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for msg in self._consumer.consume(1000, 0.1):
                if msg.error():
                    continue
                decision = self.decode(msg.value())
                self.seen.setdefault(decision["check_id"], (msg.timestamp()[1], decision["reason"]))

    def wait(self, ids: list[str], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not all(i in self.seen for i in ids):
            if time.monotonic() > deadline:
                missing = sum(i not in self.seen for i in ids)
                raise SystemExit(f"{missing} of {len(ids)} checks unanswered")
            time.sleep(0.1)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._consumer.close()


def paced(publisher: Publisher, rate: float, seconds: float, start: int) -> dict[str, int]:
    """Send `rate` checks a second for `seconds`; check id -> requested_at (epoch ms)."""
    sent: dict[str, int] = {}
    begun, n = time.monotonic(), 0
    while n < rate * seconds:
        due = begun + n / rate
        if (wait := due - time.monotonic()) > 0:
            time.sleep(wait)
        now = datetime.now(UTC)
        check: dict[str, Any] = {
            "check_id": str(uuid.uuid4()),
            "marketo_id": start + n + 1,
            "email": email(start + n),
            "requested_at": now,
        }
        publisher.publish(SEND_CHECKS, "SendCheck", [(str(check["marketo_id"]), check)])
        sent[check["check_id"]] = int(now.timestamp() * 1000)
        n += 1
    publisher.flush()
    return sent


def latency(name: str, sent: dict[str, int], decisions: Decisions) -> dict[str, Any]:
    ms = sorted(decisions.seen[i][0] - at for i, at in sent.items())
    reasons = Counter(decisions.seen[i][1] for i in sent)
    return {
        "phase": name,
        "checks": len(sent),
        "p50 ms": statistics.median(ms),
        "p99 ms": ms[int(len(ms) * 0.99) - 1],
        "max ms": ms[-1],
        "reasons": dict(reasons),
    }


def saturated(
    stack: Stack,
    marketo: str,
    publisher: Publisher,
    decisions: Decisions,
    env: dict[str, str],
    backlog: int,
) -> dict[str, Any]:
    calls_before = len(journal(marketo))
    ids: list[str] = []
    now = datetime.now(UTC)
    for i in range(backlog):
        check: dict[str, Any] = {
            "check_id": str(uuid.uuid4()),
            "marketo_id": i + 1,
            "email": email(i),
            "requested_at": now,
        }
        publisher.publish(SEND_CHECKS, "SendCheck", [(str(i + 1), check)])
        ids.append(check["check_id"])
    publisher.flush()
    begun = time.monotonic()
    worker = stack.add_worker("send-check", {**env, "ACTIONS_SYNC_SEND_CHECK_DEADLINE_S": "60"})
    decisions.wait(ids, timeout_s=600)
    wall = time.monotonic() - begun
    calls = [e for e in journal(marketo)[calls_before:] if e["path"] == "/rest/v1/leads.json"]
    ok = [e for e in calls if e["code"] is None and e["status"] == 200]
    stamps = sorted(e["at"] for e in calls)
    # n calls paced evenly span n - 1 intervals: count the decisions of n - 1 calls
    span = stamps[-1] - stamps[0]
    per_span = (len(calls) - 1) / len(calls)
    reasons = Counter(decisions.seen[i][1] for i in ids)
    looked_up = reasons["OK"] + reasons["UNSUBSCRIBED"]
    stop(worker.proc)
    stack.workers.remove(worker)
    return {
        "phase": "saturated",
        "checks": backlog,
        "lookup calls": len(calls),
        "emails per call": looked_up / max(len(ok), 1),
        "as _method=GET": sum(e["method"] == "POST" for e in calls),
        "decisions/s first->last lookup": looked_up * per_span / span,
        "share of 1,500/s": looked_up * per_span / span / CEILING,
        "decisions/s end to end (worker start incl.)": looked_up / wall,
        "606/615 answers": sum(e["code"] in ("606", "615") for e in calls),
        "most calls in 20 s": busiest_window(stamps),
        "reasons": dict(reasons),
    }


def show(row: dict[str, Any]) -> None:
    print()
    for key, value in row.items():
        shown = (
            f"{value:.1%}"
            if "share" in key
            else (
                f"{value:,.1f}"
                if isinstance(value, float)
                else f"{value:,}"
                if isinstance(value, int)
                else value
            )
        )
        print(f"  {key:>44}: {shown}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=100.0, help="checks/s of phases 0, a")
    parser.add_argument("--baseline-s", type=float, default=10.0)
    parser.add_argument("--paced-s", type=float, default=60.0)
    parser.add_argument("--backlog", type=int, default=40_000)
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=0.0,
        help="the sandbox's latency per call (plus as much jitter)",
    )
    parser.add_argument(
        "--fetch-max-wait-ms",
        type=int,
        default=10,
        help="the worker's ACTIONS_SYNC_FETCH_MAX_WAIT_MS (Tansu holds every fetch this long)",
    )
    add_backend_options(parser)
    args = parser.parse_args()

    with bench_stack(args, (SEND_CHECKS, SEND_DECISIONS)) as stack:
        marketo = stack.sandbox(
            "marketo",
            "--latency-ms",
            str(args.latency_ms),
            "--set",
            f"latency_jitter_ms={args.latency_ms}",
        )
        for first in range(0, LEADS, 10_000):  # bodies under the sandbox's 1 MB
            httpx.post(
                f"{marketo}/_sandbox/marketo/leads",
                timeout=300,
                json={
                    "input": [
                        {"email": email(i), "unsubscribed": i % 20 == 0}
                        for i in range(first, first + 10_000)
                    ]
                },
            ).raise_for_status()
        registry = RegistryClient(stack.registry_url)
        paced_config: dict[str, Any] = {"linger.ms": 0}  # paced: no wait
        publisher = Publisher(stack.bootstrap, registry, **paced_config)
        decisions = Decisions(stack, registry)
        env = {
            "ACTIONS_SYNC_MARKETO_URL": marketo,
            "ACTIONS_SYNC_FETCH_MAX_WAIT_MS": str(args.fetch_max_wait_ms),
            "ACTIONS_SYNC_SEND_CHECK_CALLS_PER_WINDOW": "100",
            "ACTIONS_SYNC_SEND_CHECK_MAX_IN_FLIGHT": "10",
        }
        worker: Worker = stack.add_worker("send-check", env)
        stale = {
            "check_id": "warm-up",
            "marketo_id": 0,
            "email": "warm-up@example.com",
            "requested_at": datetime(2026, 1, 1, tzinfo=UTC),
        }
        publisher.publish(SEND_CHECKS, "SendCheck", [("0", stale)])
        publisher.flush()
        decisions.wait(["warm-up"], timeout_s=120)

        sent = paced(publisher, args.rate, args.baseline_s, 10_000_000)
        decisions.wait(list(sent), timeout_s=60)
        rows = [latency("baseline (check off)", sent, decisions)]
        # published on actions.settings too (the stack's own settings name no broker)
        set_value(
            stack.settings.model_copy(update={"kafka_bootstrap_servers": stack.bootstrap}),
            "marketo_unsubscribe_check",
            "true",
        )
        while True:  # until the worker applied it
            probe = paced(publisher, 10, 0.1, 20_000_000)
            decisions.wait(list(probe), timeout_s=60)
            if decisions.seen[next(iter(probe))][1] != "CHECK_DISABLED":
                break
        sent = paced(publisher, args.rate, args.paced_s, 0)
        decisions.wait(list(sent), timeout_s=60)
        rows.append(latency(f"paced {args.rate:.0f}/s", sent, decisions))
        rows[-1]["p99 / baseline p99"] = rows[-1]["p99 ms"] / max(rows[0]["p99 ms"], 1)
        stop(worker.proc)
        stack.workers.remove(worker)
        # A new worker knows nothing of its predecessor's calls: let Marketo's rolling
        # window forget the paced phase's (~95 in the last 20 s) first.
        time.sleep(20.5)
        rows.append(saturated(stack, marketo, publisher, decisions, env, args.backlog))
        decisions.close()
        registry.close()
        for row in rows:
            show(row)


if __name__ == "__main__":
    main()
