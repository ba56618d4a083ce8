"""A throwaway Apache Kafka broker (KRaft, from Maven jars) for one test session.

``scripts/apache-kafka run`` under the process guard of `app.process` (the broker goes
with the session, even when pytest is killed), ready once its bootstrap address is in the
ready file. Under pytest-xdist each worker has one, so the Apache Kafka tier runs its
tests side by side instead of one after another on a single shared broker::

    with ApacheKafka(tmp_dir) as broker:
        broker.bootstrap  # "127.0.0.1:PORT"
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from app.process import spawn, stop

__all__ = ["ApacheKafka", "ApacheKafkaError"]

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "apache-kafka"
START_TIMEOUT_S = 180.0  # a JVM's first start on 2 busy cores


class ApacheKafkaError(RuntimeError):
    """The broker did not start: the message ends with the tail of its log."""


class ApacheKafka:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.log = workdir / "apache-kafka.log"
        self._ready = workdir / "ready"
        self._proc: subprocess.Popen[bytes] | None = None
        self.bootstrap = ""

    def __enter__(self) -> ApacheKafka:
        self._proc = spawn(
            [sys.executable, str(SCRIPT), "run", "--lean", "--ready-file", str(self._ready)],
            log=self.log,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._ready.exists():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
                raise ApacheKafkaError(f"Apache Kafka did not start ({self.log}):\n{tail}")
            time.sleep(0.2)
        self.bootstrap = self._ready.read_text().strip()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            stop(self._proc, grace_s=30.0)  # the script stops the JVM and removes its data
            self._proc = None
