"""Live Prometheus (Debian's /usr/bin/prometheus) scraping a running `actions-sync up`.

Prometheus gets a generated config: static targets at the workers' /metrics that `up`
lists (job `actions-sync`, a `service` label per worker as DNS discovery gives it in the
compose stack), 1 s scrape and evaluation intervals, and a test copy of
deploy/prometheus/alerts.yml whose only change is ActionsSyncDeadLetters' `for:` (1m ->
2s), so that the alert can fire within the test. Through Prometheus's HTTP API it checks:

- every alert rule is evaluated without error, and on a healthy stack (good records
  processed) no alert is pending or firing;
- every dashboard query returns data from the live workers; the few that may be empty are
  listed in ABSENT_ON_A_HEALTHY_STACK with why, and their metric must still be exported
  (its HELP line) by a live worker;
- every alert expression either returns data or, where its condition does not hold, the
  series it is computed from exist (the same list excepted);
- after records that do not decode are produced, ActionsSyncDeadLetters fires for the
  input topic's .dlq.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from actions_sync.publish import Publisher
from actions_sync.serialization import RegistryClient
from actions_sync.topics import PERSON_CHANGES
from app.stack import http_client
from sandboxes.base import free_port
from tests.factories import person_change
from tests.integration.test_deploy import (
    PROMETHEUS,
    alert_rules,
    dashboard_targets,
    metric_names,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]  # `up` alone: 75 s on 2 busy cores

IN_CI = bool(os.environ.get("CI"))
# Dashboard variables as Grafana fills them for a 1 h view with every worker selected.
GRAFANA = {"$__rate_interval": "1m", "$__range": "1h", "$worker": ".*"}
# Metrics a healthy stack does not produce a series of (a counter with labels has none
# until its first event); each is still declared, and checked for, on the live workers.
ABSENT_ON_A_HEALTHY_STACK = {
    "actions_sync_batch_retries_total": "a batch stage is retried only on a failure",
    "actions_sync_sink_paused_seconds_total": "a sink pauses only on a spent daily quota",
    "actions_sync_ledger_reconciled_total": "reconciled only after a crash or an unanswered "
    "Marketo call",
    "actions_sync_dead_letters_total": "nothing is dead-lettered until the bad records",
    "actions_sync_activities_routed_total": "no sales activity is published here",
    "actions_sync_activities_parked_total": "no sales activity is published here",
    "actions_sync_deliveries_total": "the sinks get nothing without sales activities or "
    "opt-outs of known people",
    "actions_sync_unsubscribes_unsynced_total": "counted only for an unsubscribe whose "
    "person has no Salesforce id or is unknown",
    "actions_sync_salesforce_optouts_held_total": "the Salesforce sandbox holds no opt-out",
    "actions_sync_salesforce_api_usage": "reported from a Salesforce answer: no worker calls "
    "Salesforce while unsubscribe and reminder sync are off",
    "actions_sync_unsubscribes_reconciled_total": "the daily reconciliation (02:00 UTC) "
    "has not run",
    "actions_sync_records_published_total": "the sources publish only what changed in "
    "Salesforce (nothing here)",
    "actions_sync_rate_limit_wait_seconds_total": "the client-side rate limiter has not had "
    "to wait: calls are far below the limits",
    "actions_sync_unsubscribes_synced_total": "no unsubscribe is published here (see the "
    "traffic below)",
}
# Dashboard queries that select what a healthy stack has none of (their metric's series
# exist, and are checked).
EMPTY_PANELS = {
    "API errors / s by api and result": "no API call fails: the sandboxes inject no errors",
}
DEAD_LETTER_FOR = "2s"
FOLLOW_SETTINGS = {
    "activities",
    "unsubscribes",
    "send-check",
    "reminders",
    "salesforce-source",
    "marketo-source",
}


@pytest.fixture(scope="module")
def prometheus_bin() -> str:
    found = shutil.which("prometheus") or (
        "/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None
    )
    if found:
        return found
    message = "prometheus not installed: the Debian package `prometheus` (scripts/bootstrap --test)"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


class Live:
    def __init__(self, url: str) -> None:
        self.url = url

    def query(self, expr: str) -> list[dict[str, Any]]:
        answer = http_client().get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        body = answer.json()
        assert body["status"] == "success", (expr, body)
        return body["data"]["result"]  # type: ignore[no-any-return]

    def has_series(self, metric: str) -> bool:
        return bool(self.query(f'count({{__name__="{metric}"}})'))

    def alerts(self) -> list[dict[str, Any]]:
        body = http_client().get(f"{self.url}/api/v1/alerts", timeout=10).json()
        return body["data"]["alerts"]  # type: ignore[no-any-return]

    def rules(self) -> list[dict[str, Any]]:
        groups = http_client().get(f"{self.url}/api/v1/rules", timeout=10).json()["data"]["groups"]
        return [rule for group in groups for rule in group["rules"]]


def wait_for(condition: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (result := condition()):
        assert time.monotonic() < deadline, f"not within {timeout_s:.0f}s: {what}"
        time.sleep(0.5)
    return result


def _rules_copy(path: Path) -> None:
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == "ActionsSyncDeadLetters":
                rule["for"] = DEAD_LETTER_FOR
            if rule.get("record") == "actions_sync:expected_copies":
                # the compose file runs 2 people workers; `up` runs one of each
                rule["expr"] = rule["expr"].replace("vector(2)", "vector(1)")
    path.write_text(yaml.safe_dump(rules))


def test_dashboard_and_alerts_against_live_workers(prometheus_bin: str, tmp_path: Path) -> None:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ACTIONS_SYNC_")
        and k not in ("KAFKA_BOOTSTRAP_SERVERS", "SCHEMA_REGISTRY_URL")
    }
    endpoints_file = tmp_path / "stack.json"
    with (tmp_path / "up.log").open("w") as up_log:
        up = subprocess.Popen(
            [sys.executable, "-m", "app", "up", "--endpoints-file", str(endpoints_file)],
            env={
                **clean,
                "DATABASE_URL": f"sqlite:///{tmp_path}/store.db",
                "ACTIONS_SYNC_SALESFORCE_POLL_INTERVAL_S": "2",
            },
            stdout=up_log,
            stderr=subprocess.STDOUT,
        )
    prometheus = None
    try:
        wait_for(endpoints_file.exists, 300, f"`up` ready (see {tmp_path / 'up.log'})")
        endpoints = json.loads(endpoints_file.read_text())
        workers: dict[str, str] = endpoints["metrics"]

        _rules_copy(tmp_path / "alerts.yml")
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": ["alerts.yml"],
            "scrape_configs": [
                {
                    "job_name": "actions-sync",
                    "static_configs": [
                        {
                            "targets": [url.removeprefix("http://").removesuffix("/metrics")],
                            "labels": {"service": name.rsplit("-", 1)[0]},
                        }
                        for name, url in workers.items()
                    ],
                }
            ],
        }
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        port = free_port()
        with (tmp_path / "prometheus.log").open("w") as prometheus_log:
            prometheus = subprocess.Popen(
                [
                    prometheus_bin,
                    f"--config.file={tmp_path / 'prometheus.yml'}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                ],
                stdout=subprocess.DEVNULL,
                stderr=prometheus_log,
            )
        live = Live(f"http://127.0.0.1:{port}")

        # Traffic: good person changes, owned and not (an unsubscribe would be an opt-out
        # write of a Lead the empty Salesforce sandbox rejects: a dead letter).
        registry = RegistryClient(endpoints["schema_registry"])
        publisher = Publisher(endpoints["kafka"], registry)
        publisher.publish(
            PERSON_CHANGES,
            "PersonChange",
            [
                (
                    str(i),
                    person_change(i, sfdc_lead_owner_id="005000000000000001" if i % 2 else None),
                )
                for i in range(1, 41)
            ],
        )
        publisher.flush()

        wait_for(
            lambda: len(live.query('up{job="actions-sync"} == 1')) == len(workers),
            60,
            "every worker scraped and up",
        )
        wait_for(
            lambda: live.query(
                'sum(actions_sync_events_in_total{topic="' + PERSON_CHANGES + '"}) >= 40'
            ),
            120,
            "the people worker consumed the changes",
        )
        wait_for(
            lambda: not live.query("sum(actions_sync_consumer_lag) > 0"),
            120,
            "every worker caught up",
        )
        time.sleep(3)  # a few more scrapes: rate() needs two samples of each series

        exported = _declared_on_workers(workers.values())
        # Every rule is evaluated, cleanly; nothing firing on a healthy stack, and nothing
        # pending but the batch-latency warning, which a loaded test machine (2 cores,
        # three test tiers) can reach: its `for: 10m` is there for such spells.
        rules = wait_for(
            lambda: [r for r in live.rules() if r.get("lastEvaluation", "") > "2000"] or None,
            30,
            "rules evaluated",
        )
        # (alerts and recording rules, e.g. WorkerDown's expected copies per service)
        assert {r["name"] for r in rules} == {r.get("alert") or r["record"] for r in alert_rules()}
        assert all(r["health"] == "ok" for r in rules), [
            (r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"
        ]
        assert [
            a for a in live.alerts() if a["labels"]["alertname"] != "ActionsSyncBatchLatencyHigh"
        ] == []
        assert all(a["state"] == "pending" for a in live.alerts())
        # Only the workers that follow the admin settings export the revision they apply
        # (the others exported a 0 that the dashboard showed as behind).
        following = {
            r["metric"]["service"]
            for r in live.query("count by (service) (actions_sync_admin_settings_revision)")
        }
        assert following == FOLLOW_SETTINGS & {n.rsplit("-", 1)[0] for n in workers}

        problems = []
        for title, expr in dashboard_targets():
            for variable, value in GRAFANA.items():
                expr = expr.replace(variable, value)
            if live.query(expr):
                continue
            if title in EMPTY_PANELS:  # a selection of series a healthy stack has none of
                problems += _missing_inner(live, exported, f"panel {title!r}", expr)
                continue
            unexplained = sorted(metric_names(expr) - ABSENT_ON_A_HEALTHY_STACK.keys())
            if unexplained:
                problems.append(f"panel {title!r} is empty: {expr}")
            problems += [
                f"panel {title!r}: {m} not exported by any worker"
                for m in metric_names(expr) - exported
            ]
        for rule in alert_rules():
            if "alert" in rule and not live.query(rule["expr"]):
                # The condition does not hold: the series it is computed from exist.
                problems += _missing_inner(live, exported, rule["alert"], rule["expr"])
        assert problems == []

        # Bad records: dead-lettered by the people worker, and the alert fires.
        publisher.publish_raw(PERSON_CHANGES, [(b"bad-1", b"not avro"), (b"bad-2", b"\x00x")])
        publisher.flush()
        registry.close()
        firing = wait_for(
            lambda: [
                a
                for a in live.alerts()
                if a["labels"]["alertname"] == "ActionsSyncDeadLetters" and a["state"] == "firing"
            ],
            90,
            "ActionsSyncDeadLetters firing",
        )
        assert {a["labels"]["topic"] for a in firing} == {PERSON_CHANGES + ".dlq"}
    finally:
        if prometheus is not None:
            prometheus.terminate()
            prometheus.wait(30)
        up.send_signal(signal.SIGINT)
        try:
            up.wait(120)
        except subprocess.TimeoutExpired:
            up.kill()
            up.wait(30)


def _missing_inner(live: Live, exported: set[str], what: str, expr: str) -> list[str]:
    """What is wrong with the series an empty query is computed from: each must exist, or
    be one a healthy stack has none of and still be exported by a worker."""
    problems = []
    for metric in metric_names(expr) - {"up"}:
        if metric in ABSENT_ON_A_HEALTHY_STACK:
            if metric not in exported:
                problems.append(f"{what}: {metric} not exported by any worker")
        elif not live.has_series(metric):
            problems.append(f"{what}: no series of {metric}")
    return problems


def _declared_on_workers(urls: Any) -> set[str]:
    """Every metric family a live worker declares (HELP line), samples or not."""
    names: set[str] = set()
    for url in urls:
        for line in http_client().get(url, timeout=10).text.splitlines():
            if line.startswith("# HELP "):
                family = line.split()[2]
                names |= {family, family + "_total"}
    return names
