"""Every Prometheus metric of actions-sync, declared once.

Names end in their unit (`_total`, `_seconds`); labels are bounded sets (worker names,
topics, error classes, endpoints — never ids). Each metric has a panel in
`deploy/grafana/dashboards/actions-sync.json`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

__all__ = [
    "ACTIVITIES_PARKED",
    "ACTIVITIES_ROUTED",
    "API_CALLS",
    "API_SECONDS",
    "BATCH_SECONDS",
    "CHECKPOINT_AGE_SECONDS",
    "CONSUMER_LAG",
    "DELIVERIES",
    "LEDGER_RECONCILED",
    "SINK_PAUSED_SECONDS",
    "DEAD_LETTERS",
    "EVENTS_IN",
    "RATE_LIMIT_WAIT_SECONDS",
    "RECORDS_PUBLISHED",
    "SKIPPED",
    "SEND_CHECKS",
    "STORE_WRITES",
    "SALESFORCE_OPTOUTS_HELD",
    "UNSUBSCRIBES_RECONCILED",
    "UNSUBSCRIBES_SYNCED",
    "UNSUBSCRIBES_UNSYNCED",
    "BATCH_RETRIES",
    "REMINDER_CONFLICTS",
    "REMINDER_DIRECTIONS",
    "REMINDER_OUTCOMES",
    "REMINDER_TASKS_SYNCED",
    "SALESFORCE_DELETION_GAPS",
    "SALESFORCE_TASK_POLL_AGE_SECONDS",
    "forget_lag",
    "serve_metrics",
    "BROKER_LAG",
    "SALESFORCE_API_USAGE",
    "COMMIT_STALLED_SECONDS",
]

log = logging.getLogger(__name__)

# Batches of a few to a few thousand records: 5 ms .. 10 s.
BATCH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

EVENTS_IN = Counter(
    "actions_sync_events_in_total", "Records consumed from a topic", ["worker", "topic"]
)
STORE_WRITES = Counter(
    "actions_sync_store_writes_total",
    "Rows written to the Actions store, by table and kind (upsert, remove)",
    ["table", "kind"],
)
SKIPPED = Counter(
    "actions_sync_skipped_total",
    "Records that could not change the store (not_owned, superseded)",
    ["worker", "reason"],
)
DEAD_LETTERS = Counter(
    "actions_sync_dead_letters_total",
    "Records sent to a dead-letter topic",
    ["topic", "error_class"],
)
BATCH_SECONDS = Histogram(
    "actions_sync_batch_seconds",
    "Time to process one batch, from its first record in hand to durable effect",
    ["worker"],
    buckets=BATCH_BUCKETS,
)
CONSUMER_LAG = Gauge(
    "actions_sync_consumer_lag",
    "Records between a partition's high watermark and the worker's position",
    ["worker", "topic", "partition"],
)


def forget_lag(worker: str, partitions: Iterable[tuple[str, int]]) -> None:
    """Drop the lag of partitions this worker no longer owns: a revoked partition's last
    value would otherwise be reported (and alerted on) forever, beside its new owner's."""
    for topic, partition in partitions:
        with contextlib.suppress(KeyError):
            CONSUMER_LAG.remove(worker, topic, str(partition))


# Remote API calls: 10 ms .. 60 s (bulk files and slow sandboxes included).
API_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

API_CALLS = Counter(
    "actions_sync_api_calls_total",
    "Calls to a remote API, by endpoint and result (ok, or the vendor's error code)",
    ["api", "endpoint", "result"],
)
API_SECONDS = Histogram(
    "actions_sync_api_call_seconds",
    "Duration of one remote API call",
    ["api", "endpoint"],
    buckets=API_BUCKETS,
)
RATE_LIMIT_WAIT_SECONDS = Counter(
    "actions_sync_rate_limit_wait_seconds_total",
    "Time spent waiting for the client-side rate limiter before calling an API",
    ["api"],
)
RECORDS_PUBLISHED = Counter(
    "actions_sync_records_published_total",
    "Records a source connector published to a topic",
    ["worker", "topic"],
)
ADMIN_SETTINGS_REVISION = Gauge(
    "actions_sync_admin_settings_revision",
    "The admin settings revision this worker applies (-1: defaults, nothing stored yet)",
    registry=None,  # exported only by workers that follow the settings: applied_revision()
)
_revision_registered = False


