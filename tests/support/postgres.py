"""A throwaway real PostgreSQL server for tests.

``PostgresServer`` runs ``initdb`` + ``pg_ctl`` from the machine's PostgreSQL
packages in a temp directory, on a free 127.0.0.1 port with trust auth and
durability switched off (tests never need crash safety, and fsync dominates
their run time otherwise)::

    with PostgresServer() as pg:
        engine = create_engine(pg.url)
        other_url = pg.create_database("isolated")

As root (CI, containers) the server runs as the ``postgres`` user through
``runuser``, because ``initdb`` and ``postgres`` refuse to run as root.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import weakref
from glob import glob
from pathlib import Path
from types import TracebackType

import psycopg
from psycopg import sql

__all__ = ["DURABLE_SETTINGS", "PostgresError", "PostgresServer", "find_pg_bin"]

INSTALL_HINT = "apt-get install postgresql"
SERVICE_USER = "postgres"
DEFAULT_DATABASE = "actions_sync"
# Durability off: a test database is disposable, and these make it several times faster.
SERVER_SETTINGS = (
    "-c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
)
# PostgreSQL's own defaults (fsync, synchronous_commit, full_page_writes on): what a
# production server runs, for benchmarks that measure beside the fast test settings.
DURABLE_SETTINGS = "-c listen_addresses=127.0.0.1"
START_ATTEMPTS = 3  # a freshly picked free port can be taken before postgres binds it
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


class PostgresError(RuntimeError):
    """The server could not be found, started or used."""


def _version_key(bin_dir: str) -> tuple[int, ...]:
    """Sort /usr/lib/postgresql/<version>/bin numerically (10 > 9.6)."""
    version = Path(bin_dir).parent.name
    return tuple(int(part) for part in re.findall(r"\d+", version))


def find_pg_bin() -> Path:
    """Directory holding ``initdb`` and ``pg_ctl``: Debian's newest version, else PATH."""
    for bin_dir in sorted(glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True):
        if all(os.access(Path(bin_dir) / tool, os.X_OK) for tool in ("initdb", "pg_ctl")):
            return Path(bin_dir)
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl and Path(initdb).parent == Path(pg_ctl).parent:
        return Path(initdb).parent
    raise PostgresError(f"PostgreSQL server binaries (initdb, pg_ctl) not found: {INSTALL_HINT}")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no server log)"


