"""What the admin page shows of the running sync (SPEC S12): read from the store and the
broker on each view, and from the workers' `/metrics`, sampled in the background.

    people_count, checkpoints, quota_today   the store (rows, checkpoints, the ledgers)
    consumer_groups                          the broker: each group's members and, per
                                             partition, committed offset vs end offset
    dlq_sizes                                the broker: records on each dead-letter topic
    Sampler                                  every 15 s, each flow's rate and lag from the
                                             workers' /metrics into a ring of one hour
    chart_svg                                a series as an inline SVG (no chart library)

The broker's answers are measured independently of the workers' own progress, so a stuck
worker shows its lag here even while its `/metrics` still answer. On Tansu the end offset
of a partition is its last batch's base offset + 1 (see `kafka.GroupProgress`), so lag
and dead-letter sizes there may undercount by the size of the last batch.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec  # type: ignore[attr-defined]
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, func, select

from actions_sync.kafka import admin_config, dlq_topic
from actions_sync.periodic import Periodic
from actions_sync.store import Store, checkpoints
from actions_sync.store.ledger import ACCEPTED, marketo_ledger
from actions_sync.store.unsubscribes import optout_writes

__all__ = [
    "Checkpoint",
    "GroupLag",
    "PartitionLag",
    "Point",
    "Sampler",
    "chart_svg",
    "checkpoints_of",
    "consumer_groups",
    "dlq_sizes",
    "people_count",
    "quota_today",
]

log = logging.getLogger(__name__)
SAMPLE_EVERY_S = 15.0
KEEP = 240  # one hour of 15 s samples
EVENTS_IN = "actions_sync_events_in_total"
LAG = "actions_sync_consumer_lag"
API_CALLS = "actions_sync_api_calls_total"
SALESFORCE_USAGE = "actions_sync_salesforce_api_usage"
EARLIEST = OffsetSpec.earliest()  # type: ignore[no-untyped-call]
LATEST = OffsetSpec.latest()  # type: ignore[no-untyped-call]
COPY = re.compile(r"-\d+$")  # people-0, people-1: copies of the flow "people"


# -- the store ------------------------------------------------------------------------


def people_count(store: Store) -> int:
    return store.count_persons()


@dataclass(frozen=True)
class Checkpoint:
    name: str
    updated_at: datetime
    age_s: float


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def checkpoints_of(engine: Engine, now: datetime) -> list[Checkpoint]:
    """Every source's last checkpoint and its age."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(checkpoints.c.name, checkpoints.c.updated_at).order_by(checkpoints.c.name)
        ).all()
    return [Checkpoint(name, _aware(at), (now - _aware(at)).total_seconds()) for name, at in rows]


def quota_today(engine: Engine, now: datetime) -> dict[str, int]:
    """What the store knows was spent of today's (UTC) API quotas: the Marketo activities
    the ledger holds as accepted and the calls that carried them (one claim a call), the
    opt-out fields written to Salesforce."""
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    accepted = (marketo_ledger.c.state == ACCEPTED) & (marketo_ledger.c.sent_at >= midnight)
    with engine.connect() as conn:
        activities = conn.execute(select(func.count()).where(accepted)).scalar_one()
        calls = conn.execute(
            select(func.count(func.distinct(marketo_ledger.c.claim))).where(accepted)
        ).scalar_one()
        optouts = conn.execute(
            select(func.count())
            .select_from(optout_writes)
            .where(optout_writes.c.written_at >= midnight)
        ).scalar_one()
    return {
        "marketo_activities": activities,
        "marketo_calls": calls,
        "salesforce_optout_writes": optouts,
    }


# -- the broker -----------------------------------------------------------------------


@dataclass(frozen=True)
class PartitionLag:
    topic: str
    partition: int
    committed: int | None  # None: nothing committed yet
    end: int

    @property
    def lag(self) -> int:
        return max(self.end - max(self.committed or 0, 0), 0)


@dataclass(frozen=True)
class GroupLag:
    group: str
    state: str
    members: list[str]  # client id @ host: partitions
    partitions: list[PartitionLag] = field(default_factory=list)


