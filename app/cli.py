"""`actions-sync`: every command of DESIGN.md, with `--help` everywhere.

Errors end the process with one line on stderr saying what is wrong and how to fix it:
exit 2 for bad arguments or configuration, 1 for a failed run.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console

from actions_sync.errors import ActionsSyncError, ConfigError
from actions_sync.settings import Settings, load_settings

if TYPE_CHECKING:
    from app.stack import Stack

__all__ = ["app", "main"]

C = TypeVar("C")

app = typer.Typer(
    help="Keep the Actions sales workspace, Marketo Engage and Salesforce in sync over Kafka.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
sync_app = typer.Typer(help="The people sync from Marketo (SPEC S6, S12).", no_args_is_help=True)
settings_app = typer.Typer(
    help="Admin settings, stored and audited (SPEC S12).", no_args_is_help=True
)
dlq_app = typer.Typer(
    help="Dead-letter topics: list what failed and why, replay it.", no_args_is_help=True
)
app.add_typer(sync_app, name="sync")
app.add_typer(settings_app, name="settings")
app.add_typer(dlq_app, name="dlq")
reconcile_app = typer.Typer(help="Full reconciliations with the vendors.", no_args_is_help=True)
app.add_typer(reconcile_app, name="reconcile")
explain_app = typer.Typer(
    help="Why a person is (or is not) in Actions; what became of an activity.", no_args_is_help=True
)
app.add_typer(explain_app, name="explain")


def say(message: str) -> None:
    """A plain line on stderr (never wrapped: scripts and tests read it)."""
    print(message, file=sys.stderr, flush=True)


PortOption = Annotated[int, typer.Option("--port", help="Port to listen on (0 = a free one).")]


class SandboxName(StrEnum):
    marketo = "marketo"
    salesforce = "salesforce"
    registry = "registry"


# `actions-sync worker NAME` -> the function that runs it, and the part of the product it
# belongs to (named when that part is not built yet).
WORKERS = {
    "people": ("streams.people:run", "the people agent (SPEC S1-S5)"),
    "marketo-source": (
        "connectors.marketo.source:run",
        "people sync from Marketo (lead changes, SPEC S6)",
    ),
    "activities": ("streams.activities:run", "sales activities out (activity router, S7/S8)"),
    "marketo-sink": (
        "connectors.marketo.sink:run",
        "sales activities out (Marketo custom activities, SPEC S7)",
    ),
    "salesforce-sink": (
        "connectors.salesforce.sink:run",
        "sales activities out (Salesforce Tasks, SPEC S8)",
    ),
    "unsubscribes": ("streams.unsubscribes:run", "unsubscribe sync with Salesforce (SPEC S9)"),
    "reminders": ("streams.reminders:run", "reminder-task sync with Salesforce (SPEC S11)"),
    "send-check": ("streams.send_check:run", "the Marketo unsubscribe check (SPEC S10)"),
    "admin-api": ("app.admin:run", "the admin HTTP API and page (SPEC S12)"),
    "salesforce-optout-sink": (
        "connectors.salesforce.optout_sink:run",
        "unsubscribe sync with Salesforce (opt-out writes, SPEC S9)",
    ),
    "salesforce-source": (
        "connectors.salesforce.source:run",
        "unsubscribe sync with Salesforce (opt-outs read, SPEC S9)",
    ),
}
# What `up` runs by default: every built flow, one copy each.
UP_WORKERS = (
    "people",
    "activities",
    "marketo-sink",
    "salesforce-sink",
    "admin-api",
    "unsubscribes",
    "salesforce-optout-sink",
    "send-check",
    "salesforce-source",
    "reminders",
)


def not_built(what: str, part: str) -> NoReturn:
    raise ConfigError(f"{what} is not built yet: it belongs to {part}")


def _entry(target: str, what: str, part: str) -> Any:
    """The function at `module:name`, or a one-line 'not built yet' error."""
    import importlib

    module, func = target.split(":")
    try:
        return getattr(importlib.import_module(module), func)
    except ModuleNotFoundError as exc:
        if exc.name and module.startswith(exc.name):
            not_built(what, part)
        raise


def _settings() -> Settings:
    from actions_sync.logging import configure_logging, secrets_of

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format, secrets_of(settings))
    return settings


@app.command()
def demo(
    people: Annotated[
        int, typer.Option(min=1, max=1_500_000, help="People in the generated population.")
    ] = 50_000,
    workers: Annotated[int, typer.Option(min=1, max=8, help="Copies of the people worker.")] = 1,
    seed: Annotated[int, typer.Option(help="Seed of the generated population.")] = 7,
    timeout: Annotated[
        float, typer.Option(help="Seconds to wait for the workers, per flow.")
    ] = 600.0,
    activities: Annotated[
        int,
        typer.Option(
            min=0,
            max=1_000_000,
            help="Sales activities for the activity flow, about people "
            "in the store (0: the people flow only).",
        ),
    ] = 3000,
    flows: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated subset of people, activities, settings, unsubscribes, "
            "send-checks, reminders (default: all; people always runs first)."
        ),
    ] = None,
    keep: Annotated[
        bool, typer.Option("--keep", help="Keep the run's store and logs (a temporary directory).")
    ] = False,
) -> None:
    """The main job: the embedded stack, every flow, live progress, then one
    reconciliation table with a row per SPEC behaviour (S1-S12) against the rules.
    Exit 0 only when every row agrees."""
    from app.demo import FLOWS, DemoOptions, parse_flows, run_demo

    chosen = parse_flows(flows) if flows is not None else tuple(FLOWS)
    out = Console()
    ok = run_demo(
        _settings(), DemoOptions(people, workers, seed, timeout, activities, chosen, keep), out
    )
    raise typer.Exit(0 if ok else 1)


@app.command()
def up(
    endpoints_file: Annotated[
        Path | None,
        typer.Option(
            help="Write the stack's URLs here as JSON (kafka, schema_registry, marketo, "
            "salesforce, admin, metrics by worker, logs) once it is up; removed on exit."
        ),
    ] = None,
    workers: Annotated[
        list[str] | None,
        typer.Option(
            "--worker", help="Worker to run (repeatable; default: " + ", ".join(UP_WORKERS) + ")."
        ),
    ] = None,
    seed_people: Annotated[
        int, typer.Option(min=0, help="People to seed into the Marketo and Salesforce sandboxes.")
    ] = 0,
    keep_logs: Annotated[
        bool,
        typer.Option(
            "--keep-logs",
            help="Keep the log directory after a clean stop (it is always kept "
            "when a worker fails).",
        ),
    ] = False,
) -> None:
    """Run the whole embedded stack in the foreground until Ctrl-C: broker, schema
    registry, Marketo and Salesforce sandboxes, and the workers."""
    from actions_sync.kafka import ensure_topics
    from actions_sync.store import Store
    from actions_sync.topics import INPUT_TOPICS, specs
    from app.stack import Stack, wait_http

    chosen = list(workers) if workers is not None else list(UP_WORKERS)
    for name in chosen:
        if name not in WORKERS:
            raise typer.BadParameter(f"unknown worker {name!r}", param_hint="--worker")
    settings = _settings()
    if endpoints_file:  # a stale one would tell a script waiting for it the wrong URLs
        endpoints_file.unlink(missing_ok=True)
    signal.signal(signal.SIGTERM, _interrupted)  # `kill %1` stops it as Ctrl-C does
    with Stack(settings, keep_logs=keep_logs) as stack:
        try:  # Ctrl-C (or `kill`) at any point, start-up included, stops it cleanly
            say(
                f"logs in {stack.logdir}"
                + ("" if keep_logs else " (removed on a clean stop unless --keep-logs)")
            )
            stack.start_vendors(seed_people)
            with Store(settings.database_url) as store:
                store.migrate()
            # The input topics exist before anyone publishes (an auto-created topic would get
            # the broker's partition count), and every worker answers before the endpoints
            # file appears: a script waiting for it can publish at once.
            ensure_topics(
                stack.bootstrap,
                specs(INPUT_TOPICS, settings.partitions, settings.replication_factor),
            )
            for name in chosen:
                stack.add_worker(name)
            for running in stack.workers:
                if running.metrics_url:
                    wait_http(running.metrics_url, timeout_s=300, proc=running.proc)
            _announce({**stack.endpoints(), "pid": os.getpid()}, stack, endpoints_file)
            say(
                "ready: every worker answers"
                + (f"; endpoints in {endpoints_file}" if endpoints_file else "")
                + "; Ctrl-C stops"
            )
            while all(w.proc.poll() is None for w in stack.workers):
                time.sleep(0.5)
            say(f"a worker exited; stopping (logs in {stack.logdir})")
            raise typer.Exit(1)
        except KeyboardInterrupt:
            pass
        finally:
            if endpoints_file:
                endpoints_file.unlink(missing_ok=True)


def _announce(endpoints: dict[str, Any], stack: Stack, endpoints_file: Path | None) -> None:
    """The endpoints (written whole or not at all: scripts wait for the file to appear;
    `pid` lets `env` skip a stale one) and a line per worker."""
    if endpoints_file:
        partial = endpoints_file.with_name(endpoints_file.name + ".partial")
        partial.write_text(json.dumps(endpoints, indent=2))
        partial.replace(endpoints_file)
    Console().print_json(data=endpoints)
    for worker in stack.workers:
        say(
            f"{worker.log.stem.removeprefix('worker-')}: "
            f"{worker.metrics_url or 'no /metrics'}, log {worker.log}"
        )


def _interrupted(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


@app.command()
def worker(
    name: Annotated[str, typer.Argument(help="Which worker: " + ", ".join(WORKERS))],
) -> None:
    """Run one agent or connector; more copies of the same NAME share the load."""
    if name not in WORKERS:
        raise typer.BadParameter(
            f"unknown worker {name!r}; choose from " + ", ".join(WORKERS), param_hint="NAME"
        )
    target, part = WORKERS[name]
    _entry(target, f"worker {name!r}", part)(_settings())


@app.command()
def broker(port: PortOption = 0) -> None:
    """Run the embedded Kafka-protocol broker (Tansu) with the project's topics created."""
    from actions_sync.kafka import ensure_topics
    from actions_sync.topics import INPUT_TOPICS, specs
    from app.broker import EmbeddedBroker

    settings = _settings()
    with EmbeddedBroker(port) as running:
        ensure_topics(running.bootstrap, specs(INPUT_TOPICS, settings.partitions))
        print(f"KAFKA_BOOTSTRAP_SERVERS={running.bootstrap}", flush=True)
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            pass


