"""The Salesforce Tasks sink: `outbound.salesforce.tasks` -> Task upserts and deletes (S8).

Upserts go by the external id `ActionsSync_Id__c` (a record whose fields carry the Task
`Id`, a reminder task born in Salesforce, updates it by Id and sets the external id), 200
per sObject Collections call
(`allOrNone=false`), so a redelivered record rewrites the same Task: exactly-once effect
without a ledger. A DELETE finds the Task ids by external id (one SOQL query per 100)
and deletes them; a Task that is already gone counts as deleted. Each record's result
is classified by `classify.record_outcome`: retry (UNABLE_TO_LOCK_ROW ...) or
dead-letter with the reason (REQUIRED_FIELD_MISSING, FIELD_CUSTOM_VALIDATION_EXCEPTION ...).
Retries are the runner's (`connectors.runner`): the sinks' client makes one attempt per
call (`client_from`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from actions_sync.settings import Settings
from actions_sync.topics import OUTBOUND_SALESFORCE_TASKS
from connectors.http import ONE_ATTEMPT
from connectors.outcome import Kind, Outcome, accepted, chunks, fan_out, skipped
from connectors.runner import RunnerConfig
from connectors.salesforce.budget import Budget
from connectors.salesforce.classify import record_outcome
from connectors.salesforce.client import COLLECTION_MAX, EXTERNAL_ID, SalesforceClient, soql_quote
from connectors.salesforce.payloads import merged, newest, task_record
from connectors.sink_worker import require, require_broker, run_sink

__all__ = ["WORKER", "TaskSink", "client_from", "run"]

WORKER = "salesforce-sink"
DELETE_QUERY_MAX = 100  # external ids per SOQL IN (...): keeps the URI well under 16 KB
Record = dict[str, Any]


class TaskSink:
    """`Destination` of Task changes (see `connectors.runner`)."""

    def __init__(self, client: SalesforceClient) -> None:
        self.client = client

    async def start(self) -> None:
        await self.client.auth.get()  # bad credentials fail before the first record

    async def deliver(self, records: Sequence[Record]) -> list[Outcome]:
        out = [skipped()] * len(records)  # superseded by a newer change in the batch
        kept = newest(records)
        whole = merged(records, kept)
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
        results = await self.client.upsert("Task", EXTERNAL_ID, [task_record(r) for r in records])
        return [record_outcome(r) for r in results]

    async def _update(self, records: Sequence[Record]) -> list[Outcome]:
        """Tasks born in Salesforce have no external id until the sync's first write:
        that write goes by their Id and sets it (S11), later ones upsert by it."""
        results = await self.client.update([task_record(r) for r in records])
        return [record_outcome(r) for r in results]

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

    async def aclose(self) -> None:
        await self.client.aclose()


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
    run_sink(settings, config, "SalesforceTaskOut", lambda: TaskSink(client_from(settings)))