def consumer_groups(bootstrap: str, prefix: str, timeout_s: float = 10.0) -> list[GroupLag]:
    """Each consumer group of this deployment (named `prefix-<worker>`): its members and,
    per partition it committed, the committed offset against the end offset."""
    admin = AdminClient(admin_config(bootstrap))
    listed = admin.list_consumer_groups(request_timeout=timeout_s).result(timeout_s)
    names = sorted(g.group_id for g in listed.valid if g.group_id.startswith(f"{prefix}-"))
    if not names:
        return []
    described = {
        name: future.result(timeout_s)
        for name, future in admin.describe_consumer_groups(names, request_timeout=timeout_s).items()
    }
    out = []
    for name in names:
        [offsets] = admin.list_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(name)], request_timeout=timeout_s
        ).values()
        committed = [tp for tp in offsets.result(timeout_s).topic_partitions or [] if not tp.error]
        ends = _ends(admin, committed, timeout_s)
        out.append(
            GroupLag(
                name,
                str(described[name].state).rsplit(".", 1)[-1],
                _members(described[name].members),
                [
                    PartitionLag(
                        tp.topic,
                        tp.partition,
                        tp.offset if tp.offset >= 0 else None,
                        ends.get((tp.topic, tp.partition), 0),
                    )
                    for tp in sorted(committed, key=lambda t: (t.topic, t.partition))
                ],
            )
        )
    return out


def _members(members: Iterable[Any]) -> list[str]:
    out = []
    for m in members:
        parts = sorted((tp.topic, tp.partition) for tp in m.assignment.topic_partitions)
        owned = ", ".join(f"{t}[{p}]" for t, p in parts) or "no partitions"
        out.append(f"{m.client_id}@{m.host.lstrip('/')}: {owned}")
    return sorted(out)


def _ends(
    admin: AdminClient, tps: Sequence[TopicPartition], timeout_s: float
) -> dict[tuple[str, int], int]:
    if not tps:
        return {}
    futures = admin.list_offsets(
        {TopicPartition(tp.topic, tp.partition): LATEST for tp in tps},
        request_timeout=timeout_s,
    )
    return {
        (tp.topic, tp.partition): future.result(timeout_s).offset for tp, future in futures.items()
    }


def dlq_sizes(
    bootstrap: str, topics: Iterable[str], timeout_s: float = 10.0
) -> dict[str, int | None]:
    """Records on the dead-letter topic of each of `topics` (None: no such topic yet)."""
    admin = AdminClient(admin_config(bootstrap))
    existing = admin.list_topics(timeout=timeout_s).topics
    sizes: dict[str, int | None] = {}
    for topic in topics:
        meta = existing.get(dlq_topic(topic))
        if meta is None:
            sizes[topic] = None
            continue
        parts = [TopicPartition(dlq_topic(topic), p) for p in meta.partitions]
        futures = admin.list_offsets({tp: EARLIEST for tp in parts}, request_timeout=timeout_s)
        first = {tp.partition: f.result(timeout_s).offset for tp, f in futures.items()}
        futures = admin.list_offsets({tp: LATEST for tp in parts}, request_timeout=timeout_s)
        sizes[topic] = sum(
            f.result(timeout_s).offset - first[tp.partition] for tp, f in futures.items()
        )
    return sizes


# -- the workers' /metrics ------------------------------------------------------------


@dataclass(frozen=True)
class Point:
    at: float  # time.time()
    rate: float  # records consumed per second since the previous sample
    lag: float  # summed over the flow's partitions


Fetch = Callable[[str], str]