@app.command()
def sandbox(
    name: Annotated[SandboxName, typer.Argument(help="Which API to stand in for.")],
    port: PortOption = 0,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    client_id: Annotated[str, typer.Option(help="OAuth client id it accepts.")] = "actions-sync",
    client_secret: Annotated[
        str, typer.Option(help="OAuth client secret it accepts.")
    ] = "sandbox-secret",
    seed_people: Annotated[
        int,
        typer.Option(
            min=0,
            help="People to seed from the generated population (Marketo leads, "
            "Salesforce Leads/Contacts).",
        ),
    ] = 0,
    seed: Annotated[int, typer.Option(help="Seed of the generated population.")] = 7,
    error_rate: Annotated[
        float,
        typer.Option(min=0, max=1, help="Share of data calls answered with a transient error."),
    ] = 0.0,
    latency_ms: Annotated[float, typer.Option(min=0, help="Delay of every data call.")] = 0.0,
    fault_seed: Annotated[int, typer.Option(help="Seed of the injected faults.")] = 0,
    token_expiry_s: Annotated[
        float | None, typer.Option(help="Marketo: tokens die after this many seconds (fault).")
    ] = None,
    session_ttl_s: Annotated[
        float | None,
        typer.Option(help="Salesforce: sessions expire after this many seconds (fault)."),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Any other config field, KEY=VALUE (JSON value), e.g. "
            "--set rate_calls=1000. Repeatable.",
        ),
    ] = None,
    user: Annotated[
        list[str] | None,
        typer.Option(
            "--user",
            help="Salesforce: another API user, CLIENT_ID:CLIENT_SECRET:USER_ID; a "
            "client logging in with those acts as that person. Repeatable.",
        ),
    ] = None,
) -> None:
    """Run a local stand-in for Marketo, Salesforce or a schema registry over HTTP."""
    from actions_sync.logging import configure_logging
    from sandboxes.base import free_port, serve

    configure_logging(secrets=[client_secret])  # a failing request's traceback, redacted

    options: dict[str, object] = {
        "client_id": client_id,
        "client_secret": client_secret,
        "seed_people": seed_people,
        "seed": seed,
        "error_rate": error_rate,
        "latency_ms": latency_ms,
        "fault_seed": fault_seed,
    }
    for item in set_ or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--set")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    if user and name is not SandboxName.salesforce:
        raise typer.BadParameter("only the Salesforce sandbox has API users", param_hint="--user")
    if name is SandboxName.registry:
        from sandboxes.base import config_from_options
        from sandboxes.registry import RegistryConfig
        from sandboxes.registry import create_app as registry_app

        faults = {k: options[k] for k in ("error_rate", "latency_ms", "fault_seed")}
        web_app = registry_app(config_from_options(RegistryConfig, **faults))
    elif name is SandboxName.marketo:
        from sandboxes.marketo import MarketoConfig
        from sandboxes.marketo import create_app as marketo_app

        web_app = marketo_app(
            _sandbox_config(MarketoConfig, token_expiry_s=token_expiry_s, **options)
        )
    else:
        from sandboxes.salesforce import SalesforceConfig
        from sandboxes.salesforce import create_app as salesforce_app

        if user:
            options["users"] = tuple(user)
        web_app = salesforce_app(
            _sandbox_config(SalesforceConfig, session_ttl_s=session_ttl_s, **options)
        )
    port = port or free_port(host)
    print(f"{name.value} sandbox on http://{host}:{port}", flush=True)
    serve(web_app, host, port)


