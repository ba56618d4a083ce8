"""`LiveSettings`: the admin settings an agent reads, kept current in the background.

DESIGN.md "Settings are live": a change applies within seconds, without a restart. The
reader follows the compacted `actions.settings` topic, where a change arrives in well
under a second. With a store at hand, the store stays the truth: a snapshot on the topic
is the signal to re-read it (so a topic left over from another store, or two admins'
publishes arriving out of order, can never win over it), and the store is also re-read
now and then as a safety net for a publish that failed after its commit. Without a store
the snapshots themselves are taken, the newest revision winning; without a broker the
store is polled.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from sqlalchemy import Engine

from actions_sync.admin.model import AdminSettings
from actions_sync.admin.snapshot import SETTINGS_TOPIC, Versioned, decode, ensure_topic, from_stored
from actions_sync.metrics import applied_revision
from actions_sync.store import admin_settings as stored

__all__ = ["LiveSettings", "load"]

log = logging.getLogger(__name__)


def load(engine: Engine) -> Versioned:
    """The current settings from the store."""
    snapshot = stored.read(engine)
    return Versioned(from_stored(snapshot.values), snapshot.revision)


class LiveSettings:
    """`current()` is always a complete, valid snapshot; call `start()` then `close()`."""

    def __init__(
        self,
        engine: Engine | None = None,
        bootstrap: str | None = None,
        store_every_s: float | None = None,
        replication: int = 1,
    ) -> None:
        self._engine = engine
        self._bootstrap = bootstrap
        self._replication = replication
        # Without the topic the store is the only source, so it is read often.
        self._store_every_s = store_every_s or (30.0 if bootstrap else 1.0)
        self._latest = Versioned(AdminSettings(), -1)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def current(self) -> AdminSettings:
        return self._latest.settings

    @property
    def revision(self) -> int:
        return self._latest.revision

    def offer(self, snapshot: Versioned) -> bool:
        """Take `snapshot` if it is not older than what we have."""
        if snapshot.revision < self._latest.revision:
            return False
        self._apply(snapshot)
        return True

    def _apply(self, snapshot: Versioned) -> None:
        if snapshot.settings != self._latest.settings:
            log.info("admin settings revision %d applied", snapshot.revision)
        self._latest = snapshot  # one reference swap: readers see old or new, never a mix
        applied_revision(snapshot.revision)  # which workers have applied a change

    def start(self) -> LiveSettings:
        """Read the store once (so the first batch already has the real settings), then
        follow changes in a daemon thread."""
        if self._engine is not None:
            self._apply(load(self._engine))
        if self._bootstrap:
            ensure_topic(self._bootstrap, self._replication)
        self._thread = threading.Thread(target=self._run, name="live-settings", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        consumer = self._consumer() if self._bootstrap else None
        next_store = time.monotonic() + self._store_every_s
        try:
            while not self._stop.is_set():
                if consumer is not None:
                    self._poll(consumer)
                else:
                    self._stop.wait(min(0.5, self._store_every_s))
                if self._engine is not None and time.monotonic() >= next_store:
                    next_store = time.monotonic() + self._store_every_s
                    self._refresh_from_store()
        finally:
            if consumer is not None:
                consumer.close()

    def _consumer(self) -> Consumer:
        assert self._bootstrap
        # No group: every worker reads the whole (one-partition, compacted) topic itself.
        consumer = Consumer(
            {
                "bootstrap.servers": self._bootstrap,
                "group.id": f"actions-sync-settings-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
            }
        )
        consumer.assign([TopicPartition(SETTINGS_TOPIC, 0, OFFSET_BEGINNING)])
        return consumer

    def _poll(self, consumer: Consumer) -> None:
        msg = consumer.poll(0.5)
        value = None if msg is None or msg.error() else msg.value()
        if msg is None or value is None:
            return
        try:
            snapshot = decode(value)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning(
                "skipping an unreadable settings snapshot at offset %d: %s", msg.offset(), exc
            )
            return
        if self._engine is None or not self._refresh_from_store():
            self.offer(snapshot)

    def _refresh_from_store(self) -> bool:
        assert self._engine is not None
        try:
            snapshot = load(self._engine)
        except Exception as exc:  # the store may be down for a while; keep the last good
            log.warning("admin settings not refreshed from the store: %s", exc)
            return False
        self._apply(snapshot)  # the store is the truth, whatever its revision
        return True

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> LiveSettings:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
