"""The Actions store: tables, migrations and the Store API."""

from actions_sync.store import admin_settings, ledger, parked  # noqa: F401  (their tables)
from actions_sync.store.store import PeopleWrite, Store
from actions_sync.store.tables import PERSON_FIELDS, checkpoints, metadata, persons

__all__ = ["PERSON_FIELDS", "PeopleWrite", "Store", "checkpoints", "metadata", "persons"]
