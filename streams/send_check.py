"""The send-check worker: `actions.send.checks` -> one `SendDecision` per check on
`actions.send.decisions` (SPEC S10), by the rules of `streams.rules.send_check`.

Consumed by the sinks' runner (`connectors.runner`): batch consume -> `deliver` (decide,
write down, publish, wait for the broker's acknowledgement) -> commit. So a check is
answered at least once, and `actions_sync.store.send_decisions` makes a replay (after a
crash or a rebalance) publish the decision already given instead of a new one: one
decision per check.

Batching within Marketo's limits. This worker has its own share of Marketo's 100 calls
per rolling 20 s and 10 in flight (settings), spent evenly (`connectors.ratelimit.Pace`):
a rolling window would let the calls go in a burst and then leave checks waiting out the
window, past their deadline. A batch gathers checks for the window setting (50 ms) or
until the next call may start, whichever is longer, and their distinct emails are looked
up 300 a call: at 100 checks/s and the whole instance's 100 calls / 20 s that is one call
every 0.2 s carrying ~20 emails; saturated, 300 emails every 0.2 s (1,480 checks/s).

Fails closed. A lookup is bounded by its checks' deadline (`requested_at` + the
deadline setting): whatever stops Marketo from answering by then — timeouts, 5xx,
604/608/611, 606/615 whose wait passes the deadline, 607, refused credentials, a
sandbox that is down — makes the check CHECK_UNAVAILABLE, never allowed. After a 607 no
call is made until the quota resets (every check is answered CHECK_UNAVAILABLE at once).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from actions_sync.admin.live import LiveSettings
from actions_sync.admin.model import AdminSettings
from actions_sync.clock import Clock, SystemClock
from actions_sync.errors import ActionsSyncError, ConfigError, RuleViolation
from actions_sync.kafka import ensure_topics
from actions_sync.metrics import SEND_CHECKS
from actions_sync.publish import Publisher
from actions_sync.serialization import RegistryClient, Serializer
from actions_sync.settings import Settings
from actions_sync.store import Store
from actions_sync.store import send_decisions as ledger
from actions_sync.store.unsubscribes import unsubscribed
from actions_sync.topics import RECORD_OF, SEND_DECISIONS, specs
from actions_sync.topics import SEND_CHECKS as CHECKS_TOPIC
from connectors.errors import QuotaExhausted
from connectors.marketo.client import BATCH_MAX, MarketoClient, MarketoLimits
from connectors.outcome import Outcome, accepted, chunks, rejected
from connectors.ratelimit import Pace
from connectors.runner import RunnerConfig
from connectors.sink_worker import require, require_broker, run_sink
from streams.rules import send_check as rules

__all__ = ["WORKER", "SendChecker", "Timing", "run"]

WORKER = "send-check"
LOOKUP_FIELDS = ("email", "unsubscribed")
# Call slots left unused while a batch is written down and published may be used late:
# under saturation that overhead would otherwise cost ~1 slot in 5 (1,200/s, not 1,480).
PACE_BURST = 3
log = logging.getLogger(__name__)
Record = dict[str, Any]


@dataclass(frozen=True)
class Timing:
    deadline_s: float = 2.0  # from requested_at: past it, a check is CHECK_UNAVAILABLE
    retention_s: float = 86400.0  # decisions kept for replays of the uncommitted tail
    prune_every_s: float = 3600.0


class SendChecker:
    """`Destination` of send checks (see `connectors.runner`): decides and publishes.
    Store and broker round trips run in threads (`asyncio.to_thread`), so the event
    loop keeps the pace and the other calls' answers going meanwhile."""

    def __init__(
        self,
        client: MarketoClient,
        engine: Engine,
        publisher: Publisher,
        serializer: Callable[[Record], bytes],
        settings: Callable[[], AdminSettings],
        pace: Pace,
        timing: Timing | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.client = client
        self.engine = engine
        self.publisher = publisher
        self.encode = serializer
        self.settings = settings
        self.pace = pace
        self.timing = timing or Timing()
        self.clock = clock or SystemClock()
        self._quota_until: datetime | None = None
        self._pruned_at: datetime | None = None

    async def start(self) -> None:
        """Nothing to wait for: Marketo being away is an answer (CHECK_UNAVAILABLE).
        Every reason is exported from the start (at 0), so the alert's share has both
        of its series before the first unavailable check."""
        for reason in rules.Reason:
            SEND_CHECKS.labels(reason.value)

    async def deliver(self, records: Sequence[Record]) -> list[Outcome]:
        await self._prune()
        out: list[Outcome] = [accepted()] * len(records)
        good: list[Record] = []
        for i, record in enumerate(records):
            if not str(record["check_id"]).strip() or not str(record["email"]).strip():
                out[i] = rejected(RuleViolation("a send check needs a check_id and an email"))
            else:
                good.append(record)
        before = await asyncio.to_thread(ledger.given, self.engine, [r["check_id"] for r in good])
        fresh = list({r["check_id"]: r for r in good if r["check_id"] not in before}.values())
        decided = await self._decide(fresh)
        now = self.clock.now()
        new = [
            ledger.Given(r["check_id"], d.allowed, d.reason.value, now)
            for r, d in zip(fresh, decided, strict=True)
        ]
        held = {**before, **await asyncio.to_thread(ledger.record, self.engine, new)}
        await asyncio.to_thread(self._publish, [(r, held[r["check_id"]]) for r in good])
        for given in new:
            SEND_CHECKS.labels(given.reason).inc()
        return out

    async def _decide(self, checks: Sequence[Record]) -> list[rules.Decision]:
        if not checks:
            return []
        enabled = self.settings().marketo_unsubscribe_check  # one snapshot per batch
        ids = [r["marketo_id"] for r in checks]
        held = await asyncio.to_thread(unsubscribed, self.engine, ids) if enabled else set()
        now = self.clock.now()
        known = [
            rules.precheck(
                enabled,
                r["marketo_id"] in held,
                rules.expired(r["requested_at"], now, self.timing.deadline_s),
            )
            for r in checks
        ]
        ask = [r for r, d in zip(checks, known, strict=True) if d is None]
        answers = await self._look_up(ask)
        return [
            d if d is not None else rules.decide(True, False, answers.get(r["check_id"]))
            for r, d in zip(checks, known, strict=True)
        ]

    async def _look_up(self, checks: Sequence[Record]) -> dict[str, bool]:
        """check id -> whether any lead with its email is unsubscribed, for the checks
        Marketo answered within their deadline (the others are missing: unavailable)."""
        if not checks or self._quota_paused():
            return {}
        by_email: dict[str, list[Record]] = {}
        for check in checks:
            by_email.setdefault(check["email"], []).append(check)
        calls = chunks(list(by_email), BATCH_MAX)
        found: dict[str, bool] = {}
        for answer in await asyncio.gather(*(self._call(c, by_email) for c in calls)):
            found |= answer
        return found

    async def _call(
        self, emails: Sequence[str], by_email: dict[str, list[Record]]
    ) -> dict[str, bool]:
        checks = [c for e in emails for c in by_email[e]]
        deadline = max(self._deadline(c) for c in checks)
        try:
            leads = await asyncio.wait_for(
                self._paced_lookup(emails), (deadline - self.clock.now()).total_seconds()
            )
        except TimeoutError:
            log.warning(
                "send check: Marketo did not answer %d emails within the deadline", len(emails)
            )
            return {}
        except (ActionsSyncError, OSError) as exc:  # every failure blocks: fail closed
            if isinstance(exc, QuotaExhausted):
                self._quota_until = self.clock.now() + timedelta(seconds=exc.retry_after)
            log.warning("send check: Marketo lookup of %d emails failed: %s", len(emails), exc)
            return {}
        answered = self.clock.now()
        unsubscribed_ = rules.unsubscribed_emails(leads)
        return {
            c["check_id"]: rules.email_key(c["email"]) in unsubscribed_
            for c in checks
            if answered <= self._deadline(c)
        }

    async def _paced_lookup(self, emails: Sequence[str]) -> list[dict[str, Any]]:
        await self.pace.wait()
        return await self.client.leads("email", emails, LOOKUP_FIELDS)

    def _deadline(self, check: Record) -> datetime:
        requested: datetime = check["requested_at"]
        return requested + timedelta(seconds=self.timing.deadline_s)

    def _quota_paused(self) -> bool:
        """Marketo's daily quota is used up (607): no call until it resets."""
        if self._quota_until is None or self.clock.now() >= self._quota_until:
            self._quota_until = None
            return False
        return True

    def _publish(self, decisions: list[tuple[Record, ledger.Given]]) -> None:
        """Publish and wait for the broker: the runner commits the offsets after this."""
        self.publisher.publish_raw(
            SEND_DECISIONS,
            [
                (
                    str(check["marketo_id"]).encode(),
                    self.encode(
                        {
                            "check_id": given.check_id,
                            "allowed": given.allowed,
                            "reason": given.reason,
                            "decided_at": _aware(given.decided_at),
                        }
                    ),
                )
                for check, given in decisions
            ],
        )
        self.publisher.flush()

    async def _prune(self) -> None:
        now = self.clock.now()
        if (
            self._pruned_at is not None
            and (now - self._pruned_at).total_seconds() < self.timing.prune_every_s
        ):
            return
        self._pruned_at = now
        await asyncio.to_thread(
            ledger.prune, self.engine, now - timedelta(seconds=self.timing.retention_s)
        )

    async def aclose(self) -> None:
        await self.client.aclose()


def _aware(value: datetime) -> datetime:
    """SQLite hands datetimes back without their zone; the store holds UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def run(settings: Settings) -> None:
    """`actions-sync worker send-check`."""
    url = require(settings.marketo_url, "ACTIONS_SYNC_MARKETO_URL", f"worker {WORKER}")
    bootstrap, registry_url = require_broker(settings, f"worker {WORKER}")
    ensure_topics(
        bootstrap, specs((SEND_DECISIONS,), settings.partitions, settings.replication_factor)
    )
    store = Store(settings.database_url)
    registry = RegistryClient(registry_url)
    live: LiveSettings | None = None
    try:
        store.migrate()
        live = LiveSettings(
            store.engine, bootstrap, replication=settings.replication_factor
        ).start()
        calls = settings.send_check_calls_per_window
        pace = Pace(calls, MarketoLimits.window_s, burst=min(PACE_BURST, calls))
        if pace.interval_s >= settings.send_check_deadline_s:
            raise ConfigError(
                f"ACTIONS_SYNC_SEND_CHECK_CALLS_PER_WINDOW={settings.send_check_calls_per_window}"
                f": one call every {pace.interval_s:.2f}s cannot answer within "
                f"ACTIONS_SYNC_SEND_CHECK_DEADLINE_S={settings.send_check_deadline_s}"
            )
        publisher = Publisher(bootstrap, registry)
        serializer = Serializer(registry, SEND_DECISIONS, RECORD_OF[SEND_DECISIONS])
        config = RunnerConfig(
            WORKER,
            CHECKS_TOPIC,
            batch_size=settings.send_check_batch_size,
            batch_within_s=settings.send_check_window_s,
            gather_s=pace.due_in,
        )
        limits = MarketoLimits(
            calls_per_window=settings.send_check_calls_per_window,
            max_in_flight=settings.send_check_max_in_flight,
        )
        timing = Timing(settings.send_check_deadline_s)
        settings_now = live.current
        run_sink(
            settings,
            config,
            RECORD_OF[CHECKS_TOPIC],
            lambda: SendChecker(
                MarketoClient(
                    url,
                    settings.marketo_client_id,
                    settings.marketo_client_secret.get_secret_value(),
                    limits,
                    timeout_s=settings.api_timeout_s,
                ),
                store.engine,
                publisher,
                serializer,
                settings_now,
                pace,
                timing,
            ),
        )
    finally:
        if live is not None:
            live.close()
        registry.close()
        store.close()