def _sandbox_config(cls: type[C], **options: object) -> C:
    try:
        return cls.from_options(**options)  # type: ignore[attr-defined,no-any-return]
    except (TypeError, ValueError) as exc:
        raise typer.BadParameter(str(exc), param_hint="--set") from exc


@app.command()
def produce(
    topic: Annotated[
        str, typer.Argument(help="A producer-contract topic, e.g. marketo.person.changes.")
    ],
    file: Annotated[str, typer.Argument(help="JSON lines file, or - for standard input.")],
) -> None:
    """Publish JSON lines as Avro records (Confluent wire format) on TOPIC. A bad line is
    named on stderr (FILE:LINE: reason) and skipped; the good ones are published. Exit
    status: 0 when every line was published, 1 when any line was bad."""
    from actions_sync.produce import LineError, parse_lines
    from actions_sync.publish import Publisher
    from actions_sync.serialization import RegistryClient
    from actions_sync.topics import RECORD_OF

    if topic not in RECORD_OF:
        raise typer.BadParameter(
            f"{topic!r} is not a producer topic; choose from " + ", ".join(RECORD_OF),
            param_hint="TOPIC",
        )
    if file != "-" and not Path(file).is_file():
        raise typer.BadParameter(f"no such file: {file}", param_hint="FILE")
    settings = _settings()
    if not settings.kafka_bootstrap_servers or not settings.schema_registry_url:
        raise ConfigError(
            "set KAFKA_BOOTSTRAP_SERVERS and SCHEMA_REGISTRY_URL "
            "(`actions-sync up --endpoints-file F` prints them)"
        )
    lines = sys.stdin if file == "-" else Path(file).open()  # noqa: SIM115
    registry = RegistryClient(settings.schema_registry_url)
    publisher = Publisher(settings.kafka_bootstrap_servers, registry)
    errors = 0

    def good() -> object:
        nonlocal errors
        for item in parse_lines(RECORD_OF[topic], lines):
            if isinstance(item, LineError):
                errors += 1
                say(f"{file}:{item}")
            else:
                yield item

    try:
        sent = publisher.publish(topic, RECORD_OF[topic], good())  # type: ignore[arg-type]
        publisher.flush()
    finally:
        registry.close()
        lines.close()
    say(f"published {sent} records to {topic}; {errors} bad lines")
    raise typer.Exit(1 if errors else 0)