def applied_revision(revision: int) -> None:
    """Report the admin settings revision this process applies. The gauge is registered on
    first use: a worker that does not follow the settings (people, the sinks) must not
    export a 0 that a dashboard would show as "behind"."""
    from prometheus_client import REGISTRY

    global _revision_registered
    if not _revision_registered:
        with contextlib.suppress(ValueError):  # another thread registered it first
            REGISTRY.register(ADMIN_SETTINGS_REVISION)
        _revision_registered = True
    ADMIN_SETTINGS_REVISION.set(revision)


SOURCE_ENABLED = Gauge(
    "actions_sync_source_enabled",
    "1 while a source connector's admin setting turns it on (people_sync), 0 while it waits",
    ["worker"],
)
CHECKPOINT_AGE_SECONDS = Gauge(
    "actions_sync_checkpoint_age_seconds",
    "Seconds since a source connector last saved its position",
    ["worker"],
)

# Sinks (connectors/runner.py): what became of each record handed to an API.
DELIVERIES = Counter(
    "actions_sync_deliveries_total",
    "Records a sink resolved, by outcome (accepted, skipped = already delivered, "
    "rejected = dead-lettered, retried)",
    ["worker", "outcome"],
)
SINK_PAUSED_SECONDS = Counter(
    "actions_sync_sink_paused_seconds_total",
    "Time a sink stopped fetching because an API's daily quota was used up",
    ["worker"],
)
LEDGER_RECONCILED = Counter(
    "actions_sync_ledger_reconciled_total",
    "Pending Marketo deliveries checked against Marketo after a crash or an unanswered call "
    "(found = already written, missing = to send again)",
    ["result"],
)

# Activity router (streams/activities.py, SPEC S7/S8).
ACTIVITIES_ROUTED = Counter(
    "actions_sync_activities_routed_total",
    "Sales activities routed, by destination (marketo, salesforce) and outcome (sent; for "
    "salesforce also setting_off, no_salesforce_id)",
    ["destination", "outcome"],
)
ACTIVITIES_PARKED = Counter(
    "actions_sync_activities_parked_total",
    "Sales activities whose person was not in the store, by outcome (parked, routed = the "
    "person arrived, expired = dead-lettered person_unknown)",
    ["outcome"],
)

# Unsubscribe sync with Salesforce (streams/unsubscribes.py, SPEC S9).
UNSUBSCRIBES_SYNCED = Counter(
    "actions_sync_unsubscribes_synced_total",
    "Unsubscribes synced, by direction (to_salesforce: opt-out writes published for an "
    "Actions unsubscribe; from_salesforce: a Salesforce opt-out stored as SALESFORCE_SYNC)",
    ["direction"],
)
UNSUBSCRIBES_UNSYNCED = Counter(
    "actions_sync_unsubscribes_unsynced_total",
    "Actions unsubscribes stored but not pushed to Salesforce, by reason (sync_off, "
    "person_unknown, no_salesforce_id); they go when the reason goes",
    ["reason"],
)
SALESFORCE_OPTOUTS_HELD = Counter(
    "actions_sync_salesforce_optouts_held_total",
    "Salesforce opt-outs not applied on arrival, by reason (salesforce_record_unknown, "
    "sync_off: kept and applied later; other_field, object_not_synced: ignored)",
    ["reason"],
)
UNSUBSCRIBES_RECONCILED = Counter(
    "actions_sync_unsubscribes_reconciled_total",
    "Drift fixed by the unsubscribe reconciliation, by direction (to_salesforce, from_salesforce)",
    ["direction"],
)

# Stream workers (streams/pipeline.py): a batch stage that failed and is tried again.
BATCH_RETRIES = Counter(
    "actions_sync_batch_retries_total",
    "Retries of a batch stage (prepare, write, dead_letter) by a stream worker: a store or "
    "broker outage is retried without end, another failure a few times before the batch "
    "is split and its failing records dead-lettered",
    ["worker", "stage"],
)


# Send check (streams/send_check.py, SPEC S10): one count per decision given (not replays).
SEND_CHECKS = Counter(
    "actions_sync_send_checks_total",
    "Send checks decided, by reason (OK, UNSUBSCRIBED, CHECK_DISABLED, CHECK_UNAVAILABLE = "
    "blocked because Marketo did not answer within the deadline)",
    ["reason"],
)

