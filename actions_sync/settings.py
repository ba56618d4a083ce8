"""Typed settings: the only place that reads the environment.

Every variable has the prefix `ACTIONS_SYNC_`, except the standard names that other tools
share: `KAFKA_BOOTSTRAP_SERVERS`, `SCHEMA_REGISTRY_URL`, `DATABASE_URL`. Settings are
frozen and validated at start-up: a bad value fails before the first message with one
line naming the variable (`ConfigError`).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from actions_sync.errors import ConfigError

__all__ = ["PREFIX", "Settings", "env_name", "load_settings"]

PREFIX = "ACTIONS_SYNC_"


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
        None, validation_alias=_standard("KAFKA_BOOTSTRAP_SERVERS"),
        description="host:port[,host:port] of a Kafka cluster",
    )
    schema_registry_url: str | None = Field(
        None, validation_alias=_standard("SCHEMA_REGISTRY_URL"),
        description="Confluent-compatible schema registry base URL",
    )
    database_url: str = Field(
        "sqlite:///var/actions-sync.db", validation_alias=_standard("DATABASE_URL"),
        description="SQLAlchemy URL of the Actions store (sqlite:///FILE or postgresql+psycopg://…)",
    )
    partitions: int = Field(8, ge=1, le=1024, description="partitions of topics it creates")
    replication_factor: int = Field(1, ge=1, le=16, description="replication of topics it creates")
    group_prefix: str = Field("actions-sync", min_length=1, description="consumer group prefix")
    session_timeout_ms: int = Field(
        6000, ge=1000, description="consumer session timeout; low values make group joins fast"
    )

    # People agent
    people_batch_size: int = Field(5000, ge=1, le=100_000, description="changes per store write")
    people_batch_within_s: float = Field(
        0.2, gt=0, le=60, description="longest wait to fill a batch (bounds latency)"
    )

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
    marketo_calls_per_window: int = Field(
        50, ge=1, le=100, description="Marketo calls per rolling 20 s (limit 100; best practice 50)"
    )
    marketo_max_in_flight: int = Field(
        5, ge=1, le=10, description="Marketo calls in flight (limit 10; best practice 5)"
    )
    salesforce_url: str | None = Field(None, description="Salesforce login base URL")
    salesforce_client_id: str = "actions-sync"
    salesforce_client_secret: SecretStr = SecretStr("sandbox-secret")

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

    @property
    def sqlite_path(self) -> Path | None:
        """The database file when the store is SQLite on disk."""
        prefix = "sqlite:///"
        if self.database_url.startswith(prefix) and ":memory:" not in self.database_url:
            return Path(self.database_url[len(prefix):])
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
        field = str(err["loc"][0]) if err["loc"] else "?"
        name = env_name(field) if field in Settings.model_fields else field
        raise ConfigError(f"{name}={err.get('input')!r}: {err['msg']}") from exc