class Sampler:
    """Samples each flow's rate and lag from the workers' /metrics every `every_s`; the
    targets are re-read from `targets_file` each time (workers come and go)."""

    def __init__(
        self,
        targets_file: Path | None,
        every_s: float = SAMPLE_EVERY_S,
        keep: int = KEEP,
        fetch: Fetch | None = None,
    ) -> None:
        self.targets_file = targets_file
        self.every_s = every_s
        self.series: dict[str, deque[Point]] = {}
        self.api_calls: dict[str, float] = {}  # api -> calls counted by running workers
        # (used, limit) of the org's Salesforce API calls over 24 h, as Salesforce said
        self.salesforce_usage: tuple[float, float] | None = None
        self._keep = keep
        # One client for every sample: `httpx.get` builds one (and its TLS context) per
        # call, ~35 ms of CPU, for each worker at each sample.
        self._http = httpx.Client(timeout=2)
        self._fetch = fetch or (lambda url: self._http.get(url).text)
        self._last: dict[str, tuple[float, float]] = {}  # worker -> (at, events in)
        self._job: Periodic | None = None

    def targets(self) -> dict[str, str]:
        if self.targets_file is None:
            return {}
        try:
            loaded = json.loads(self.targets_file.read_text())
        except (OSError, ValueError):
            return {}
        return {str(k): str(v) for k, v in loaded.items() if v} if isinstance(loaded, dict) else {}

    def sample(self, now: float | None = None) -> None:
        """One sample of every target (an unreachable worker is left out of this one)."""
        at = time.time() if now is None else now
        flows: dict[str, list[float]] = {}
        calls: dict[str, float] = {}
        usage = self.salesforce_usage
        for worker, url in self.targets().items():
            try:
                values = _values(self._fetch(url))
            except (httpx.HTTPError, ValueError) as exc:
                log.debug("metrics of %s not sampled: %s", worker, exc)
                continue
            events = values.get(EVENTS_IN, 0.0)
            before_at, before = self._last.get(worker, (at, events))
            rate = max(events - before, 0.0) / (at - before_at) if at > before_at else 0.0
            self._last[worker] = (at, events)
            sums = flows.setdefault(COPY.sub("", worker), [0.0, 0.0])
            sums[0] += rate
            sums[1] += values.get(LAG, 0.0)
            for key, value in values.items():
                if key.startswith(API_CALLS + "/"):
                    api = key.split("/", 1)[1]
                    calls[api] = calls.get(api, 0.0) + value
            used = values.get(f"{SALESFORCE_USAGE}/used")
            limit = values.get(f"{SALESFORCE_USAGE}/limit")
            if used is not None and limit is not None:
                usage = (used, limit)
        for flow, (rate, lag) in flows.items():
            self.series.setdefault(flow, deque(maxlen=self._keep)).append(Point(at, rate, lag))
        self.api_calls = calls
        self.salesforce_usage = usage

    def start(self) -> Sampler:
        self._job = Periodic("metrics-sampler", self.every_s, self.sample, at_once=True).start()
        return self

    def close(self) -> None:
        if self._job is not None:  # a sample under way ends within its fetch timeout
            self._job.close(timeout_s=1)
        self._http.close()


def _values(text: str) -> dict[str, float]:
    """The sums the page charts, from one worker's exposition text."""
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == SALESFORCE_USAGE:  # the org's figure: the newest, never a sum
                out[f"{SALESFORCE_USAGE}/{s.labels.get('kind', '?')}"] = s.value
            if s.name not in (EVENTS_IN, LAG, API_CALLS):
                continue
            key = f"{API_CALLS}/{s.labels.get('api', '?')}" if s.name == API_CALLS else s.name
            out[key] = out.get(key, 0.0) + s.value
    return out


def chart_svg(points: Sequence[Point], width: int = 360, height: int = 90) -> str:
    """Rate (solid) and lag (dashed) over the points' time span, each scaled to its own
    maximum, as an inline SVG with the maxima written beside it."""
    if len(points) < 2:
        return (
            f'<svg class="chart" width="{width}" height="{height}" role="img">'
            f'<text x="8" y="{height // 2}">collecting samples (every 15 s)</text></svg>'
        )
    t0, t1 = points[0].at, points[-1].at

    def line(values: list[float], css: str) -> str:
        top = max(values) or 1.0
        xy = " ".join(
            f"{(p.at - t0) / (t1 - t0) * (width - 4) + 2:.1f},"
            f"{height - 14 - v / top * (height - 24):.1f}"
            for p, v in zip(points, values, strict=True)
        )
        return f'<polyline class="{css}" fill="none" points="{xy}"/>'

    rates, lags = [p.rate for p in points], [p.lag for p in points]
    span = (t1 - t0) / 60
    return (
        f'<svg class="chart" width="{width}" height="{height}" role="img">'
        f"{line(rates, 'rate')}{line(lags, 'lag')}"
        f'<text x="2" y="{height - 2}">last {span:.0f} min: rate max {max(rates):.1f}/s,'
        f" now {rates[-1]:.1f}/s; lag max {max(lags):.0f}, now {lags[-1]:.0f}</text></svg>"
    )
