"""`actions-sync settings show|set`: read and change the admin settings (SPEC S12).

A change is validated, written with its audit row in one store transaction, then the
full snapshot is published to `actions.settings` (when a broker is configured) so that
running agents pick it up within seconds.
"""

from __future__ import annotations

import getpass
import json
import sys
from typing import Any

from confluent_kafka import KafkaException
from rich.console import Console
from rich.table import Table

from actions_sync.admin.live import load
from actions_sync.admin.model import parse_value
from actions_sync.admin.snapshot import Versioned, ensure_topic, publish
from actions_sync.errors import Retriable
from actions_sync.settings import Settings
from actions_sync.store import Store
from actions_sync.store import admin_settings as stored

__all__ = ["change", "cli_user", "set_value", "show"]


def cli_user() -> str:
    """Who a change made from this machine's CLI is audited as."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry (containers)
        return "cli:unknown"


def change(settings: Settings, store: Store, key: str, value: Any, who: str) -> stored.AuditEntry:
    """Validate, store + audit, publish. Shared by the CLI and the HTTP API."""
    current = load(store.engine).settings
    validated = current.with_value(key, value)  # ConfigError names what is accepted
    entry = stored.write(
        store.engine,
        key,
        validated.model_dump(mode="json")[key],
        who,
        default=current.model_dump(mode="json")[key],
    )
    if settings.kafka_bootstrap_servers:
        try:
            ensure_topic(settings.kafka_bootstrap_servers, settings.replication_factor)
            publish(settings.kafka_bootstrap_servers, load(store.engine))
        except (Retriable, KafkaException) as exc:
            raise Retriable(
                f"{key} is stored and audited but its snapshot was not published"
                f" ({exc}); running agents re-read the store within 30 s"
            ) from exc
    return entry


def set_value(settings: Settings, key: str, value: str) -> None:
    """`actions-sync settings set KEY VALUE`."""
    parsed = parse_value(key, value)
    with Store(settings.database_url) as store:
        store.migrate()
        entry = change(settings, store, key, parsed, cli_user())
    print(f"{key}: {json.dumps(entry.old_value)} -> {json.dumps(entry.new_value)}")
    if not settings.kafka_bootstrap_servers:  # stored, but no snapshot went out: say so
        print(
            f"note: {key} is stored and audited but not published (KAFKA_BOOTSTRAP_SERVERS"
            " is not set); running agents apply it when they next re-read the store"
            " (within 30 s)",
            file=sys.stderr,
        )


def _table(snapshot: Versioned, rows: dict[str, Any]) -> Table:
    table = Table(
        "setting",
        "value",
        "changed",
        title=f"admin settings (revision {max(snapshot.revision, 0)})",
    )
    for key, value in snapshot.settings.model_dump(mode="json").items():
        table.add_row(key, json.dumps(value), rows.get(key, "default"))
    return table


def show(settings: Settings) -> None:
    """`actions-sync settings show`: every setting, its value and who changed it last."""
    with Store(settings.database_url) as store:
        store.migrate()
        snapshot = load(store.engine)
        last = {
            e.key: f"{e.changed_at:%Y-%m-%d %H:%M:%S}Z by {e.changed_by}"
            for e in reversed(stored.audit_log(store.engine, limit=1000))
        }
    Console(width=160).print(_table(snapshot, last))