class PostgresServer:
    """Context manager for a private PostgreSQL instance; ``stop()`` leaves nothing behind."""

    def __init__(
        self,
        database: str = DEFAULT_DATABASE,
        port: int | None = None,
        settings: str = SERVER_SETTINGS,
    ) -> None:
        self.database = database
        self.settings = settings
        self.host = "127.0.0.1"
        self.port = port or 0
        self._fixed_port = port is not None
        self._bin: Path | None = None
        self._root: Path | None = None
        self._finalizer: weakref.finalize[[Path, Path], PostgresServer] | None = None

    # ------------------------------------------------------------------ paths

    @property
    def running(self) -> bool:
        return self._finalizer is not None and self._finalizer.alive

    @property
    def root(self) -> Path:
        """Temp dir of the cluster (still readable after ``stop()``, when it no longer exists)."""
        if self._root is None:
            raise PostgresError("PostgresServer was never started")
        return self._root

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_file(self) -> Path:
        return self.root / "postgres.log"

    @property
    def url(self) -> str:
        """SQLAlchemy URL (psycopg 3 driver) of the default database."""
        return self.url_for(self.database)

    def url_for(self, database: str) -> str:
        return f"postgresql+psycopg://{SERVICE_USER}@{self.host}:{self.port}/{database}"

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> PostgresServer:
        """initdb a temp cluster, start it, create the default database."""
        if self.running:
            raise PostgresError("PostgresServer already started")
        self._bin = find_pg_bin()
        self._root = Path(tempfile.mkdtemp(prefix="actions-sync-pg-"))
        # Safety net: stop the server even if the caller forgets, or at interpreter exit.
        self._finalizer = weakref.finalize(self, _shutdown, self._bin, self._root)
        try:
            self._prepare_root()
            self._run(
                "initdb",
                "-D", str(self.data_dir),
                "-U", SERVICE_USER,
                "--auth=trust",
                "-E", "UTF8",
                # C locale: the machine's LANG may name a locale that is not generated.
                "--locale=C",
                "--no-sync",
            )  # fmt: skip
            self._start_server()
            self.create_database(self.database)
        except BaseException:
            self.stop()
            raise
        return self

    def _prepare_root(self) -> None:
        (self.root / "sock").mkdir()
        if _as_service_user():
            try:
                entry = pwd.getpwnam(SERVICE_USER)
            except KeyError:
                raise PostgresError(
                    f"running as root needs a '{SERVICE_USER}' user to own the cluster: "
                    f"{INSTALL_HINT} (creates it)"
                ) from None
            for path in (self.root, self.root / "sock"):
                os.chown(path, entry.pw_uid, entry.pw_gid)

    def _start_server(self) -> None:
        attempts = 1 if self._fixed_port else START_ATTEMPTS
        for attempt in range(1, attempts + 1):
            if not self._fixed_port:
                self.port = _free_port()
            options = f"-p {self.port} -k {self.root / 'sock'} {self.settings}"
            result = self._run(
                "pg_ctl",
                "-D", str(self.data_dir),
                "-l", str(self.log_file),
                "-o", options,
                "-w", "-t", "60",
                "start",
                check=False,
            )  # fmt: skip
            if result.returncode == 0:
                return
            port_taken = "Address already in use" in _tail(self.log_file, 10)
            if not (port_taken and attempt < attempts):
                raise PostgresError(
                    f"pg_ctl start failed (exit {result.returncode}):\n"
                    f"{result.stdout}{result.stderr}\n--- server log ---\n{_tail(self.log_file)}"
                )

    def stop(self) -> None:
        """Fast shutdown, then remove the temp dir. Safe to call twice."""
        if self._finalizer is not None:
            self._finalizer()  # runs _shutdown once; later calls are no-ops

    def halt(self) -> None:
        """`pg_ctl stop` (fast shutdown), keeping the cluster: an outage until `resume()`."""
        self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop")

    def resume(self) -> None:
        """Start the halted cluster again, on the port its clients know."""
        fixed, self._fixed_port = self._fixed_port, True
        try:
            self._start_server()
        finally:
            self._fixed_port = fixed

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ databases

    def create_database(self, name: str) -> str:
        """Create database ``name`` and return its SQLAlchemy URL."""
        if not _IDENTIFIER.match(name):
            raise ValueError(f"unsafe database name: {name!r}")
        # CREATE DATABASE cannot run inside a transaction, hence autocommit.
        with psycopg.connect(
            host=self.host, port=self.port, user=SERVICE_USER, dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url_for(name)

    # ------------------------------------------------------------------ helpers

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        assert self._bin is not None
        result = _run_tool(self._bin, tool, list(args), cwd=self.root)
        if check and result.returncode != 0:
            raise PostgresError(
                f"{tool} failed (exit {result.returncode}):\n{result.stdout}{result.stderr}"
            )
        return result


def _as_service_user() -> bool:
    """initdb/postgres refuse root, so as root everything runs as ``postgres``."""
    return os.geteuid() == 0


def _run_tool(
    bin_dir: Path, tool: str, args: list[str], cwd: Path
) -> subprocess.CompletedProcess[str]:
    cmd = [str(bin_dir / tool), *args]
    if _as_service_user():
        cmd = ["runuser", "-u", SERVICE_USER, "--", *cmd]
    # cwd inside the temp dir: the postgres user may not be allowed into the caller's cwd.
    try:
        return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:  # runuser itself missing (non-Debian root setups)
        raise PostgresError(f"cannot run {cmd[0]}: {exc.strerror}") from exc


def _postmaster_pid(data_dir: Path) -> int | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        return int((data_dir / "postmaster.pid").read_text().splitlines()[0])
    return None


def _shutdown(bin_dir: Path, root: Path) -> None:
    """Stop the cluster under ``root`` (fast, then immediate, then SIGKILL) and delete it."""
    data_dir = root / "data"
    if (data_dir / "postmaster.pid").exists():
        for mode in ("fast", "immediate"):
            result = _run_tool(
                bin_dir, "pg_ctl", ["-D", str(data_dir), "-m", mode, "-w", "-t", "30", "stop"], root
            )
            if result.returncode == 0:
                break
        else:
            pid = _postmaster_pid(data_dir)
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                    time.sleep(0.5)  # let the backends notice the postmaster is gone
    shutil.rmtree(root, ignore_errors=True)