@sync_app.command("start")
def sync_start() -> None:
    """Initiate the data sync: bulk-load every qualified person from Marketo (resumes
    from its checkpoint after a crash), with progress."""
    _entry(
        "connectors.marketo.source:initial_sync",
        "`sync start`",
        "people sync from Marketo (initial bulk sync, SPEC S6)",
    )(_settings())


@settings_app.command("show")
def settings_show() -> None:
    """Show the admin settings."""
    _entry("actions_sync.admin:show", "`settings show`", "admin settings (SPEC S12)")(_settings())


@settings_app.command("set")
def settings_set(
    key: Annotated[str, typer.Argument(help="Setting name (see `settings show`).")],
    value: Annotated[
        str,
        typer.Argument(
            help="New value: a boolean as true/false, on/off, yes/no or 1/0; objects as "
            "Lead,Contact or a JSON list; text as it is."
        ),
    ],
) -> None:
    """Change one admin setting (audited; applies without restarts)."""
    _entry("actions_sync.admin:set_value", "`settings set`", "admin settings (SPEC S12)")(
        _settings(), key, value
    )


ReasonOption = Annotated[
    str | None,
    typer.Option(help="Only letters whose error class or message contains TEXT (any case)."),
]


@dlq_app.command("list")
def dlq_list(
    topic: Annotated[str, typer.Argument(help="The source topic (its .dlq is read).")],
    limit: Annotated[int, typer.Option(min=1, help="At most this many records.")] = 100,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object a line, every header included.")
    ] = False,
    reason: ReasonOption = None,
    since: Annotated[
        str | None,
        typer.Option(
            help="Only letters dead-lettered since T: an ISO 8601 time or an age (30m, 2h, 1d)."
        ),
    ] = None,
) -> None:
    """List dead-lettered records of TOPIC with the reason of each."""
    from actions_sync.dead_letter_admin import Selection, parse_since, read_dead_letters

    selection = Selection(reason=reason, since=parse_since(since) if since else None)
    settings = _settings()
    letters = list(read_dead_letters(_bootstrap(settings), topic, limit, selection))
    for letter in letters:
        print(json.dumps(letter) if as_json else _letter_line(letter), flush=True)
    if not letters:
        say(
            f"no dead letters in {topic}.dlq"
            + ("" if selection == Selection() else " match the filters")
        )


