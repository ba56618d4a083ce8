"""Typed settings: the only place that reads the environment.

Every variable has the prefix `ACTIONS_SYNC_`, except the standard names that other tools
share: `KAFKA_BOOTSTRAP_SERVERS`, `SCHEMA_REGISTRY_URL`, `DATABASE_URL`. Settings are
frozen and validated at start-up: a bad value fails before the first message with one
line naming the variable (`ConfigError`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import make_url

from actions_sync.errors import ConfigError

__all__ = ["PREFIX", "Settings", "env_name", "load_settings"]

PREFIX = "ACTIONS_SYNC_"
# The people agent's batch by store (bench/RESULTS.md, issue 15, memory): SQLite writes
# faster in larger transactions (a 1.5M-person sync: 54 s at 20,000, 65 s at 5,000), while
# PostgreSQL writes as fast at 5,000 (46 s either way) and the worker then holds 246 MB at
# peak instead of 347 MB (its buffers hold two batches of fetched and decoded changes).
PEOPLE_BATCH = {"sqlite": 20_000, "postgresql": 5_000}


def _standard(name: str) -> AliasChoices:
    """Accept the shared variable name and its prefixed twin."""
    return AliasChoices(name, PREFIX + name)


class Settings(BaseSettings):
    """Everything a worker, the CLI or the embedded runtime can be told."""

    model_config = SettingsConfigDict(
        env_prefix=PREFIX, frozen=True, extra="ignore", populate_by_name=True
    )

    # Kafka. None means "no broker given": `demo` and `up` start the embedded one.
    kafka_bootstrap_servers: str | None = Field(
        None,
        validation_alias=_standard("KAFKA_BOOTSTRAP_SERVERS"),
        description="host:port[,host:port] of a Kafka cluster",
    )
    schema_registry_url: str | None = Field(
        None,
        validation_alias=_standard("SCHEMA_REGISTRY_URL"),
        description="Confluent-compatible schema registry base URL",
    )
    database_url: str = Field(
        "sqlite:///var/actions-sync.db",
        validation_alias=_standard("DATABASE_URL"),
        description="SQLAlchemy URL of the Actions store (sqlite:///FILE or postgresql+psycopg://…)",
    )
    partitions: int = Field(8, ge=1, le=1024, description="partitions of topics it creates")
    replication_factor: int = Field(1, ge=1, le=16, description="replication of topics it creates")
    group_prefix: str = Field("actions-sync", min_length=1, description="consumer group prefix")
    session_timeout_ms: int = Field(
        6000, ge=1000, description="consumer session timeout; low values make group joins fast"
    )

    fetch_max_wait_ms: int = Field(
        100,
        ge=1,
        le=10_000,
        description="longest a consumer's fetch waits for records; some"
        " brokers (Tansu) hold every fetch this long, so it bounds end-to-end latency",
    )

    # People agent (batches adapt: small when the topic is quiet, up to the size under load)
    people_batch_size: int | None = Field(
        None,
        ge=1,
        le=100_000,
        description="changes per store write (under load); unset: "
        f"{PEOPLE_BATCH['sqlite']} on SQLite, {PEOPLE_BATCH['postgresql']} on PostgreSQL",
    )

    # Activity router (SPEC S7/S8)
    activities_park_s: float = Field(
        3600.0,
        gt=0,
        le=30 * 86400,
        description="activity router: how long an activity waits"
        " for its person to reach the store before it is dead-lettered person_unknown",
    )
    activities_retry_s: float = Field(
        5.0,
        gt=0,
        le=3600,
        description="activity router: seconds between retries of parked activities",
    )

    # Admin HTTP API (SPEC S12)
    admin_token: SecretStr | None = Field(
        None, description="bearer token of the admin HTTP API (unset: the API refuses to start)"
    )
    admin_host: str = Field("127.0.0.1", description="address the admin HTTP API binds")
    admin_port: int = Field(8400, ge=0, le=65535, description="port of the admin HTTP API")

    # Observability
    metrics_host: str = Field("127.0.0.1", description="address the /metrics server binds")
    metrics_port: int = Field(
        0, ge=0, le=65535, description="/metrics port of a worker (0 = any free port, logged)"
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["console", "json"] = "console"

    # Remote APIs (the sandboxes' defaults; production points these at the vendors)
    marketo_url: str | None = Field(None, description="Marketo instance base URL")
    marketo_client_id: str = "actions-sync"
    marketo_client_secret: SecretStr = SecretStr("sandbox-secret")
    # Each process that calls Marketo has a share of the instance's limits (100 calls per
    # rolling 20 s, 10 in flight): by default marketo-sink 30 + marketo-source 30 +
    # send-check 40 = 100, and 3 + 3 + 4 = 10 in flight.
    marketo_calls_per_window: int = Field(
        30,
        ge=1,
        le=100,
        description="Marketo calls per rolling 20 s of this process (the "
        "instance's limit, 100, is shared by every process that calls it)",
    )
    marketo_max_in_flight: int = Field(
        3,
        ge=1,
        le=10,
        description="Marketo calls in flight of this process (the "
        "instance's limit, 10, is shared by every process that calls it)",
    )
    # Marketo source (people sync, SPEC S6)
    marketo_since: datetime = Field(
        datetime(2006, 1, 1, tzinfo=UTC),
        description="initial sync: extract leads created from this date (the instance's start)",
    )
    marketo_until: datetime | None = Field(
        None, description="initial sync: extract leads created up to this date (default: now)"
    )
    marketo_poll_interval_s: float = Field(
        15.0, gt=0, le=3600, description="lead changes: wait between polls once caught up"
    )
    marketo_export_chunk_bytes: int = Field(
        8 * 1024 * 1024,
        ge=4096,
        le=256 * 1024 * 1024,
        description="bulk export file: bytes per ranged download (and per checkpoint)",
    )
    marketo_quota_probe_s: float = Field(
        300.0, gt=0, le=86400, description="daily quota used up (607): probe again this often"
    )
    salesforce_url: str | None = Field(None, description="Salesforce login base URL")
    salesforce_client_id: str = "actions-sync"
    salesforce_client_secret: SecretStr = SecretStr("sandbox-secret")
    # Sinks (connectors/runner.py, Marketo and Salesforce sinks, SPEC S7/S8)
    sink_batch_within_s: float = Field(
        0.5, gt=0, le=60, description="sinks: longest wait to fill a batch (bounds latency)"
    )
    sink_record_attempts: int = Field(
        10,
        ge=1,
        le=1000,
        description="sinks: attempts of a record the API asks to retry "
        "(e.g. UNABLE_TO_LOCK_ROW) before it is dead-lettered",
    )
    api_timeout_s: float = Field(30.0, gt=0, le=600, description="sinks: HTTP timeout per call")
    marketo_sink_batch_size: int = Field(
        1500, ge=1, le=30_000, description="Marketo sink: records per batch (300 per call)"
    )
    marketo_settle_s: float = Field(
        60.0,
        ge=0,
        le=3600,
        description="Marketo sink: how long an unanswered write may "
        "still land; pending ledger entries are reconciled only after it",
    )
    marketo_clock_skew_s: float = Field(
        30.0,
        ge=0,
        le=3600,
        description="Marketo sink: reconciliation reads activities "
        "from this long before the write (clock difference with Marketo)",
    )
    marketo_ledger_retention_days: float = Field(
        30.0,
        gt=0,
        le=3650,
        description="Marketo sink: days an accepted ledger entry is "
        "kept; a record redelivered later (a replay from older offsets) is sent again",
    )
    salesforce_sink_batch_size: int = Field(
        1000, ge=1, le=20_000, description="Salesforce sink: records per batch (200 per call)"
    )
    salesforce_max_in_flight: int = Field(5, ge=1, le=25, description="Salesforce calls in flight")
    salesforce_api_version: str = Field(
        "v62.0", pattern=r"^v\d+\.\d$", description="Salesforce REST API version"
    )
    salesforce_budget_reserve: int = Field(
        1000,
        ge=0,
        description="Salesforce sink: daily API calls left to other integrations; "
        "the sink pauses when only this many remain",
    )
    salesforce_quota_pause_s: float = Field(
        900.0,
        gt=0,
        le=86400,
        description="Salesforce daily budget spent: seconds between "
        "probes until calls leave the rolling 24 h",
    )
    # Unsubscribe agent (streams/unsubscribes.py, SPEC S9)
    unsubscribes_retry_s: float = Field(
        5.0,
        gt=0,
        le=3600,
        description="unsubscribe agent: seconds between catch-ups (what "
        "could not sync yet: sync off, person or Salesforce id missing)",
    )

    # Stream workers (streams/pipeline.py): a batch failing for another reason than an outage
    batch_attempts: int = Field(
        5,
        ge=1,
        le=100,
        description="stream workers: attempts of a batch that fails for "
        "another reason than a store or broker outage before it is split to the records "
        "that fail, which are dead-lettered",
    )

    # People and activity workers: versions from the future (streams/rules/contract.py)
    future_skew_s: float = Field(
        86_400.0,
        gt=0,
        le=365 * 86400,
        description="people and activity workers: a change"
        " or activity dated more than this after the worker reads it is dead-lettered (a"
        " version from the future would outrank every later real change)",
    )

    # Send check (streams/send_check.py, SPEC S10): its own share of Marketo's limits
    send_check_deadline_s: float = Field(
        2.0,
        gt=0,
        le=600,
        description="send check: a check not answered by Marketo this long "
        "after its requested_at is blocked (CHECK_UNAVAILABLE)",
    )
    send_check_window_s: float = Field(
        0.05,
        gt=0,
        le=5,
        description="send check: longest wait to gather checks into one "
        "lookup (unless the pace of calls asks for longer)",
    )
    send_check_calls_per_window: int = Field(
        40,
        ge=1,
        le=100,
        description="send check: its share of Marketo's 100 calls per rolling 20 s, spent evenly",
    )
    send_check_max_in_flight: int = Field(
        4, ge=1, le=10, description="send check: its share of Marketo's 10 calls in flight"
    )
    send_check_batch_size: int = Field(
        1500, ge=1, le=30_000, description="send check: checks per batch (300 emails a call)"
    )

    # Salesforce source (opt-outs, SPEC S9)
    salesforce_poll_interval_s: float = Field(
        30.0, gt=0, le=3600, description="Salesforce source: wait between polls"
    )
    salesforce_lookback_s: float = Field(
        600.0,
        ge=0,
        le=86400,
        description="Salesforce source: each poll re-reads this much "
        "before its cursor (rows of long transactions become visible late)",
    )
    # Reminder agent (streams/reminders.py, SPEC S11)
    reminders_retry_s: float = Field(
        5.0,
        gt=0,
        le=3600,
        description="reminder agent: seconds between catch-ups (tasks "
        "stored while the sync was off)",
    )
    # Admin page (actions_sync/admin/page.py, SPEC S12)
    admin_metrics_file: Path | None = Field(
        None,
        description="JSON file of worker -> /metrics URL the admin page samples every"
        " 15 s for its charts (re-read each time; `up` writes one)",
    )

    # Consuming workers' progress read from the broker (actions_sync/progress.py)
    lag_interval_s: float = Field(
        15.0,
        gt=0,
        le=3600,
        description="consuming workers: seconds between reads of the "
        "group's committed and end offsets from the broker (actions_sync_broker_lag)",
    )
    health_stall_s: float = Field(
        300.0,
        gt=0,
        le=7 * 86400,
        description="consuming workers: /healthz answers 503 once "
        "records of a partition the worker owns have waited this long with its committed "
        "offset not moving",
    )

    # The store's password apart from DATABASE_URL: one value can then be given raw to
    # PostgreSQL (POSTGRES_PASSWORD) and to the workers, whatever characters it holds.
    database_password: SecretStr | None = Field(
        None,
        description="password of the Actions store, merged into DATABASE_URL (escaped: "
        "@ : / ? # % may occur); replaces a password in the URL",
    )

    # Sinks: calls of a record that failed as a whole (connectors/runner.py)
    sink_call_attempts: int = Field(
        0,
        ge=0,
        le=100_000,
        description="sinks: deliveries of a record whose API call failed "
        "as a whole (5xx, timeouts) before it is dead-lettered; 0: retried until the API is back",
    )
    # Activity router: its own batch (it ran on the people agent's)
    router_batch_size: int | None = Field(
        None,
        ge=1,
        le=100_000,
        description="activity router: activities per batch, at most "
        "(unset: ACTIONS_SYNC_PEOPLE_BATCH_SIZE)",
    )
    salesforce_deleted_every_s: float = Field(
        300.0,
        gt=0,
        le=86400,
        description="Salesforce source: least wait between two reads "
        "of a deletion feed (`sobjects/Task/deleted`; Salesforce advises 5 minutes)",
    )

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _hosts_have_ports(cls, value: str | None) -> str | None:
        if value is None:
            return None
        hosts = [h.strip() for h in value.split(",") if h.strip()]
        if not hosts or any(":" not in h or not h.rsplit(":", 1)[1].isdigit() for h in hosts):
            raise ValueError("expected host:port[,host:port]")
        return ",".join(hosts)

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if not value.startswith(("sqlite:", "postgresql")):
            raise ValueError("expected sqlite:///FILE or postgresql+psycopg://USER@HOST/DB")
        return value

    @model_validator(mode="after")
    def _merge_database_password(self) -> Settings:
        if self.database_password is None:
            return self
        url = make_url(self.database_url)
        if url.get_backend_name() == "sqlite":
            raise ValueError("ACTIONS_SYNC_DATABASE_PASSWORD is for a PostgreSQL DATABASE_URL")
        url = url.set(password=self.database_password.get_secret_value())
        # Frozen: set once, here, while the settings are being made.
        object.__setattr__(self, "database_url", url.render_as_string(hide_password=False))
        return self

    @property
    def people_batch(self) -> int:
        """The people agent's batch: `people_batch_size`, or the store's default."""
        if self.people_batch_size is not None:
            return self.people_batch_size
        return PEOPLE_BATCH.get(
            make_url(self.database_url).get_backend_name(), PEOPLE_BATCH["postgresql"]
        )

    @property
    def sqlite_path(self) -> Path | None:
        """The database file when the store is SQLite on disk."""
        prefix = "sqlite:///"
        if self.database_url.startswith(prefix) and ":memory:" not in self.database_url:
            return Path(self.database_url[len(prefix) :])
        return None


def env_name(field: str) -> str:
    """The environment variable that sets `field` (what error messages name)."""
    alias = Settings.model_fields[field].validation_alias
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    return PREFIX + field.upper()


@cache
def load_settings() -> Settings:
    """Read and validate the environment once; raise `ConfigError` naming the variable."""
    try:
        return Settings()
    except ValidationError as exc:
        err = exc.errors()[0]
        if not err["loc"]:  # a check of several settings: its input is all of them, secrets too
            raise ConfigError(str(err["msg"]).removeprefix("Value error, ")) from exc
        field = str(err["loc"][0])
        name = env_name(field) if field in Settings.model_fields else field
        raise ConfigError(f"{name}={err.get('input')!r}: {err['msg']}") from exc
