"""The Salesforce Tasks sink: `outbound.salesforce.tasks` -> Task upserts and deletes (S8).

Upserts go by the external id `ActionsSync_Id__c` (a record whose fields carry the Task
`Id`, a reminder task born in Salesforce, updates it by Id and sets the external id), 200
per sObject Collections call (`allOrNone=false`), so a redelivered record rewrites the
same Task: exactly-once effect (and the upsert last delivered for a Task is not sent
again, below). A DELETE finds the Task ids by external id (one SOQL query per 100) and
deletes them; a Task that is already gone counts as deleted. Each record's result
is classified by `classify.record_outcome`: retry (UNABLE_TO_LOCK_ROW ...) or
dead-letter with the reason (REQUIRED_FIELD_MISSING, FIELD_CUSTOM_VALIDATION_EXCEPTION ...).
Retries are the runner's (`connectors.runner`): the sinks' client makes one attempt per
call (`client_from`).

The write bound of S11 (`connectors.salesforce.payloads`): an upsert equal to the last
one delivered for its Task (the store's `task_deliveries`) is skipped, and a
`conditional` one is compared with the Task first (one query per 100 Tasks, within the
call's outcome): after a person's newer edit of the Task it is not written, and what
Salesforce holds already is not written again. A record left with nothing to write is
skipped (the runner's `skipped` outcome), never dead-lettered. The digest is kept once
the call answered, before the runner commits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Self

from sqlalchemy import Engine

from actions_sync.settings import Settings
from actions_sync.store import Store
from actions_sync.store.task_deliveries import digests
from actions_sync.store.task_deliveries import record as record_deliveries
from actions_sync.topics import OUTBOUND_SALESFORCE_TASKS
from connectors.http import ONE_ATTEMPT
from connectors.outcome import Kind, Outcome, accepted, chunks, fan_out, skipped
from connectors.runner import RunnerConfig
from connectors.salesforce.budget import Budget
from connectors.salesforce.classify import record_outcome
from connectors.salesforce.client import COLLECTION_MAX, EXTERNAL_ID, SalesforceClient, soql_quote
from connectors.salesforce.ids import to18
from connectors.salesforce.payloads import (
    COMPARED,
    conditional,
    delivered_before,
    digest,
    merged,
    newest,
    task_record,
)
from connectors.sink_worker import require, require_broker, run_sink

__all__ = ["WORKER", "SalesforceDestination", "TaskSink", "client_from", "run"]

WORKER = "salesforce-sink"
DELETE_QUERY_MAX = 100  # external ids per SOQL IN (...): keeps the URI well under 16 KB
Record = dict[str, Any]


class SalesforceDestination:
    """What the Salesforce sinks share (`Destination`s, see `connectors.runner`): the
    client, the store where they remember what they delivered, a credentials check at
    start, and closing both."""

    def __init__(
        self,
        client: SalesforceClient,
        engine: Engine,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        close: Callable[[], None] | None = None,
    ) -> None:
        self.client = client
        self.engine = engine
        self.now = now
        self._close = close

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        """On the configured org, remembering in the configured store (migrated)."""
        store = Store(settings.database_url)
        store.migrate()
        return cls(client_from(settings), store.engine, close=store.close)

    async def start(self) -> None:
        await self.client.auth.get()  # bad credentials fail before the first record

    async def aclose(self) -> None:
        await self.client.aclose()
        if self._close is not None:
            self._close()


class TaskSink(SalesforceDestination):
    """`Destination` of Task changes."""

    async def deliver(self, records: Sequence[Record]) -> list[Outcome]:
        out = [skipped()] * len(records)  # superseded by a newer change in the batch
        kept = newest(records)
        whole = merged(records, kept)
        last = await asyncio.to_thread(
            digests, self.engine, [records[i]["external_id"] for i in whole]
        )
        whole = {  # the newest change's digest: the same change, merged or not
            i: r
            for i, r in whole.items()
            if not delivered_before(records[i], last.get(r["external_id"].casefold()))
        }
        for i in whole:  # kept once its call answered (`_delivered`)
            whole[i]["digest"] = digest(records[i])
        upserts = [i for i in whole if "Id" not in whole[i]["fields"]]
        updates = [i for i in whole if "Id" in whole[i]["fields"]]
        deletes = [i for i in kept if records[i]["operation"] == "DELETE"]
        answers = await asyncio.gather(
            fan_out([whole[i] for i in upserts], COLLECTION_MAX, self._upsert),
            fan_out([whole[i] for i in updates], COLLECTION_MAX, self._update),
            fan_out([records[i] for i in deletes], DELETE_QUERY_MAX, self._delete),
        )
        for indexes, outcomes in zip((upserts, updates, deletes), answers, strict=True):
            for i, outcome in zip(indexes, outcomes, strict=True):
                out[i] = outcome
        return out

    async def _upsert(self, records: Sequence[Record]) -> list[Outcome]:
        held = await self._held(records, EXTERNAL_ID)
        return await self._write(
            records,
            [conditional(r, held.get(r["external_id"].casefold()), self.user) for r in records],
            lambda part: self.client.upsert("Task", EXTERNAL_ID, part),
        )

    async def _update(self, records: Sequence[Record]) -> list[Outcome]:
        """Tasks born in Salesforce have no external id until the sync's first write:
        that write goes by their Id and sets it (S11), later ones upsert by it."""
        held = await self._held(records, "Id")
        return await self._write(
            records,
            [conditional(r, held.get(to18(str(r["fields"]["Id"]))), self.user) for r in records],
            self.client.update,
        )

    async def _held(self, records: Sequence[Record], by: str) -> dict[str, dict[str, Any]]:
        """The Tasks as Salesforce holds them now, of the `conditional` records, by
        case-folded external id or 18-character Id (`by`)."""
        keys = sorted(
            {
                str(r["external_id"] if by == EXTERNAL_ID else r["fields"]["Id"])
                for r in records
                if r.get("conditional")
            }
        )
        rows = [
            row
            for part in chunks(keys, DELETE_QUERY_MAX)
            for row in await self.client.query(
                f"SELECT {', '.join(COMPARED)} FROM Task WHERE {by} IN "
                f"({', '.join(soql_quote(k) for k in part)})"
            )
        ]
        if by == EXTERNAL_ID:
            return {str(row[EXTERNAL_ID]).casefold(): row for row in rows if row.get(EXTERNAL_ID)}
        return {to18(str(row["Id"])): row for row in rows}

    async def _write(
        self,
        records: Sequence[Record],
        fields: Sequence[Mapping[str, Any]],
        call: Callable[[list[Record]], Awaitable[list[Record]]],
    ) -> list[Outcome]:
        """Send the records with fields left to write (one call), skip the others."""
        sent = [i for i, f in enumerate(fields) if f]
        items = [task_record({**records[i], "fields": fields[i]}) for i in sent]
        results = await call(items) if items else []
        out = [skipped()] * len(records)  # Salesforce holds it, or a person's newer edit
        for i, result in zip(sent, results, strict=True):
            out[i] = record_outcome(result)
        await self._delivered(records, out)
        return out

    async def _delivered(self, records: Sequence[Record], out: Sequence[Outcome]) -> None:
        """Keep the digests of what Salesforce now holds, before the runner commits: a
        sink killed before this sends the write once more, and that (conditional) upsert
        then finds its fields in Salesforce and writes nothing (a Task's creation, not
        conditional, is sent again: the same values, by external id)."""
        done = {
            r["external_id"]: r["digest"]
            for r, o in zip(records, out, strict=True)
            if o.kind in (Kind.ACCEPTED, Kind.SKIPPED)
        }
        await asyncio.to_thread(record_deliveries, self.engine, done, self.now())

    async def _delete(self, records: Sequence[Record]) -> list[Outcome]:
        keys = sorted({r["external_id"] for r in records})
        rows = await self.client.query(
            f"SELECT Id, {EXTERNAL_ID} FROM Task WHERE {EXTERNAL_ID} IN "
            f"({', '.join(soql_quote(k) for k in keys)})"
        )
        ids: dict[str, list[str]] = {}
        for row in rows:
            ids.setdefault(str(row[EXTERNAL_ID]).casefold(), []).append(str(row["Id"]))
        for r in records:  # a Task born in Salesforce may not carry the external id yet
            known = ids.setdefault(r["external_id"].casefold(), [])
            if (given := r["fields"].get("Id")) and given not in known:
                known.append(str(given))
        doomed = [i for r in records for i in ids.get(r["external_id"].casefold(), [])]
        results = [
            r for part in chunks(doomed, COLLECTION_MAX) for r in await self.client.delete(part)
        ]
        by_id = {
            task_id: record_outcome(result, "delete")
            for task_id, result in zip(doomed, results, strict=True)
        }
        return [
            _worst([by_id[i] for i in ids.get(r["external_id"].casefold(), [])]) for r in records
        ]

    @property
    def user(self) -> str:
        """The integration user (known once authenticated: `start`)."""
        return self.client.user_id


def _worst(outcomes: list[Outcome]) -> Outcome:
    """A record whose Tasks were all deleted (or none existed) is done."""
    return next((o for o in outcomes if o.kind is not Kind.ACCEPTED), accepted())


def client_from(settings: Settings, max_attempts: int = ONE_ATTEMPT) -> SalesforceClient:
    """A Salesforce client: a sink's makes one attempt per call (the runner retries the
    delivery); a reader (a source, a reconciliation) asks for `CALL_ATTEMPTS`."""
    url = require(settings.salesforce_url, "ACTIONS_SYNC_SALESFORCE_URL", f"worker {WORKER}")
    budget = Budget(settings.salesforce_budget_reserve, settings.salesforce_quota_pause_s)
    return SalesforceClient(
        url,
        settings.salesforce_client_id,
        settings.salesforce_client_secret.get_secret_value(),
        api_version=settings.salesforce_api_version,
        max_in_flight=settings.salesforce_max_in_flight,
        budget=budget,
        timeout_s=settings.api_timeout_s,
        max_attempts=max_attempts,
    )


def runner_config(settings: Settings, worker: str, topic: str) -> RunnerConfig:
    """The batch of a Salesforce sink worker (`worker` on `topic`), once its settings are
    checked (one `ConfigError` line naming the variable)."""
    require(settings.salesforce_url, "ACTIONS_SYNC_SALESFORCE_URL", f"worker {worker}")
    require_broker(settings, f"worker {worker}")
    return RunnerConfig(
        worker,
        topic,
        batch_size=settings.salesforce_sink_batch_size,
        batch_within_s=settings.sink_batch_within_s,
        record_attempts=settings.sink_record_attempts,
        call_attempts=settings.sink_call_attempts or None,
    )


def run(settings: Settings) -> None:
    """`actions-sync worker salesforce-sink`."""
    config = runner_config(settings, WORKER, OUTBOUND_SALESFORCE_TASKS)
    run_sink(settings, config, "SalesforceTaskOut", lambda: TaskSink.from_settings(settings))
