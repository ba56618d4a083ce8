"""`actions-sync explain person|activity ID`: why a person is (or is not) in Actions, and
what became of a sales activity, from what the topics and the store hold.

The "why" is the rules' verdict, computed by the rule functions themselves
(`streams.rules.people.qualifies`, `streams.rules.activities.route`), on the newest change
or the activity as the topic holds it, never restated here.

A person: the store row and its version (changed_at, log position, removed_at); the
newest change seen on `marketo.person.changes` for the key, with its position and
headers; its dead letters; its unsubscribe; its reminder tasks (with their Salesforce Task
ids). An activity: the record on `actions.sales.activities`; what the router wrote to the
outbound topics; dead letters on any of the three; the Marketo ledger entry; the parked
row, if the person was not known yet; the Salesforce Task id (asked of Salesforce when a
Salesforce URL is configured).

Reading a topic reads it whole (a key's records may sit anywhere in its partition): fine
for an operator's question, not for a loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Message
from rich.console import Console
from rich.table import Table
from sqlalchemy import select

from actions_sync.admin.live import load
from actions_sync.dead_letter_admin import describe
from actions_sync.errors import UndecodableRecord
from actions_sync.kafka import dlq_topic, read_topic
from actions_sync.serialization import Deserializer, RegistryClient
from actions_sync.settings import Settings
from actions_sync.store import Store
from actions_sync.store.ledger import Ledger
from actions_sync.store.parked import parked_activities
from actions_sync.store.reminder_tasks import reminder_tasks
from actions_sync.store.unsubscribes import unsubscribes
from actions_sync.topics import (
    OUTBOUND_MARKETO_ACTIVITIES,
    OUTBOUND_SALESFORCE_TASKS,
    PERSON_CHANGES,
    SALES_ACTIVITIES,
)
from streams.rules import activities as activity_rules
from streams.rules.people import is_owned, qualifies

__all__ = ["explain_activity", "explain_person", "render"]

Found = dict[str, Any]


class _Topics:
    """Decoded reads of the project's topics (and their DLQs), by a predicate."""

    def __init__(self, settings: Settings) -> None:
        if not settings.kafka_bootstrap_servers or not settings.schema_registry_url:
            from actions_sync.errors import ConfigError

            raise ConfigError(
                "explain reads the topics: set KAFKA_BOOTSTRAP_SERVERS and SCHEMA_REGISTRY_URL"
            )
        self.bootstrap = settings.kafka_bootstrap_servers
        self.registry = RegistryClient(settings.schema_registry_url)

    def records(
        self,
        topic: str,
        record: str,
        wanted: Callable[[Message, Found | None], bool],
    ) -> list[tuple[Message, Found | None]]:
        """(message, decoded value or None when undecodable) of `topic` that `wanted` takes."""
        decode = Deserializer(self.registry, record)
        out = []
        for msg in read_topic(self.bootstrap, topic, idle_s=0.5):
            try:
                value: Found | None = decode(msg.value()) if msg.value() else None
            except UndecodableRecord:
                value = None
            if wanted(msg, value):
                out.append((msg, value))
        return out

    def close(self) -> None:
        self.registry.close()


def _position(msg: Message) -> Found:
    raw: Any = msg.headers() or []
    _, millis = msg.timestamp()
    return {
        "topic": msg.topic(),
        "partition": msg.partition(),
        "offset": msg.offset(),
        "published_at": datetime.fromtimestamp(millis / 1000, UTC).isoformat(),
        "headers": {k: (v.decode(errors="replace") if v else "") for k, v in raw},
    }


def _answer(found: Found) -> Found:
    return {k: _jsonable(v) for k, v in found.items()}


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


# -- a person ---------------------------------------------------------------------------------


