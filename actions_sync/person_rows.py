"""A batch of person writes as the store takes them, made without the store.

The people worker's helper process (`streams.helper`) turns a batch of changes into the
store's rows: driver parameters (`people_params`, SQLite) or PostgreSQL's COPY text
(`people_copy`). It imports this module and never `actions_sync.store`, whose SQLAlchemy,
Alembic and psycopg would be ~10 MB of RSS in every helper it never runs (bench/RESULTS.md,
issue 15, memory); `make lint` checks it (pyproject: tool.importlinter).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any, NamedTuple

from actions_sync.copy_text import copy_line, copy_text, timestamp

__all__ = [
    "NO_POSITION",
    "PERSON_FIELDS",
    "PeopleCopy",
    "PeopleParams",
    "people_copy",
    "people_params",
    "people_rows",
    "sqlite_datetime",
]

# The 13 synced fields of SPEC S3 (marketo_id is the identity) and the two owner ids
# that decide qualification (S2), under the producer contract's names.
PERSON_FIELDS = (
    "first_name",
    "last_name",
    "sfdc_contact_id",
    "sfdc_lead_id",
    "sfdc_account_id",
    "sfdc_opportunity_id",
    "company",
    "title",
    "email",
    "phone",
    "linkedin_url",
    "source",
    "sfdc_lead_owner_id",
    "sfdc_contact_owner_id",
)
NO_POSITION = -1  # the `log_position` of a row given without one (older than any offset)


def _utc(value: datetime) -> datetime:
    """An aware datetime in UTC (naive ones are UTC already: the store holds only UTC)."""
    return value if value.tzinfo is None or value.tzinfo is UTC else value.astimezone(UTC)


def sqlite_datetime(value: datetime) -> str:
    """SQLAlchemy's SQLite DATETIME text: "%04d-%02d-%02d %02d:%02d:%02d.%06d" (strftime's
    %Y drops the zeros of years < 1000 on glibc, and is slower)."""
    return _utc(value).isoformat(" ", "microseconds")[:26]


class PeopleParams(NamedTuple):
    """A batch of person writes as driver parameters, all but the write time (plain
    tuples: cheap to pickle from a helper process and to bind)."""

    upserts: list[tuple[Any, ...]]  # PERSON_COLUMNS but synced_at
    removals: list[tuple[Any, ...]]  # `_person_removal_sql`'s parameters but synced_at


class PeopleCopy(NamedTuple):
    """PostgreSQL: a batch of person writes (one row per person) as COPY text data for
    the staging tables (`STAGED_COLUMNS`, `REMOVAL_COLUMNS`): one bytes object each,
    cheap to pickle from a helper process, and written by the driver as it is."""

    upserts: bytes
    upserted: int
    removals: bytes
    removal_count: int


def people_params(
    upserts: Sequence[Mapping[str, Any]], removals: Sequence[Mapping[str, Any]], sqlite: bool
) -> PeopleParams:
    """`Store.apply_people`'s rows as parameters. On SQLite, datetimes are written as
    SQLAlchemy's DateTime stores them (UTC, "YYYY-MM-DD HH:MM:SS.ffffff"), so that the
    version comparison, which SQLite makes on the text, and every reader agree."""
    when = sqlite_datetime if sqlite else _utc
    get_fields = itemgetter(*PERSON_FIELDS)
    upsert_rows = [
        (
            row["marketo_id"],
            *get_fields(row),
            when(row["changed_at"]),
            when(removed) if (removed := row.get("removed_at")) is not None else None,
            row.get("log_position", NO_POSITION),
        )
        for row in upserts
    ]
    removal_rows = []
    for row in removals:
        version, position = when(row["changed_at"]), row.get("log_position", NO_POSITION)
        removal_rows.append(
            (*get_fields(row), version, position, version, row["marketo_id"], version, position)
        )
    return PeopleParams(upsert_rows, removal_rows)


def people_rows(
    upserts: Sequence[Mapping[str, Any]], removals: Sequence[Mapping[str, Any]], sqlite: bool
) -> PeopleParams | PeopleCopy:
    """What `Store.write_people` takes for these rows: on PostgreSQL, with one row per
    person (always, from `plan`), the COPY data of the staging tables; else parameters
    (`people_params`: SQLite, or rows to apply in order, one statement each)."""
    if sqlite or not _one_per_person(upserts) or not _one_per_person(removals):
        return people_params(upserts, removals, sqlite)
    return people_copy(upserts, removals)


def people_copy(
    upserts: Sequence[Mapping[str, Any]], removals: Sequence[Mapping[str, Any]]
) -> PeopleCopy:
    """PostgreSQL's COPY text of `Store.apply_people`'s rows (one per person)."""
    get_fields = itemgetter(*PERSON_FIELDS)
    upsert_lines = [
        copy_line(
            (
                str(row["marketo_id"]),
                *get_fields(row),
                timestamp(row["changed_at"]),
                timestamp(removed) if (removed := row.get("removed_at")) is not None else None,
                str(row.get("log_position", NO_POSITION)),
            )
        )
        for row in upserts
    ]
    removal_lines = [
        copy_line(
            (
                str(row["marketo_id"]),
                *get_fields(row),
                timestamp(row["changed_at"]),
                str(row.get("log_position", NO_POSITION)),
            )
        )
        for row in removals
    ]
    return PeopleCopy(
        copy_text(upsert_lines), len(upsert_lines), copy_text(removal_lines), len(removal_lines)
    )


def _one_per_person(rows: Sequence[Mapping[str, Any]]) -> bool:
    """No two rows of one person (a batch `plan` made never has: callers that pass
    several get the row-by-row statements, which apply them in order; one statement may
    not update a row twice)."""
    return len({row["marketo_id"] for row in rows}) == len(rows)