# Reminder tasks with Salesforce Tasks (streams/reminders.py, SPEC S11). Every label is
# created at 0 on import, so a dashboard shows the series before the first task moves.
REMINDER_DIRECTIONS = ("to_salesforce", "to_actions")
REMINDER_OUTCOMES = (
    "created",
    "updated",
    "completed",
    "deleted",
    "no_op",
    "conflict_lost",
    "ignored_status",
    "ignored_priority",
    "held",
    "not_imported",
    "delete_too_old",
)
REMINDER_TASKS_SYNCED = Counter(
    "actions_sync_reminder_tasks_synced_total",
    "Reminder task changes the agent resolved, by direction (to_salesforce: an Actions "
    "change; to_actions: a Salesforce change) and outcome (created, updated, completed, "
    "deleted; no_op = nothing to sync, e.g. an echo; conflict_lost = an older change than "
    "the other side's; ignored_status / ignored_priority = a Salesforce status other than "
    "Not Started/Completed or priority Low, not synced; held = stored while the sync is off; "
    "not_imported = a Salesforce task older than the first enable's 24 h or of no known "
    "person; delete_too_old = a delete beyond Salesforce's 15-day horizon, reported)",
    ["direction", "outcome"],
)
REMINDER_CONFLICTS = Counter(
    "actions_sync_reminder_conflicts_total",
    "Reminder task fields changed on both sides, resolved for the newer change, by the side "
    "that won (actions, salesforce)",
    ["winner"],
)
SALESFORCE_TASK_POLL_AGE_SECONDS = Gauge(
    "actions_sync_salesforce_task_poll_age_seconds",
    "Seconds since the Salesforce source last read the Task changes to the end (since it "
    "started, before the first poll)",
)
SALESFORCE_DELETION_GAPS = Counter(
    "actions_sync_salesforce_deletion_gaps_total",
    "Deletion windows the Salesforce source could no longer read (INVALID_REPLICATION_DATE: "
    "older than the 15-day recycle bin): deletions in them are reported, not applied",
    ["sobject"],
)
for _direction in REMINDER_DIRECTIONS:
    for _outcome in REMINDER_OUTCOMES:
        REMINDER_TASKS_SYNCED.labels(_direction, _outcome)
for _winner in ("actions", "salesforce"):
    REMINDER_CONFLICTS.labels(_winner)
SALESFORCE_DELETION_GAPS.labels("Task")


# Salesforce's daily API allocation as the org last reported it (connectors/salesforce/
# budget.py, from every answer's Sforce-Limit-Info): shared with the org's other
# integrations, so it is read from Salesforce, not counted here.
SALESFORCE_API_USAGE = Gauge(
    "actions_sync_salesforce_api_usage",
    "The org's Salesforce API calls over the last 24 h (kind=used) and its daily "
    "allocation (kind=limit), as the newest answer's Sforce-Limit-Info reported them",
    ["kind"],
)

# Consuming workers (actions_sync/progress.py): the group's progress read from the broker,
# apart from the worker's own loop, so that a worker stuck retrying one batch shows.
BROKER_LAG = Gauge(
    "actions_sync_broker_lag",
    "Records between a partition's end and the consumer group's committed offset, read from "
    "the broker every ACTIONS_SYNC_LAG_INTERVAL_S (every copy reports all the group's "
    "partitions)",
    ["worker", "topic", "partition"],
)
COMMIT_STALLED_SECONDS = Gauge(
    "actions_sync_commit_stalled_seconds",
    "Seconds records of a partition have waited with the group's committed offset not "
    "moving (0 when caught up)",
    ["worker", "topic", "partition"],
)


def serve_metrics(host: str, port: int, health: Callable[[], str | None] | None = None) -> int:
    """Start the /metrics HTTP server in a thread; return the port it bound.

    It answers `/healthz` too: 200 "ok", or 503 with the reason `health()` gives (a
    worker whose partitions do not progress: `actions_sync.progress`); without `health`,
    always 200 while the process serves.
    """
    metrics_app = make_wsgi_app()

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/healthz":
            return metrics_app(environ, start_response)  # type: ignore[no-any-return]
        problem = health() if health is not None else None
        status = "200 OK" if problem is None else "503 Service Unavailable"
        start_response(status, [("Content-Type", "text/plain; charset=utf-8")])
        return [(problem or "ok").encode() + b"\n"]

    server = make_server(host, port, app, ThreadingWSGIServer, handler_class=_Quiet)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    bound = int(server.server_address[1])
    log.info("metrics on http://%s:%d/metrics, health on /healthz", host, bound)
    return bound


class _Quiet(WSGIRequestHandler):
    """No access log line per scrape."""

    def log_message(self, format: str, *args: Any) -> None:
        pass
