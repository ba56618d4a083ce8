"""A consumer group's progress as the broker sees it, apart from the worker's own loop.

A worker reports `actions_sync_consumer_lag` after each batch it wrote: a worker that was
caught up and then retries one batch forever (store down, an API answering 503) keeps
reporting 0. `ProgressMonitor` is a thread of every consuming worker that, every
`interval_s`, asks the broker for the group's committed offsets and the partitions' end
offsets, and exports per partition `actions_sync_broker_lag` (end - committed) and
`actions_sync_commit_stalled_seconds` (how long records have waited with the committed
offset not moving). Every copy of a worker reports every partition of its group, so a
stuck or dead copy's partitions are still reported by the others (the alerts take the max
per partition). `health()` says what `/healthz` answers: unhealthy while a partition this
process owns has been stalled longer than `stall_s`.

On Tansu the end offset is the last batch's base offset + 1 (`actions_sync.kafka`), so
the lag there undercounts multi-record batches; it is still > 0 while records wait.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

from confluent_kafka import Consumer, KafkaException, TopicPartition

from actions_sync.clock import Clock, SystemClock
from actions_sync.metrics import BROKER_LAG, COMMIT_STALLED_SECONDS
from actions_sync.periodic import Periodic

__all__ = ["ProgressMonitor"]

log = logging.getLogger(__name__)
TP = tuple[str, int]
TIMEOUT_S = 10.0


class ProgressMonitor:
    """Reads the progress of consumer group `group` (worker `worker`) on `topics`."""

    def __init__(
        self,
        bootstrap: str,
        group: str,
        worker: str,
        topics: Iterable[str],
        interval_s: float,
        stall_s: float,
        owned: Callable[[], Iterable[TP]] | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.group = group
        self.worker = worker
        self.topics = tuple(topics)
        self.interval_s = interval_s
        self.stall_s = stall_s
        self._owned = owned  # this process's partitions; None: all of the group's
        self._clock = clock or SystemClock()
        # A consumer that never subscribes does not join (or disturb) the group.
        self._consumer = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False}
        )
        self._seen: dict[TP, tuple[int, float]] = {}  # committed offset, when it last moved
        self._stalled: dict[TP, float] = {}
        self._lock = threading.Lock()
        self._job = Periodic(f"progress-{worker}", interval_s, self._sample_or_warn, at_once=True)

    def start(self) -> ProgressMonitor:
        self._job.start()
        return self

    def close(self) -> None:
        if not self._job.close(TIMEOUT_S):
            # Still inside a call to a broker that does not answer: closing the client
            # under it is unsafe, and the daemon thread ends with the process anyway.
            return
        self._consumer.close()

    def _sample_or_warn(self) -> None:
        try:
            self.sample()
        except (KafkaException, RuntimeError) as exc:  # the broker away: try next round
            log.warning("cannot read the progress of group %s: %s", self.group, exc)

    def sample(self) -> dict[TP, int]:
        """One round: read committed and end offsets, export them; return the lag per
        partition."""
        partitions = self._partitions()
        committed = {
            (tp.topic, tp.partition): tp.offset
            for tp in self._consumer.committed(partitions, timeout=TIMEOUT_S)
        }
        now = self._clock.monotonic()
        lags: dict[TP, int] = {}
        stalled: dict[TP, float] = {}
        for tp in partitions:
            key = (tp.topic, tp.partition)
            low, high = self._consumer.get_watermark_offsets(tp, timeout=TIMEOUT_S)
            position = committed[key] if committed[key] >= 0 else low  # none yet: earliest
            lag = max(high - position, 0)
            last = self._seen.get(key)
            since = now if last is None or last[0] != position or lag == 0 else last[1]
            self._seen[key] = (position, since)
            lags[key] = lag
            stalled[key] = now - since
            BROKER_LAG.labels(self.worker, tp.topic, str(tp.partition)).set(lag)
            COMMIT_STALLED_SECONDS.labels(self.worker, tp.topic, str(tp.partition)).set(
                stalled[key]
            )
        with self._lock:
            self._stalled = stalled
        return lags

    def _partitions(self) -> list[TopicPartition]:
        found = []
        metadata = self._consumer.list_topics(timeout=TIMEOUT_S).topics
        for topic in self.topics:
            meta = metadata.get(topic)
            if meta is None or meta.error is not None:
                continue  # not created yet: nothing to consume
            found += [TopicPartition(topic, p) for p in sorted(meta.partitions)]
        return found

    def health(self) -> str | None:
        """Why this worker is unhealthy (a partition of its own stalled), or None."""
        with self._lock:
            stalled = dict(self._stalled)
        mine = set(self._owned()) if self._owned is not None else set(stalled)
        stuck = sorted((tp, s) for tp, s in stalled.items() if tp in mine and s > self.stall_s)
        if not stuck:
            return None
        listed = ", ".join(f"{t}[{p}] {s:.0f}s" for (t, p), s in stuck)
        return (
            f"group {self.group}: committed offset not moving while records wait"
            f" (over {self.stall_s:.0f}s): {listed}"
        )