def _letter_line(letter: dict[str, Any]) -> str:
    return (
        f"{letter['partition']}@{letter['offset']}  key={letter['key']}  "
        f"{letter['dead_lettered_at'][:19]}Z  {letter.get('error.class', '?')}"
        f" ({letter.get('error.stage', '?')}): {letter.get('error.message', '')}"
    )


@dlq_app.command("replay")
def dlq_replay(
    topic: Annotated[str, typer.Argument(help="The source topic to replay its .dlq into.")],
    reason: ReasonOption = None,
    key: Annotated[str | None, typer.Option(help="Only the letters of this record key.")] = None,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="List what would be replayed; publish and record nothing."),
    ] = False,
) -> None:
    """Publish TOPIC.dlq's records back to TOPIC (after fixing their cause). Each dead
    letter is replayed once: progress is kept in the consumer group actions-sync-dlq-replay
    (with --reason or --key, only up to the first letter skipped in each partition)."""
    from actions_sync.dead_letter_admin import Selection, replay_dead_letters

    settings = _settings()
    letters = replay_dead_letters(
        _bootstrap(settings), topic, Selection(reason=reason, key=key), dry_run=dry_run
    )
    for letter in letters:
        print(_letter_line(letter), flush=True)
    verb = "would replay" if dry_run else "replayed"
    say(f"{verb} {len(letters)} records from {topic}.dlq to {topic}")


