"""The Actions store: tables, migrations and the Store API."""

from actions_sync.store import (  # noqa: F401  (their tables)
    admin_settings,
    ledger,
    parked,
    reminder_tasks,
    send_decisions,
    task_deliveries,
    unsubscribes,
)
from actions_sync.store.store import (
    NO_POSITION,
    PeopleCopy,
    PeopleParams,
    PeopleWrite,
    Store,
    is_sqlite_url,
    people_params,
    people_rows,
)
from actions_sync.store.tables import PERSON_FIELDS, checkpoints, metadata, persons

__all__ = [
    "NO_POSITION",
    "PERSON_FIELDS",
    "PeopleCopy",
    "PeopleParams",
    "PeopleWrite",
    "Store",
    "checkpoints",
    "is_sqlite_url",
    "metadata",
    "people_params",
    "people_rows",
    "persons",
]
