"""The Store API: every read and write of the Actions store goes through here.

SQLite (WAL) by default, PostgreSQL by URL. Writes are batched: one transaction per batch,
upserts with `ON CONFLICT ... DO UPDATE ... WHERE` the stored version is older, so replays
and out-of-order changes are no-ops (one `executemany` on SQLite; on PostgreSQL the rows
are copied into a staging table and upserted by one statement). A person's version is
(`changed_at`, `log_position`): Marketo's times have one-second resolution, and of two
changes in one second the later in the partition's log is the newer (README, "Operating
it", says what producers guarantee for that).
"""

from __future__ import annotations

import ast
import fcntl
import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, func, make_url, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError, OperationalError

from actions_sync.errors import ConfigError, Retriable
from actions_sync.person_rows import (
    NO_POSITION,
    PERSON_FIELDS,
    PeopleCopy,
    PeopleParams,
    people_params,
    people_rows,
    sqlite_datetime,
)
from actions_sync.store.tables import checkpoints, persons

__all__ = [
    "NO_POSITION",
    "PeopleCopy",
    "PeopleParams",
    "PeopleWrite",
    "Store",
    "is_sqlite_url",
    "people_params",
    "people_rows",
]

MIGRATIONS = Path(__file__).parent / "migrations"


@cache
def _heads() -> frozenset[str]:
    """The newest revisions of the migration scripts, read as Alembic reads them (each
    script's `revision` and `down_revision`), without importing Alembic."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for script in (MIGRATIONS / "versions").glob("*.py"):
        for node in ast.parse(script.read_text()).body:
            value: ast.expr | None
            if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
                name, value = node.targets[0].id, node.value
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                name, value = node.target.id, node.value
            else:
                continue
            if name == "revision" and value is not None:
                revisions.add(ast.literal_eval(value))
            elif name == "down_revision" and value is not None:
                down = ast.literal_eval(value)
                parents.update([down] if isinstance(down, str) else down or ())
    return frozenset(revisions - parents)


MIGRATION_LOCK = 7_201_309  # pg_advisory_xact_lock key of actions-sync's migrations
PERSON_COLUMNS = (
    "marketo_id",
    *PERSON_FIELDS,
    "changed_at",
    "removed_at",
    "log_position",
    "synced_at",
)
# PostgreSQL: a batch of people is COPYed into per-connection temp tables (emptied at each
# commit), then upserted by one INSERT ... SELECT and removed by one UPDATE ... FROM; the
# write time is a parameter of those statements, so the COPY data (`PeopleCopy`) is whole
# before the write (made in the people worker's helper process).
PEOPLE_STAGE = "persons_stage"
REMOVALS_STAGE = "persons_removal_stage"
STAGED_COLUMNS = PERSON_COLUMNS[:-1]  # all but synced_at
REMOVAL_COLUMNS = ("marketo_id", *PERSON_FIELDS, "changed_at", "log_position")


@dataclass(frozen=True)
class PeopleWrite:
    """What one batch did: rows offered for upsert, and existing rows marked removed."""

    upserted: int
    removed: int


SQLITE_CACHE_KIB = 65_536  # page cache per connection, filled only as pages are read
SQLITE_WAL_CHECKPOINT_PAGES = 10_000  # ~40 MB of WAL before it is copied back


def _sqlite_pragmas(dbapi_connection: Any, _: Any) -> None:
    # WAL lets the Actions app read while the sync writes; NORMAL is durable in WAL mode
    # across application crashes (only an OS crash may lose the last transactions).
    # People arrive in no key order (ids and emails are spread over the whole table), so
    # a batch touches thousands of B-tree pages: with SQLite's defaults (2 MB cache, a
    # checkpoint every 1,000 pages) a large table is re-read and re-copied page by page
    # every batch, and an upsert cost 3x as much at 900k people as at 50k. These two
    # cut the write cost of a 900k-person load by ~30 % (bench/RESULTS.md).
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
    cursor.execute(f"PRAGMA wal_autocheckpoint={SQLITE_WAL_CHECKPOINT_PAGES}")
    cursor.close()


def is_sqlite_url(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


# A row upserted as removed keeps the first removal's time (as `_person_removal_sql`).
_PERSON_CONFLICT = (
    "ON CONFLICT (marketo_id) DO UPDATE SET "
    + ", ".join(
        f"{c} = excluded.{c}"
        if c != "removed_at"
        else "removed_at = CASE WHEN excluded.removed_at IS NULL THEN NULL"
        " ELSE COALESCE(persons.removed_at, excluded.removed_at) END"
        for c in PERSON_COLUMNS
        if c != "marketo_id"
    )
    + " WHERE (persons.changed_at, persons.log_position)"
    " < (excluded.changed_at, excluded.log_position)"
)


def _aware(value: Any) -> Any:
    """SQLite hands datetimes back naive; the store only ever holds UTC."""
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


class Store:
    """The Actions store at `url` (a SQLAlchemy URL)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = self._engine(url)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        self._mark = "?" if self.engine.dialect.paramstyle == "qmark" else "%s"  # driver's
        self._upsert_sql = self._person_upsert_sql()
        self._remove_sql = self._person_removal_sql()
        self._staged_upsert_sql = self._person_staged_upsert_sql()
        self._staged_removal_sql = self._person_staged_removal_sql()

    @staticmethod
    def _engine(url: str) -> Engine:
        if url.startswith("sqlite:///") and ":memory:" not in url:
            Path(url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
        try:
            engine = create_engine(url, pool_pre_ping=True)
        except Exception as exc:  # bad driver names, malformed URLs
            raise ConfigError(f"DATABASE_URL={url!r}: {exc}") from exc
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _sqlite_pragmas)
        return engine

    def migrate(self) -> None:
        """Bring the schema to the newest migration (safe to call on every start).

        A store already at the newest revisions is left alone without loading Alembic:
        its import (with Mako and Pygments) is ~0.15 s of CPU, and every worker and
        most commands start by migrating."""
        if self._revisions() == _heads():
            return
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        try:
            with self._migration_lock(), self.engine.begin() as connection:
                if not self.is_sqlite:  # workers starting together: one migrates at a time
                    connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
                config.attributes["connection"] = connection
                # "heads": features add their tables on branches of their own from 0002
                command.upgrade(config, "heads")
        except OperationalError as exc:
            raise Retriable(f"store at {self.engine.url!r} unreachable: {exc.orig}") from exc

    def _revisions(self) -> frozenset[str]:
        """The revisions the store is at (none: not migrated yet, or unreachable)."""
        try:
            with self.engine.connect() as connection:
                rows = connection.exec_driver_sql("SELECT version_num FROM alembic_version")
                return frozenset(str(row[0]) for row in rows)
        except DBAPIError:
            return frozenset()

    @contextmanager
    def _migration_lock(self) -> Iterator[None]:
        """SQLite: an exclusive file lock beside the database, so that processes starting
        together do not race to create the same tables ("table ... already exists")."""
        path = self.engine.url.database
        if not self.is_sqlite or not path or path == ":memory:":
            yield
            return
        with open(f"{path}.migrate.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    # -- people ---------------------------------------------------------------------------

    def _person_upsert_sql(self) -> str:
        """The batch upsert as driver SQL (the same statement on SQLite and PostgreSQL).

        Why not a SQLAlchemy statement: its per-row parameter processing (dict rows,
        bind processors) was ~55 % of the people worker's time under load; positional
        tuples through `exec_driver_sql` cost a fraction (bench/RESULTS.md).
        """
        mark = self._mark
        return (
            f"INSERT INTO persons ({', '.join(PERSON_COLUMNS)})"
            f" VALUES ({', '.join([mark] * len(PERSON_COLUMNS))}) {_PERSON_CONFLICT}"
        )

    @staticmethod
    def _person_staged_upsert_sql() -> str:
        """PostgreSQL: the upsert of the rows COPYed into `PEOPLE_STAGE` (one statement a
        batch instead of one per row: the per-row statement overhead was most of
        PostgreSQL's time in a batch, bench/RESULTS.md), the write time its parameter.
        Only for batches with one row per person: a statement may not update a row twice."""
        columns = ", ".join(STAGED_COLUMNS)
        return (
            f"INSERT INTO persons ({columns}, synced_at) SELECT {columns}, %s"
            f" FROM {PEOPLE_STAGE} {_PERSON_CONFLICT}"
        )

    @staticmethod
    def _person_staged_removal_sql() -> str:
        """PostgreSQL: `_person_removal_sql` of the rows COPYed into `REMOVALS_STAGE`."""
        fields = ", ".join(f"{c} = s.{c}" for c in PERSON_FIELDS)
        return (
            f"UPDATE persons SET synced_at = %s, {fields},"
            " changed_at = s.changed_at, log_position = s.log_position,"
            " removed_at = COALESCE(persons.removed_at, s.changed_at)"
            f" FROM {REMOVALS_STAGE} s WHERE persons.marketo_id = s.marketo_id"
            " AND (persons.changed_at, persons.log_position) < (s.changed_at, s.log_position)"
        )

    @staticmethod
    def _copy_staged(
        conn: Any, stage: str, columns: Sequence[str], data: bytes, sql: str, synced: datetime
    ) -> int:
        """PostgreSQL: COPY `data` (COPY text, UTF-8) into the temp table `stage` and run
        `sql` over it with the write time, in the transaction of `conn`; the rows `sql`
        changed."""
        dbapi_error = conn.dialect.loaded_dbapi.Error
        cursor = conn.connection.driver_connection.cursor()  # psycopg 3's, for its COPY
        try:
            with cursor:
                if cursor.connection.info.encoding != "utf-8":  # the data's; once a session
                    cursor.execute("SET client_encoding TO 'UTF8'")
                # IF NOT EXISTS: a temp table lives as long as its connection (in the pool).
                cursor.execute(
                    f"CREATE TEMP TABLE IF NOT EXISTS {stage} ON COMMIT DELETE ROWS"
                    f" AS SELECT {', '.join(columns)} FROM persons WITH NO DATA"
                )
                with cursor.copy(f"COPY {stage} ({', '.join(columns)}) FROM STDIN") as copy:
                    copy.write(data)
                cursor.execute(sql, (synced,))
                return max(int(cursor.rowcount), 0)
        except dbapi_error as exc:
            # The driver's own error, raised past SQLAlchemy: wrapped as SQLAlchemy wraps
            # it on its own path, so that an outage (OperationalError) stays retriable and
            # a refused row keeps its class (DataError...), as without staging.
            raise DBAPIError.instance(sql, None, exc, dbapi_error) from exc

    def _person_removal_sql(self) -> str:
        """Mark stored people removed (driver SQL, as the upsert): the fields and version
        of the change, `removed_at` kept from the first removal."""
        mark = self._mark
        fields = ", ".join(f"{c} = {mark}" for c in PERSON_FIELDS)
        return (
            f"UPDATE persons SET synced_at = {mark}, {fields}, changed_at = {mark},"
            f" log_position = {mark}, removed_at = COALESCE(removed_at, {mark})"
            f" WHERE marketo_id = {mark} AND (changed_at, log_position) < ({mark}, {mark})"
        )

    def apply_people(
        self, upserts: Sequence[Mapping[str, Any]], removals: Sequence[Mapping[str, Any]]
    ) -> PeopleWrite:
        """Upsert present people and mark removed ones, in one transaction.

        Rows carry the contract's field names plus `changed_at`, and may carry
        `log_position` (the change's offset; `NO_POSITION` without) and, for an upsert,
        `removed_at` (a person stored as removed). A row only wins over a stored one with
        an older version, (`changed_at`, `log_position`); a removal only touches people
        already stored (someone never in Actions has nothing to leave).
        """
        return self.write_people(people_rows(upserts, removals, self.is_sqlite))

    def write_people(self, rows: PeopleParams | PeopleCopy) -> PeopleWrite:
        """`apply_people` of rows already made parameters or COPY data (`people_rows`, for
        example in a helper process: the worker then only adds the write time)."""
        now = datetime.now(UTC)
        try:
            with self.engine.begin() as conn:
                if isinstance(rows, PeopleCopy):
                    return self._write_people_copy(conn, rows, now)
                return self._write_people_params(conn, rows, now)
        except OperationalError as exc:
            raise Retriable(f"store write failed: {exc.orig}") from exc

    def _write_people_copy(self, conn: Any, rows: PeopleCopy, synced: datetime) -> PeopleWrite:
        if rows.upserted:
            self._copy_staged(
                conn, PEOPLE_STAGE, STAGED_COLUMNS, rows.upserts, self._staged_upsert_sql, synced
            )
        removed = 0
        if rows.removal_count:
            removed = self._copy_staged(
                conn,
                REMOVALS_STAGE,
                REMOVAL_COLUMNS,
                rows.removals,
                self._staged_removal_sql,
                synced,
            )
        return PeopleWrite(upserted=rows.upserted, removed=removed)

    def _write_people_params(self, conn: Any, params: PeopleParams, now: datetime) -> PeopleWrite:
        """One statement per row, in order (SQLite's `executemany` is that already)."""
        synced = sqlite_datetime(now) if self.is_sqlite else now
        if params.upserts:
            conn.exec_driver_sql(self._upsert_sql, [(*row, synced) for row in params.upserts])
        removed = 0
        if params.removals:
            result = conn.exec_driver_sql(
                self._remove_sql, [(synced, *row) for row in params.removals]
            )
            removed = max(result.rowcount, 0)  # summed over the rows (both drivers)
        return PeopleWrite(upserted=len(params.upserts), removed=removed)

    def person(self, marketo_id: int) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(persons).where(persons.c.marketo_id == marketo_id)).first()
        return {k: _aware(v) for k, v in row._mapping.items()} if row else None

    def people_by_id(self, marketo_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        """The stored rows (present or removed) of these people, in one query."""
        if not marketo_ids:
            return {}
        with self.engine.connect() as conn:
            rows = conn.execute(select(persons).where(persons.c.marketo_id.in_(set(marketo_ids))))
            return {row.marketo_id: {k: _aware(v) for k, v in row._mapping.items()} for row in rows}

    def iter_persons(self, batch: int = 10_000) -> Iterator[dict[str, Any]]:
        """Every stored person (present and removed), in Marketo ID order."""
        with self.engine.connect() as conn:
            result = conn.execution_options(yield_per=batch).execute(
                select(persons).order_by(persons.c.marketo_id)
            )
            for row in result:
                yield {k: _aware(v) for k, v in row._mapping.items()}

    def count_persons(self, present_only: bool = True) -> int:
        query = select(func.count()).select_from(persons)
        if present_only:
            query = query.where(persons.c.removed_at.is_(None))
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    # -- checkpoints --------------------------------------------------------------------

    def checkpoint(self, name: str) -> dict[str, Any] | None:
        """The saved position of source `name`, or None before its first save."""
        with self.engine.connect() as conn:
            value = conn.execute(
                select(checkpoints.c.value).where(checkpoints.c.name == name)
            ).scalar_one_or_none()
        return json.loads(value) if value is not None else None

    def checkpoint_age_s(self, name: str) -> float | None:
        """Seconds since source `name` last saved its position."""
        with self.engine.connect() as conn:
            at = conn.execute(
                select(checkpoints.c.updated_at).where(checkpoints.c.name == name)
            ).scalar_one_or_none()
        return (datetime.now(UTC) - _aware(at)).total_seconds() if at is not None else None

    def save_checkpoint(self, name: str, value: Mapping[str, Any]) -> None:
        """Durably record the position of source `name` (one row per source)."""
        insert = sqlite_insert if self.is_sqlite else pg_insert
        stmt = insert(checkpoints).values(
            name=name, value=json.dumps(value, default=str), updated_at=datetime.now(UTC)
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=[checkpoints.c.name],
            set_={"value": stmt.excluded.value, "updated_at": stmt.excluded.updated_at},
        )
        try:
            with self.engine.begin() as conn:
                conn.execute(stmt)
        except OperationalError as exc:
            raise Retriable(f"checkpoint write failed: {exc.orig}") from exc

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
