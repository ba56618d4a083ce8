"""What every sandbox shares: a request journal, seeded faults, a server runner.

Each sandbox is an aiohttp application built by its own module; `SandboxServer` runs one
on a loopback port in a background thread (tests, the embedded runtime) and `serve`
runs one in the foreground (`actions-sync sandbox NAME`). Every sandbox answers:

    GET  /_sandbox/journal   the requests seen so far (method, path, status, code)
    POST /_sandbox/faults    replace the fault plan: {"error_rate": 0.1, "latency_ms": 5, ...}
    POST /_sandbox/reset     clear the journal
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, TypeVar

from aiohttp import web

__all__ = [
    "CODE",
    "DailyQuota",
    "FaultPlan",
    "Faults",
    "Journal",
    "JournalEntry",
    "SandboxServer",
    "add_control_routes",
    "config_from_options",
    "free_port",
    "load_json",
    "main_for",
    "options_parser",
    "serve",
]

# Key on a response: the vendor error code it carries (recorded in the journal).
CODE = web.ResponseKey("sandbox_code", str)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on `host`, for a process about to bind it.

    Drawn below the kernel's ephemeral range when there is room: every outgoing
    connection (a Kafka client opens many) takes a port from that range, so a port picked
    there was sometimes taken before its process bound it ("Address already in use")."""
    low = _ephemeral_low()
    for _ in range(100 if low > _LOWEST + 1000 else 0):
        port = random.randrange(_LOWEST, low)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


_LOWEST = 20000  # above the registered ports most services listen on


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as ranges:
            return int(ranges.read().split()[0])
    except (OSError, ValueError, IndexError):
        return _LOWEST  # unknown: the kernel's choice


@dataclass(frozen=True)
class JournalEntry:
    method: str
    path: str
    query: str
    status: int
    code: str | None  # vendor error code when the answer carried one
    at: float


