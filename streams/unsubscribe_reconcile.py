"""Full reconciliation of unsubscribes with Salesforce (SPEC S9): `actions-sync reconcile
unsubscribes [--dry-run]`, and daily at the admin's `unsubscribe_reconcile_at` in the
unsubscribe worker.

It walks both sides and fixes drift in the allowed directions only, never writing false:

1. Salesforce: every Lead/Contact (of `unsubscribe_objects`) whose `unsubscribe_field` is
   true, by paged SOQL in Id order (`nextRecordsUrl`). A person of the store holding that
   record and no unsubscribe gets one, source SALESFORCE_SYNC; a record no person has is
   held for its person, as the agent does.
2. Actions: every unsubscribe captured in Actions (not SALESFORCE_SYNC), with its person's
   targets under today's settings. A target the sync never wrote (no entry in
   `salesforce_optout_writes`) that is not true in Salesforce is written, through the
   opt-out sink. One the sync did write and that reads false now was unchecked by a person
   afterwards: a re-subscribe, which never syncs, so it is left alone.

Each change is printed and logged. After each page the position is saved in the store's
checkpoints (`reconcile-unsubscribes`), so a run that crashed resumes where it stopped;
`--dry-run` reads the same and changes nothing (and saves no position).

The paged read is `pages()` here: `SalesforceClient.query` reads every page into one list,
and this walk must checkpoint between pages.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from actions_sync.admin.live import load
from actions_sync.admin.model import AdminSettings
from actions_sync.metrics import UNSUBSCRIBES_RECONCILED
from actions_sync.settings import Settings
from actions_sync.store import Store, persons
from actions_sync.store import unsubscribes as table
from connectors.http import CALL_ATTEMPTS
from connectors.outcome import Kind
from connectors.salesforce.client import SalesforceClient, soql_quote
from connectors.salesforce.ids import to18
from connectors.salesforce.optout_sink import OptOutSink
from connectors.salesforce.sink import client_from
from connectors.sink_worker import require
from streams.rules import unsubscribes as rules

__all__ = ["CHECKPOINT", "Change", "Reconciler", "Report", "due", "pages", "reconcile", "run_once"]

CHECKPOINT = "reconcile-unsubscribes"
PEOPLE_PAGE = 100  # people per Actions page: <= 200 ids per SOQL IN, well under 16 KB
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Change:
    direction: str  # from_salesforce, to_salesforce
    marketo_id: int
    sobject: str
    sfdc_id: str
    field: str

    def describe(self, dry_run: bool) -> str:
        verb = {"from_salesforce": ("store", "stored"), "to_salesforce": ("push", "pushed")}[
            self.direction
        ][0 if dry_run else 1]
        arrow = "<-" if self.direction == "from_salesforce" else "->"
        return (
            f"{'would ' if dry_run else ''}{verb}: person {self.marketo_id} {arrow} "
            f"{self.sobject} {self.sfdc_id} {self.field}"
        )


@dataclass
class Report:
    dry_run: bool
    changes: list[Change] = field(default_factory=list)
    held: int = 0  # Salesforce opt-outs of records no person has
    failed: list[str] = field(default_factory=list)  # pushes Salesforce refused
    resumed: bool = False

    def summary(self) -> str:
        count = {
            d: sum(1 for c in self.changes if c.direction == d)
            for d in ("from_salesforce", "to_salesforce")
        }
        return (
            f"unsubscribe reconciliation{' (dry run)' if self.dry_run else ''}"
            f"{' resumed' if self.resumed else ''}: {count['from_salesforce']} stored from"
            f" Salesforce, {count['to_salesforce']} pushed to Salesforce, {self.held} held"
            f" (no person), {len(self.failed)} refused"
        )


async def pages(client: SalesforceClient, soql: str) -> AsyncIterator[list[dict[str, Any]]]:
    """The rows of `soql`, a page at a time, following `nextRecordsUrl`."""
    body = await client.call("GET", "query", "query", params={"q": soql})
    yield list(body["records"])
    while not body.get("done", True):
        path = str(body["nextRecordsUrl"]).split(f"/{client.version}/", 1)[1]
        body = await client.call("GET", path, "query")
        yield list(body["records"])


class Reconciler:
    def __init__(
        self,
        store: Store,
        client: SalesforceClient,
        settings: AdminSettings,
        say: Callable[[str], None] = print,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.client = client
        self.settings = settings
        self.say = say
        self.now = now
        self.sink = OptOutSink(client, store.engine, now)

    async def run(self, dry_run: bool = False) -> Report:
        report = Report(dry_run)
        saved = None if dry_run else self.store.checkpoint(CHECKPOINT)
        if saved and saved.get("phase") != "done":
            report.resumed = True
            log.info("resuming the unsubscribe reconciliation at %s", saved)
        else:
            saved = {"phase": "salesforce", "sobject": 0, "after": ""}
        if saved["phase"] == "salesforce":
            await self._salesforce(report, int(saved["sobject"]), str(saved["after"]))
            saved = {"phase": "actions", "after": 0}
        await self._actions(report, int(saved["after"]))
        self._save(report, {"phase": "done", "finished_at": self.now().isoformat()})
        return report

    def _save(self, report: Report, position: dict[str, Any]) -> None:
        if not report.dry_run:
            self.store.save_checkpoint(CHECKPOINT, position)

    def _record(self, report: Report, change: Change) -> None:
        report.changes.append(change)
        line = change.describe(report.dry_run)
        self.say(line)
        log.info("%s", line)
        if not report.dry_run:
            UNSUBSCRIBES_RECONCILED.labels(change.direction).inc()

    # -- 1. Salesforce -> Actions ---------------------------------------------------------

    async def _salesforce(self, report: Report, first: int, after: str) -> None:
        name = self.settings.unsubscribe_field
        objects = self.settings.unsubscribe_objects
        for index in range(first, len(objects)):
            sobject = objects[index]
            soql = (
                f"SELECT Id, Email, SystemModstamp FROM {sobject} WHERE {name} = true"
                f"{f' AND Id > {soql_quote(after)}' if after else ''} ORDER BY Id"
            )
            async for rows in pages(self.client, soql):
                if rows:
                    await asyncio.to_thread(self._pull_page, report, sobject, rows)
                    self._save(
                        report, {"phase": "salesforce", "sobject": index, "after": rows[-1]["Id"]}
                    )
            after = ""
            self._save(report, {"phase": "salesforce", "sobject": index + 1, "after": ""})

    def _pull_page(self, report: Report, sobject: str, rows: Sequence[dict[str, Any]]) -> None:
        engine = self.store.engine
        name = self.settings.unsubscribe_field
        found = table.people_by_salesforce_id(engine, [to18(r["Id"]) for r in rows])
        have = table.unsubscribed(engine, [p["marketo_id"] for ps in found.values() for p in ps])
        new, held = [], []
        for row in rows:
            sfdc_id = to18(row["Id"])
            at = _when(row.get("SystemModstamp")) or self.now()
            optout = {
                "event_id": f"reconcile:{sfdc_id}",
                "sobject": sobject,
                "sfdc_id": sfdc_id,
                "email": row.get("Email"),
                "field": name,
                "system_modstamp": at,
            }
            people = found.get(sfdc_id, [])
            if not people:
                report.held += 1
                held.append(
                    table.HeldOptOut(
                        sfdc_id,
                        name,
                        sobject,
                        row.get("Email"),
                        f"reconcile:{sfdc_id}",
                        at,
                        "salesforce_record_unknown",
                        self.now(),
                    )
                )
            for person in people:
                if person["marketo_id"] in have:
                    continue
                have.add(person["marketo_id"])
                new.append(rules.from_salesforce(optout, person))
                self._record(
                    report, Change("from_salesforce", person["marketo_id"], sobject, sfdc_id, name)
                )
        if not report.dry_run:
            table.store_unsubscribes(engine, new)
            table.hold_optouts(engine, held)

    # -- 2. Actions -> Salesforce ---------------------------------------------------------

    async def _actions(self, report: Report, after: int) -> None:
        while page := await asyncio.to_thread(self._people_page, after):
            await self._push_page(report, page)
            after = page[-1][0]["marketo_id"]
            self._save(report, {"phase": "actions", "after": after})

    def _people_page(self, after: int) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """(unsubscribe, person) of Actions unsubscribes after Marketo id `after`."""
        u, p = table.unsubscribes, persons
        query = (
            select(u, p.c.sfdc_lead_id, p.c.sfdc_contact_id)
            .join(p, p.c.marketo_id == u.c.marketo_id)
            .where(u.c.source != rules.SALESFORCE_SYNC, u.c.marketo_id > after)
            .order_by(u.c.marketo_id)
            .limit(PEOPLE_PAGE)
        )
        with self.store.engine.connect() as conn:
            return [(dict(r._mapping), dict(r._mapping)) for r in conn.execute(query)]

    async def _push_page(
        self, report: Report, page: list[tuple[dict[str, Any], dict[str, Any]]]
    ) -> None:
        wanted = [(u, t) for u, person in page for t in rules.targets(person, self.settings)]
        name = self.settings.unsubscribe_field
        ever = await asyncio.to_thread(
            table.written_optouts, self.store.engine, name, [t.sfdc_id for _, t in wanted]
        )
        missing = [(u, t) for u, t in wanted if t.sfdc_id not in ever]
        true = await self._true_in_salesforce([t for _, t in missing])
        todo = [(u, t) for u, t in missing if t.sfdc_id not in true]
        for u, t in todo:
            self._record(
                report, Change("to_salesforce", u["marketo_id"], t.sobject, t.sfdc_id, t.field)
            )
        if report.dry_run or not todo:
            return
        records = [
            rules.optout_write(
                t, u["marketo_id"], _aware(u["occurred_at"]), f"reconcile:{u['event_id']}"
            )
            for u, t in todo
        ]
        for (u, t), outcome in zip(todo, await self.sink.deliver(records), strict=True):
            if outcome.kind not in (Kind.ACCEPTED, Kind.SKIPPED):
                report.failed.append(f"{t.sobject} {t.sfdc_id}: {outcome.error}")
                self.say(
                    f"refused: person {u['marketo_id']} -> {t.sobject} {t.sfdc_id}: {outcome.error}"
                )

    async def _true_in_salesforce(self, found: Sequence[rules.Target]) -> set[str]:
        """Ids of `found` whose field reads true in Salesforce (18 characters, as both
        Salesforce and `rules.targets` give them)."""
        out: set[str] = set()
        name = self.settings.unsubscribe_field
        for sobject in ("Lead", "Contact"):
            ids = sorted({t.sfdc_id for t in found if t.sobject == sobject})
            if not ids:
                continue
            soql = (
                f"SELECT Id FROM {sobject} WHERE {name} = true AND Id IN "
                f"({', '.join(soql_quote(i) for i in ids)})"
            )
            async for rows in pages(self.client, soql):
                out |= {to18(str(r["Id"])) for r in rows}
        return out


def _when(text: Any) -> datetime | None:
    if not text:
        return None
    return datetime.strptime(str(text), "%Y-%m-%dT%H:%M:%S.%f%z")


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def due(at: str, now: datetime, finished_at: datetime | None) -> bool:
    """Whether the daily run at `at` (HH:MM UTC, or off) is due: today's time has passed
    and no run finished since."""
    if at == "off":
        return False
    hour, minute = (int(x) for x in at.split(":"))
    today = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    return now >= today and (finished_at is None or finished_at < today)


async def run_once(
    settings: Settings, store: Store, say: Callable[[str], None], dry_run: bool = False
) -> Report:
    """One reconciliation under the stored admin settings (nothing while the sync is off)."""
    admin = load(store.engine).settings
    if not admin.unsubscribe_sync:
        say("unsubscribe_sync is off: nothing is pushed or pulled, nothing to reconcile")
        return Report(dry_run)
    client = client_from(settings, max_attempts=CALL_ATTEMPTS)  # a reader: retries a call
    try:
        report = await Reconciler(store, client, admin, say).run(dry_run)
    finally:
        await client.aclose()
    say(report.summary())
    log.info("%s", report.summary())
    return report


def reconcile(
    settings: Settings, dry_run: bool = False, say: Callable[[str], None] = print
) -> Report:
    """`actions-sync reconcile unsubscribes [--dry-run]`."""
    require(settings.salesforce_url, "ACTIONS_SYNC_SALESFORCE_URL", "reconcile unsubscribes")
    with Store(settings.database_url) as store:
        store.migrate()
        return asyncio.run(run_once(settings, store, say, dry_run))
