"""The Marketo source's pieces against the Marketo sandbox over real HTTP, publishing to a
real broker and checkpointing in a real SQLite store: bulk extract windows and pipeline,
Range resume, late files (404), token expiry (601/602), transient faults, 606/615 waits,
the daily quota (607) and the export job limit (1029), lead changes and deleted leads."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from aiohttp import web

from actions_sync.errors import Retriable
from actions_sync.kafka import ensure_topics, read_topic
from actions_sync.publish import Publisher
from actions_sync.serialization import Deserializer, RegistryClient
from actions_sync.store import Store
from actions_sync.topics import PERSON_CHANGES, specs
from connectors.marketo.client import MarketoClient, MarketoLimits
from connectors.marketo.context import INCREMENTAL, INITIAL, SourceContext
from connectors.marketo.incremental import LeadChanges
from connectors.marketo.initial import InitialSync
from sandboxes.base import JOURNAL_KEY, FaultPlan, SandboxServer
from sandboxes.marketo import STATE_KEY, MarketoConfig, create_app
from sandboxes.population import EPOCH, generate

T = TypeVar("T")

SINCE, UNTIL = EPOCH, EPOCH + timedelta(days=366)
# Marketo's limits (100 calls, 10 in flight) and the client's pace (50, 5) over a 2 s window
# instead of 20 s: the same proportions, ten times faster.
FAST = {"export_processing_s": 0.05, "rate_window_s": 2.0}


def owned_ids(n: int) -> set[int]:
    return {
        p["marketo_id"]
        for p in generate(n, 7)
        if p["sfdc_lead_owner_id"] or p["sfdc_contact_owner_id"]
    }


def serve(**config: Any) -> tuple[web.Application, SandboxServer]:
    app = create_app(MarketoConfig(**{**FAST, **config}))
    return app, SandboxServer(app)


def run_source(
    server: SandboxServer,
    kafka: str,
    registry: str,
    db: str,
    body: Callable[[SourceContext], Awaitable[T]],
    timeout_s: float = 30.0,
    probe_s: float = 0.2,
) -> tuple[T, dict[str, Any], int]:
    """Wire a SourceContext like `connectors.marketo.source` does; run `body(ctx)`."""
    ensure_topics(kafka, specs((PERSON_CHANGES,), 8))

    async def go() -> tuple[T, dict[str, Any], int]:
        limits = MarketoLimits(calls_per_window=50, window_s=2.0)
        client = MarketoClient(
            server.url, "actions-sync", "sandbox-secret", limits, timeout_s=timeout_s
        )
        reg = RegistryClient(registry)
        with Store(db) as store:
            store.migrate()
            ctx = SourceContext(client, Publisher(kafka, reg), store, "marketo-source", probe_s)
            try:
                return await body(ctx), store.checkpoint(INITIAL) or {}, client.auth.refreshes
            finally:
                await client.aclose()
                reg.close()
                del ctx  # the producer disconnects: the broker then stops at once

    return asyncio.run(go())


def load(chunk: int = 1 << 20) -> Callable[[SourceContext], Awaitable[bool]]:
    return lambda ctx: InitialSync(ctx, SINCE, UNTIL, chunk).run()


def published(kafka: str, registry: str) -> list[dict[str, Any]]:
    reg = RegistryClient(registry)
    try:
        decode = Deserializer(reg, "PersonChange")
        return [decode(m.value()) for m in read_topic(kafka, PERSON_CHANGES, idle_s=0.5)]
    finally:
        reg.close()


def codes(app: web.Application, part: str = "") -> list[str]:
    return [e.code or str(e.status) for e in app[JOURNAL_KEY].entries() if part in e.path]


def test_initial_sync_publishes_each_owned_lead_once_with_its_fields(
    kafka: str, registry: str, tmp_path: Path
) -> None:
    _, sandbox = serve(seed_people=3000)
    with sandbox as server:
        done, checkpoint, _ = run_source(
            server, kafka, registry, f"sqlite:///{tmp_path}/s.db", load()
        )
    changes = published(kafka, registry)
    assert done and checkpoint["done"] and checkpoint["published"] == len(changes)
    assert sorted(c["marketo_id"] for c in changes) == sorted(owned_ids(3000))
    first = next(p for p in generate(3000, 7) if p["marketo_id"] == changes[0]["marketo_id"])
    assert {k: changes[0][k] for k in ("email", "sfdc_lead_id", "title", "changed_at")} == {
        k: first[k if k != "changed_at" else "updated_at"]
        for k in ("email", "sfdc_lead_id", "title", "changed_at")
    }


def test_token_expiry_faults_and_late_files_are_survived(
    kafka: str, registry: str, tmp_path: Path
) -> None:
    faults = FaultPlan(seed=5, error_rate=0.1, timeout_rate=0.03, timeout_s=1.5)
    app, sandbox = serve(
        seed_people=3000, token_expiry_s=1.0, faults=faults, late_file_rate=1.0, late_file_s=1.0
    )
    with sandbox as server:
        done, _, refreshes = run_source(
            server, kafka, registry, f"sqlite:///{tmp_path}/s.db", load(chunk=16_384), timeout_s=1.0
        )
    assert done and refreshes >= 1
    assert {"602", "404"} <= set(codes(app)) and set(codes(app)) & {"604", "608", "611", "713"}
    assert not {"606", "615"} & set(codes(app))  # our own pace never trips the limits
    changes = published(kafka, registry)  # a retried range is the same range (not the file)
    assert sorted(c["marketo_id"] for c in changes) == sorted(owned_ids(3000))


def test_a_stopped_load_resumes_the_same_file_at_its_byte_offset(
    kafka: str, registry: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app, sandbox = serve(seed_people=3000)
    db = f"sqlite:///{tmp_path}/s.db"

    async def stop_after_first_chunk(ctx: SourceContext) -> bool:
        monkeypatch.setattr(ctx, "commit", _then_stop(ctx, ctx.commit, after=3))
        return await load(chunk=16_384)(ctx)

    with sandbox as server:
        stopped, mid, _ = run_source(server, kafka, registry, db, stop_after_first_chunk)
        done, _, _ = run_source(server, kafka, registry, db, load(chunk=16_384))
    ranges = [e.query for e in app[JOURNAL_KEY].entries() if e.path.endswith("file.json")]
    assert not stopped and done and mid["offset"] > 0
    changes = published(kafka, registry)
    assert {c["marketo_id"] for c in changes} == owned_ids(3000)
    assert len(changes) - len(owned_ids(3000)) <= 16_384 // 100  # at most one chunk again
    assert len(ranges) > 2


def _then_stop(
    ctx: SourceContext, commit: Callable[[str, dict[str, Any]], None], after: int
) -> Callable[[str, dict[str, Any]], None]:
    calls = []

    def wrapped(name: str, position: dict[str, Any]) -> None:
        commit(name, position)
        calls.append(name)
        if name == INITIAL and position.get("offset") and len(calls) >= after:
            ctx.stopping.set()

    return wrapped


def test_daily_quota_607_pauses_at_a_checkpoint_then_resumes(
    kafka: str, registry: str, tmp_path: Path
) -> None:
    app, sandbox = serve(seed_people=1000, daily_quota=6)
    with sandbox as server:

        async def reset_later(ctx: SourceContext) -> bool:
            async def reset() -> None:
                while "607" not in codes(app):  # noqa: ASYNC110 - the sandbox's journal
                    await asyncio.sleep(0.05)
                async with httpx.AsyncClient() as http:
                    await http.post(f"{server.url}/_sandbox/marketo/quota/reset")
                app[STATE_KEY].limits.quota.limit = 10_000

            resetting = asyncio.create_task(reset())
            done = await load()(ctx)
            await resetting
            return done

        done, _, _ = run_source(server, kafka, registry, f"sqlite:///{tmp_path}/s.db", reset_later)
    assert done and "607" in codes(app)
    assert {c["marketo_id"] for c in published(kafka, registry)} == owned_ids(1000)


def test_too_many_export_jobs_1029_defers_the_pipeline(
    kafka: str, registry: str, tmp_path: Path
) -> None:
    # Jobs process for 0.5 s (Marketo-like, the sandbox's default), not 0.05: the source
    # enqueues its next jobs well within that, also on a busy machine, so the queue is full.
    app, sandbox = serve(
        seed_people=1000, export_max_queued=1, export_max_running=1, export_processing_s=0.5
    )
    with sandbox as server:
        done, _, _ = run_source(server, kafka, registry, f"sqlite:///{tmp_path}/s.db", load())
    assert done and "1029" in codes(app, "enqueue")
    assert {c["marketo_id"] for c in published(kafka, registry)} == owned_ids(1000)


def test_lead_changes_publish_current_state_owner_changes_and_deletes(
    kafka: str, registry: str, tmp_path: Path
) -> None:
    owned = sorted(owned_ids(40))
    unowned = sorted(set(range(1, 41)) - set(owned))
    _, sandbox = serve(seed_people=40)
    with sandbox as server:

        async def follow(ctx: SourceContext) -> dict[str, Any]:
            tokens = await LeadChanges(ctx, 0.1)._tokens()
            async with httpx.AsyncClient(base_url=f"{server.url}/_sandbox/marketo") as http:
                await http.post(
                    "/leads",
                    json={
                        "action": "updateOnly",
                        "lookupField": "id",
                        "input": [
                            {"id": owned[0], "title": "Chief"},
                            {"id": owned[1], "sfdcLeadOwnerId": None, "sfdcContactOwnerId": None},
                            {"id": unowned[0], "sfdcLeadOwnerId": "005X"},
                            {"id": unowned[1], "title": "Nobody"},
                        ],
                    },
                )
                await http.post("/leads/delete", json={"ids": [owned[2]]})
            while await LeadChanges(ctx, 0.1).cycle(tokens):
                pass
            return ctx.store.checkpoint(INCREMENTAL) or {}

        saved, _, _ = run_source(server, kafka, registry, f"sqlite:///{tmp_path}/s.db", follow)
    by_id = {c["marketo_id"]: c for c in published(kafka, registry)}
    assert set(by_id) == {owned[0], owned[1], unowned[0], owned[2]}  # unowned[1]: skipped
    assert by_id[owned[0]]["title"] == "Chief" and by_id[owned[0]]["email"]
    assert not by_id[owned[1]]["sfdc_lead_owner_id"] and by_id[owned[2]]["deleted"]
    assert by_id[unowned[0]]["sfdc_lead_owner_id"] == "005X" and saved["lead_token"]


def test_lead_changes_after_a_failed_commit_start_again_from_the_saved_checkpoint(
    kafka: str, registry: str, tmp_path: Path
) -> None:
    """A page whose commit (flush, then save the tokens) failed is published again from
    the saved checkpoint, never skipped: at least once, whatever the loop's retries keep
    in memory."""
    owned = sorted(owned_ids(40))
    _, sandbox = serve(seed_people=40)
    with sandbox as server:

        async def follow(ctx: SourceContext) -> tuple[dict[str, Any], int]:
            source = LeadChanges(ctx, 0.05)
            start = await source._tokens()
            saves, save = [0], ctx.store.save_checkpoint

            def fails_once(name: str, value: Any) -> None:
                saves[0] += 1
                if saves[0] == 1:
                    raise Retriable("store unavailable")
                save(name, value)

            ctx.store.save_checkpoint = fails_once  # type: ignore[method-assign]
            async with httpx.AsyncClient(base_url=f"{server.url}/_sandbox/marketo") as http:
                await http.post(
                    "/leads",
                    json={
                        "action": "updateOnly",
                        "lookupField": "id",
                        "input": [{"id": owned[0], "title": "Chief"}],
                    },
                )
            task = asyncio.create_task(source.run())
            for _ in range(300):  # the page again, then saved: the tokens move
                saved = ctx.store.checkpoint(INCREMENTAL) or {}
                if saves[0] >= 2 and saved.get("lead_token") != start["lead_token"]:
                    break
                await asyncio.sleep(0.1)
            ctx.stopping.set()
            await task
            return saved, saves[0]

        (saved, saves), _, _ = run_source(
            server, kafka, registry, f"sqlite:///{tmp_path}/s.db", follow
        )
    titles = [c["title"] for c in published(kafka, registry) if c["marketo_id"] == owned[0]]
    assert saves >= 2 and saved["lead_token"]
    assert titles == ["Chief", "Chief"]  # published, its commit failed, published again