def explain_person(settings: Settings, marketo_id: int) -> Found | None:
    """What the topics and the store say about Marketo ID `marketo_id`; None: nothing."""
    key = str(marketo_id).encode()
    topics = _Topics(settings)
    try:
        changes = topics.records(
            PERSON_CHANGES, "PersonChange", lambda msg, value: msg.key() == key
        )
        letters = [
            describe(msg)
            for msg in read_topic(topics.bootstrap, dlq_topic(PERSON_CHANGES), idle_s=0.5)
            if msg.key() == key
        ]
    finally:
        topics.close()
    with Store(settings.database_url) as store, store.engine.connect() as conn:
        row = store.person(marketo_id)
        unsubscribe = (
            conn.execute(select(unsubscribes).where(unsubscribes.c.marketo_id == marketo_id))
            .mappings()
            .first()
        )
        tasks = (
            conn.execute(
                select(
                    reminder_tasks.c.task_id,
                    reminder_tasks.c.subject,
                    reminder_tasks.c.status,
                    reminder_tasks.c.deleted,
                    reminder_tasks.c.sfdc_task_id,
                    reminder_tasks.c.unpushed,
                ).where(reminder_tasks.c.marketo_id == marketo_id)
            )
            .mappings()
            .all()
        )
    decoded = [(msg, value) for msg, value in changes if value is not None]
    if row is None and not changes and not letters:
        return None
    newest = max(decoded, key=lambda mv: (mv[1]["changed_at"], mv[0].offset()), default=None)
    return _answer(
        {
            "marketo_id": marketo_id,
            "verdict": _person_verdict(row, newest[1] if newest else None, letters),
            "store": row,
            "newest_change": None
            if newest is None
            else {**_position(newest[0]), "change": newest[1]},
            "changes_seen": len(changes),
            "dead_letters": letters,
            "unsubscribe": dict(unsubscribe) if unsubscribe else None,
            "reminder_tasks": [dict(t) for t in tasks],
            "salesforce_task_ids": [t["sfdc_task_id"] for t in tasks if t["sfdc_task_id"]],
        }
    )


def _person_verdict(row: Found | None, newest: Found | None, letters: list[Found]) -> str:
    """The rules' reading of the newest change, against what the store holds."""
    if newest is None:
        if letters:
            last = letters[-1]
            return (
                f"not in Actions: every change of this person was dead-lettered "
                f"({last.get('error.class', '?')}: {last.get('error.message', '')})"
            )
        return "in the store, but no change of it is on the topic any more (retention)"
    if qualifies(newest):
        why = "its newest change qualifies: sales-owned (a Lead or Contact owner), not deleted"
        if row is None or row["removed_at"] is not None:
            return f"not in Actions yet: {why}; the people agent has not applied it (lag?)"
        return f"in Actions: {why}"
    why = (
        "its newest change deletes it in Marketo"
        if newest.get("deleted")
        else "its newest change has no Lead or Contact owner: only sales-owned people sync (S2)"
        if not is_owned(newest)
        else "its newest change does not qualify"
    )
    if row is not None and row["removed_at"] is None:
        return f"in Actions, but {why}: the people agent has not applied it (lag?)"
    if row is not None:
        return f"removed from Actions at {row['removed_at']:%Y-%m-%d %H:%M:%S}Z: {why}"
    return f"not in Actions: {why}"


# -- an activity ------------------------------------------------------------------------------