@reconcile_app.command("unsubscribes")
def reconcile_unsubscribes(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would change; change nothing.")
    ] = False,
) -> None:
    """Walk Salesforce opt-outs and Actions unsubscribes and fix drift in the allowed
    directions (never writing false); prints each change. Resumes after a crash (SPEC S9)."""
    report = _entry(
        "streams.unsubscribe_reconcile:reconcile",
        "`reconcile unsubscribes`",
        "unsubscribe sync with Salesforce (SPEC S9)",
    )(_settings(), dry_run)
    raise typer.Exit(1 if report.failed else 0)


JsonOption = Annotated[bool, typer.Option("--json", help="The answer as one JSON object.")]


@explain_app.command("person")
def explain_person(
    marketo_id: Annotated[int, typer.Argument(help="The person's Marketo ID.")],
    as_json: JsonOption = False,
) -> None:
    """The store row and its version, the newest change on the topic, dead letters,
    unsubscribe and reminder state, and the rules' verdict. Exit 1 for an unknown id."""
    from app.explain import explain_person as explain

    _explained(explain(_settings(), marketo_id), as_json, f"Marketo ID {marketo_id}")


@explain_app.command("activity")
def explain_activity(
    activity_id: Annotated[str, typer.Argument(help="The sales activity's activity_id.")],
    as_json: JsonOption = False,
) -> None:
    """The activity on the topic, what the router wrote for Marketo and Salesforce, dead
    letters, the Marketo ledger entry, the Salesforce Task ids, and the rules' routing.
    Exit 1 for an unknown id."""
    from app.explain import explain_activity as explain

    _explained(explain(_settings(), activity_id), as_json, f"activity {activity_id}")


def _explained(found: dict[str, Any] | None, as_json: bool, what: str) -> None:
    from app.explain import render

    if found is None:
        say(f"{what}: unknown (not in the store, on the topics or in their dead letters)")
        raise typer.Exit(1)
    if as_json:
        print(json.dumps(found, indent=2), flush=True)
    else:
        render(found, Console())


def _bootstrap(settings: Settings) -> str:
    if not settings.kafka_bootstrap_servers:
        raise ConfigError("KAFKA_BOOTSTRAP_SERVERS is not set: point it at the cluster")
    return settings.kafka_bootstrap_servers


@app.command()
def tail(
    topic: Annotated[str, typer.Argument(help="Any topic of the project, its .dlq too.")],
    from_beginning: Annotated[
        bool,
        typer.Option(
            "--from-beginning", help="Start at each partition's first record, not its end."
        ),
    ] = False,
    key: Annotated[str | None, typer.Option(help="Only records with this key.")] = None,
    max_records: Annotated[
        int | None,
        typer.Option("--max", min=1, help="Stop after N records (default: follow until Ctrl-C)."),
    ] = None,
) -> None:
    """Print TOPIC's records as JSON lines: topic, partition, offset, timestamp, key,
    headers and the value decoded from Avro through the schema registry (a .dlq topic's
    values, and any that do not decode, as value_base64). Joins no consumer group."""
    from actions_sync.topic_admin import tail as tail_topic

    settings = _settings()
    stop = threading.Event()
    lines = tail_topic(
        _bootstrap(settings),
        settings.schema_registry_url,
        topic,
        from_beginning,
        key,
        max_records,
        stop,
    )
    signal.signal(signal.SIGTERM, _interrupted)
    try:
        for line in lines:
            print(line, flush=True)
    except KeyboardInterrupt:  # Ctrl-C ends it: close the consumer, exit 0
        stop.set()
    except BrokenPipeError:  # `| head`: the reader has what it wanted
        stop.set()
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    finally:
        lines.close()