class Journal:
    """Thread-safe append-only record of the requests a sandbox answered."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[JournalEntry] = []

    def record(self, entry: JournalEntry) -> None:
        with self._lock:
            self._entries.append(entry)

    def entries(self) -> list[JournalEntry]:
        with self._lock:
            return list(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


@dataclass(frozen=True)
class FaultPlan:
    """Faults to inject, chosen by a seeded generator so that a run is reproducible.

    `error_rate` is the share of data calls answered with the sandbox's transient error
    (5xx or the vendor's retryable code); `latency_ms` delays every data call, and
    `latency_jitter_ms` adds a delay drawn per call between 0 and itself (deadlines see
    a spread of answer times, not one); `timeout_rate` holds a call for `timeout_s`
    before answering it.
    Vendor-specific faults (token expiry, lock errors ...) live in the sandbox's own config.
    """

    seed: int = 0
    error_rate: float = 0.0
    latency_ms: float = 0.0
    timeout_rate: float = 0.0
    timeout_s: float = 30.0
    latency_jitter_ms: float = 0.0


FAULT_OPTIONS = frozenset(
    {"error_rate", "latency_ms", "timeout_rate", "timeout_s", "latency_jitter_ms"}
)
C = TypeVar("C")


def config_from_options(cls: type[C], **options: Any) -> C:
    """Build a sandbox config dataclass from flat, CLI-friendly options.

    `error_rate, latency_ms, timeout_rate, timeout_s` and `fault_seed` go to its fault
    plan (field `faults`); None values keep the default; unknown names are an error.
    """
    given = {k: v for k, v in options.items() if v is not None}
    plan = {k: given.pop(k) for k in list(given) if k in FAULT_OPTIONS}
    if "fault_seed" in given:
        plan["seed"] = given.pop("fault_seed")
    unknown = sorted(set(given) - {f.name for f in fields(cls)})  # type: ignore[arg-type]
    if unknown:
        raise ValueError(f"unknown {cls.__name__} option(s): {', '.join(unknown)}")
    config = cls(**given)
    if plan:
        config = replace(config, faults=replace(config.faults, **plan))  # type: ignore[attr-defined,type-var]
    return config


class Faults:
    """The live fault plan of one sandbox and the random stream that drives it."""

    def __init__(self, plan: FaultPlan | None = None) -> None:
        self._lock = threading.Lock()
        self.plan = plan or FaultPlan()
        self._rng = random.Random(self.plan.seed)

    def replace(self, **changes: Any) -> FaultPlan:
        with self._lock:
            self.plan = replace(self.plan, **changes)
            self._rng = random.Random(self.plan.seed)
            return self.plan

    def roll(self, rate: float) -> bool:
        """True with probability `rate` (drawn from the plan's seeded stream)."""
        if rate <= 0:
            return False
        with self._lock:
            return self._rng.random() < rate

    def draw(self, most: float) -> float:
        """A value between 0 and `most` (from the plan's seeded stream; 0 draws nothing)."""
        if most <= 0:
            return 0.0
        with self._lock:
            return self._rng.uniform(0.0, most)

    async def delay(self) -> None:
        """Sleep for the configured latency and, sometimes, for a whole timeout."""
        delay_ms = self.plan.latency_ms + self.draw(self.plan.latency_jitter_ms)
        if delay_ms > 0:
            await asyncio.sleep(delay_ms / 1000)
        if self.roll(self.plan.timeout_rate):
            await asyncio.sleep(self.plan.timeout_s)


class DailyQuota:
    """A per-day call budget; `reset()` plays the role of the vendor's daily reset."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self.used >= self.limit:
                return False
            self.used += 1
            return True

    def reset(self) -> None:
        with self._lock:
            self.used = 0


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
JOURNAL_KEY = web.AppKey("journal", Journal)
FAULTS_KEY = web.AppKey("faults", Faults)


# Marketo takes its client secret and access token in the query string: the journal, which
# anyone can read over HTTP, keeps them masked.
_SECRET_PARAM = re.compile(r"((?:^|&)(?:client_secret|access_token)=)[^&]*", re.I)


def add_control_routes(app: web.Application, journal: Journal, faults: Faults) -> None:
    """Mount the journal and the fault controls, and record every other request."""
    app[JOURNAL_KEY] = journal
    app[FAULTS_KEY] = faults

    async def get_journal(_: web.Request) -> web.Response:
        return web.json_response([asdict(e) for e in journal.entries()])

    async def set_faults(request: web.Request) -> web.Response:
        try:
            plan = faults.replace(**load_json(await request.read()))
        except (TypeError, ValueError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(asdict(plan))

    async def reset(_: web.Request) -> web.Response:
        journal.clear()
        return web.json_response({"ok": True})

    @web.middleware
    async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/_sandbox/"):
            return await handler(request)
        status, code = 500, None
        try:
            response = await handler(request)
            # A sandbox marks a vendor error code on its answer: response[CODE] = "606".
            status, code = response.status, response.get(CODE)
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            journal.record(
                JournalEntry(
                    request.method,
                    request.path,
                    _SECRET_PARAM.sub(r"\1***", request.query_string),
                    status,
                    code,
                    time.time(),
                )
            )

    app.middlewares.append(record)
    app.router.add_get("/_sandbox/journal", get_journal)
    app.router.add_post("/_sandbox/faults", set_faults)
    app.router.add_post("/_sandbox/reset", reset)


@dataclass
class SandboxServer:
    """Runs an aiohttp app on a loopback port in a daemon thread with its own loop.

    Use as a context manager; `url` is ready when `__enter__` returns.
    """

    app: web.Application
    host: str = "127.0.0.1"
    port: int = 0
    _thread: threading.Thread | None = field(default=None, init=False, repr=False)
    _loop: asyncio.AbstractEventLoop | None = field(default=None, init=False, repr=False)
    _runner: web.AppRunner | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> SandboxServer:
        if not self.port:
            self.port = free_port(self.host)
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                self._runner = web.AppRunner(self.app, access_log=None)
                loop.run_until_complete(self._runner.setup())
                site = web.TCPSite(self._runner, self.host, self.port)
                loop.run_until_complete(site.start())
            except BaseException as exc:  # reported to the starting thread
                errors.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, name=f"sandbox:{self.port}", daemon=True)
        self._thread.start()
        ready.wait(30)
        if errors:
            raise RuntimeError(f"sandbox failed to start on {self.url}: {errors[0]}") from errors[0]
        return self

    def stop(self) -> None:
        if self._loop and self._thread:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._thread = None

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def load_json(raw: bytes | str) -> Any:
    """`json.loads` of a request body, where JSON nested deeper than the parser goes is a
    `ValueError` like any other malformed body (its RecursionError was a 500)."""
    try:
        return json.loads(raw)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def serve(app: web.Application, host: str, port: int) -> None:
    """Run a sandbox in the foreground until interrupted (the CLI's `sandbox` command)."""
    web.run_app(app, host=host, port=port, print=None, access_log=None)


def _flag(text: str) -> bool:
    if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
        raise argparse.ArgumentTypeError(f"not a boolean: {text}")
    return text.lower() in ("true", "1", "yes")


_FAULT_FLAGS: dict[str, Callable[[str], Any]] = {
    "error_rate": float,
    "latency_ms": float,
    "timeout_rate": float,
    "timeout_s": float,
    "fault_seed": int,
    "latency_jitter_ms": float,
}


def options_parser(
    config_cls: type,
    prog: str,
    description: str,
    port: int,
    optional: Mapping[str, Callable[[str], Any]] | None = None,
) -> argparse.ArgumentParser:
    """An argparse parser with a flag per field of `config_cls` and of its fault plan.

    `optional` gives the types of fields whose default (None) cannot tell them.
    """
    cli = argparse.ArgumentParser(prog=prog, description=description)
    cli.add_argument("--host", default="127.0.0.1")
    cli.add_argument("--port", type=int, default=port)
    defaults = config_cls()
    for f in fields(config_cls):
        if f.name == "faults":
            continue
        default = getattr(defaults, f.name)
        kind = (optional or {}).get(f.name) or (
            _flag if isinstance(default, bool) else type(default)
        )
        cli.add_argument(
            f"--{f.name.replace('_', '-')}", type=kind, default=None, help=f"default: {default}"
        )
    plan = FaultPlan()
    for name, kind in _FAULT_FLAGS.items():
        default = getattr(plan, "seed" if name == "fault_seed" else name)
        cli.add_argument(
            f"--{name.replace('_', '-')}",
            type=kind,
            default=None,
            help=f"fault plan, default: {default}",
        )
    return cli


def main_for(
    parser: argparse.ArgumentParser,
    config_cls: type,
    create_app: Callable[[Any], web.Application],
    argv: Sequence[str] | None = None,
) -> None:
    """`python -m sandboxes.NAME`: parse the flags and serve in the foreground."""
    options: dict[str, Any] = vars(parser.parse_args(argv))
    host, port = options.pop("host"), options.pop("port")
    serve(create_app(config_from_options(config_cls, **options)), host, port)