def explain_activity(settings: Settings, activity_id: str) -> Found | None:
    """What the topics and the store say about sales activity `activity_id`; None: nothing."""
    topics = _Topics(settings)

    def ours(field: str) -> Callable[[Message, Found | None], bool]:
        return lambda _msg, value: value is not None and str(value.get(field)) == activity_id

    try:
        published = topics.records(SALES_ACTIVITIES, "SalesActivity", ours("activity_id"))
        marketo = topics.records(
            OUTBOUND_MARKETO_ACTIVITIES, "MarketoActivityOut", ours("activity_id")
        )
        tasks = topics.records(OUTBOUND_SALESFORCE_TASKS, "SalesforceTaskOut", ours("external_id"))
        letters = [
            {**describe(msg), "topic": topic}
            for topic, record, field in (
                (SALES_ACTIVITIES, "SalesActivity", "activity_id"),
                (OUTBOUND_MARKETO_ACTIVITIES, "MarketoActivityOut", "activity_id"),
                (OUTBOUND_SALESFORCE_TASKS, "SalesforceTaskOut", "external_id"),
            )
            for msg, _ in topics.records(dlq_topic(topic), record, ours(field))
        ]
    finally:
        topics.close()
    with Store(settings.database_url) as store, store.engine.connect() as conn:
        ledger = Ledger(store.engine).entries([activity_id]).get(activity_id)
        parked = (
            conn.execute(
                select(
                    parked_activities.c.parked_at,
                    parked_activities.c.next_try_at,
                    parked_activities.c.attempts,
                ).where(parked_activities.c.activity_id == activity_id)
            )
            .mappings()
            .first()
        )
        activity = published[-1][1] if published else None
        person = store.person(int(activity["marketo_id"])) if activity else None
        admin = load(store.engine).settings
    if activity is None and not marketo and not tasks and not letters and ledger is None:
        return None
    return _answer(
        {
            "activity_id": activity_id,
            "verdict": _activity_verdict(activity, person, admin, letters),
            "published": None
            if not published
            else {**_position(published[-1][0]), "activity": activity},
            "person_in_store": None
            if person is None
            else {
                k: person.get(k)
                for k in (
                    "marketo_id",
                    "sfdc_lead_id",
                    "sfdc_contact_id",
                    "sfdc_account_id",
                    "sfdc_opportunity_id",
                    "removed_at",
                )
            },
            "outbound_marketo": [{**_position(m), "record": v} for m, v in marketo],
            "outbound_salesforce": [{**_position(m), "record": v} for m, v in tasks],
            "dead_letters": letters,
            "marketo_ledger": None
            if ledger is None
            else {
                "state": ledger.state,
                "lead_id": ledger.lead_id,
                "type_id": ledger.type_id,
                "sent_at": ledger.sent_at,
            },
            "parked": dict(parked) if parked else None,
            "salesforce_task_ids": _salesforce_task_ids(settings, activity_id) if tasks else [],
        }
    )


def _activity_verdict(
    activity: Found | None, person: Found | None, admin: Any, letters: list[Found]
) -> str:
    if activity is None:
        return "not on actions.sales.activities (retention, or never published there)"
    if person is None:
        return (
            "its person is not in the Actions store: the router parks it, then dead-"
            "letters it (person_unknown)"
        )
    try:
        routed = activity_rules.route(activity, person, admin)
    except activity_rules.PersonNotSynced as exc:
        return f"not delivered: {exc}"
    where = "Marketo and Salesforce" if routed.salesforce is not None else "Marketo only"
    why = f" (no Task: {routed.not_logged})" if routed.not_logged else ""
    failed = f"; {len(letters)} dead letter(s), see below" if letters else ""
    return f"routed to {where}{why} by the current settings{failed}"


def _salesforce_task_ids(settings: Settings, activity_id: str) -> list[str] | str:
    """The Task ids Salesforce holds for the activity (its external id), or why unknown."""
    if not settings.salesforce_url:
        return "unknown: ACTIONS_SYNC_SALESFORCE_URL is not set"
    from connectors.salesforce.client import EXTERNAL_ID, soql_quote
    from connectors.salesforce.sink import client_from

    async def ask() -> list[str]:
        client = client_from(settings)
        try:
            rows = await client.query(
                f"SELECT Id FROM Task WHERE {EXTERNAL_ID} = {soql_quote(activity_id)}"
            )
            return [str(r["Id"]) for r in rows]
        finally:
            await client.aclose()

    try:
        return asyncio.run(ask())
    except Exception as exc:  # an operator's question: say why, do not fail the answer
        return f"unknown: Salesforce did not answer ({type(exc).__name__}: {exc})"


# -- one screen -------------------------------------------------------------------------------


def render(found: Found, console: Console) -> None:
    """The answer on one screen: the verdict first, then each source of it."""
    title = (
        f"person {found['marketo_id']}"
        if "marketo_id" in found
        else f"activity {found['activity_id']}"
    )
    console.print(f"[bold]{title}[/]: {found['verdict']}")
    table = Table(show_header=False, show_lines=True)
    table.add_column("what", style="bold")
    table.add_column("found", overflow="fold")
    for name, value in found.items():
        if name in ("marketo_id", "activity_id", "verdict"):
            continue
        table.add_row(name.replace("_", " "), _cell(value))
    console.print(table)


def _cell(value: Any) -> str:
    if value is None or value == [] or value == {}:
        return "-"
    if isinstance(value, dict):
        return "\n".join(f"{k}: {_cell(v)}" for k, v in value.items())
    if isinstance(value, list):
        return "\n".join(_cell(v) for v in value)
    return str(value)