@app.command()
def topics(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per topic.")] = False,
) -> None:
    """Every topic of the project on the broker: partitions, end offsets, and each consumer
    group's lag (committed offsets against the ends), in total and per partition."""
    from actions_sync.topic_admin import project_topics, topic_ends

    bootstrap = _bootstrap(_settings())
    found = topic_ends(bootstrap, project_topics(bootstrap))
    if not found:
        say(f"no topics of the project on {bootstrap}")
    for entry in found:
        if as_json:
            print(
                json.dumps(
                    {
                        "topic": entry.topic,
                        "partitions": len(entry.ends),
                        "ends": entry.ends,
                        "records": entry.records,
                        "groups": [
                            {
                                "group": g.group,
                                "lag": g.total,
                                "committed": g.committed,
                                "lag_by_partition": g.lag,
                            }
                            for g in entry.groups
                        ],
                    }
                ),
                flush=True,
            )
            continue
        ends = " ".join(f"{p}:{end}" for p, end in entry.ends.items())
        print(
            f"{entry.topic}  partitions {len(entry.ends)}  end offsets {entry.records} ({ends})",
            flush=True,
        )
        for group in entry.groups:
            lags = " ".join(f"{p}:{lag}" for p, lag in group.lag.items())
            print(f"  group {group.group}  lag {group.total} ({lags})", flush=True)


@app.command()
def env(
    endpoints_file: Annotated[
        Path,
        typer.Argument(
            help="The file `actions-sync up --endpoints-file F` writes once the stack is up."
        ),
    ],
    wait: Annotated[
        float, typer.Option(min=0, help="Seconds to wait for the file to appear.")
    ] = 300.0,
) -> None:
    """Print KAFKA_BOOTSTRAP_SERVERS=... and SCHEMA_REGISTRY_URL=... of a running `up`
    (waiting for it to be ready), for `export $(actions-sync env F)`."""
    deadline = time.monotonic() + wait
    while (endpoints := _live_endpoints(endpoints_file)) is None:
        if time.monotonic() > deadline:
            raise ConfigError(
                f"{endpoints_file} did not appear within {wait:.0f}s: is "
                f"`actions-sync up --endpoints-file {endpoints_file}` running?"
            )
        time.sleep(0.2)
    print(f"KAFKA_BOOTSTRAP_SERVERS={endpoints['kafka']}")
    print(f"SCHEMA_REGISTRY_URL={endpoints['schema_registry']}")


def _live_endpoints(path: Path) -> dict[str, Any] | None:
    """The endpoints `up` wrote to `path`, if that `up` is still running (a file left by
    one that was killed names a stack that is gone)."""
    try:
        endpoints: dict[str, Any] = json.loads(path.read_text())
        os.kill(int(endpoints["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return endpoints


# What every usage error of typer derives from: click's ClickException up to typer 0.27,
# typer's own TyperException from 0.28 (which vendors click). Both are bases of
# BadParameter, so this names the right one whichever typer is installed.
USAGE_ERROR: type[Exception] = next(
    base for base in typer.BadParameter.__mro__ if base.__name__ == "ClickException"
)


def main(argv: list[str] | None = None) -> int:
    """Entry point: one line per error, exit 2 for bad usage or configuration."""
    try:
        # Without standalone mode, click returns a command's `typer.Exit` code as the result.
        result = app(args=argv, standalone_mode=False)
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.Abort:
        return 130
    except USAGE_ERROR as exc:  # usage errors: one line, then the hint
        ctx = getattr(exc, "ctx", None)
        command = ctx.command_path if ctx else "actions-sync"
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        print(f"error: {message} (see `{command} --help`)", file=sys.stderr)
        return 2
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ActionsSyncError as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
