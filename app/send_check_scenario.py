"""SPEC S10 in `actions-sync demo`: the Marketo unsubscribe check before a send.

The admin turns the check on (audited); some people unsubscribe in Marketo (an edit in the
Marketo org), others are unsubscribed in Actions already (the S9 flow's), the rest are
not. A seller's send check for each is answered by the send-check worker; the expected
decision is the rules' (`streams.rules.send_check.decide`) from what the store and
Marketo hold (Marketo read back over its REST API: any lead with the email counts).
Unsubscribes captured in Actions never reach Marketo: those people stay subscribed there.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx

from actions_sync.kafka import read_topic
from actions_sync.serialization import Deserializer, RegistryClient
from actions_sync.store.unsubscribes import unsubscribed
from actions_sync.topics import SEND_CHECKS, SEND_DECISIONS
from app.demo_support import DemoRun, Row
from streams.rules.send_check import decide, email_key, unsubscribed_emails

__all__ = ["WORKERS", "run"]

CHECKS = 60
IN_MARKETO = 15  # of them unsubscribed in Marketo first
WORKERS = ("send-check",)
STALE = datetime(2026, 1, 1, tzinfo=UTC)  # the warm-up check: past its deadline at once


def _leads_by_email(demo: DemoRun, emails: list[str]) -> list[dict[str, Any]]:
    """Every lead holding one of `emails`, with `unsubscribed`, over Marketo's REST API."""
    settings = demo.stack.settings
    with httpx.Client(base_url=str(demo.stack.marketo_url), timeout=30) as http:
        token = http.get(
            "/identity/oauth/token",
            params={
                "grant_type": "client_credentials",
                "client_id": settings.marketo_client_id,
                "client_secret": settings.marketo_client_secret.get_secret_value(),
            },
        ).json()
        out: list[dict[str, Any]] = []
        for start in range(0, len(emails), 100):
            body = http.post(
                "/rest/v1/leads.json",
                params={"_method": "GET"},
                data={
                    "filterType": "email",
                    "filterValues": ",".join(emails[start : start + 100]),
                    "fields": "id,email,unsubscribed",
                },
                headers={"Authorization": f"Bearer {token['access_token']}"},
            ).json()
            if not body.get("success"):
                raise RuntimeError(f"Marketo lead lookup: {body.get('errors')}")
            out += body.get("result") or []
        return out


def run(demo: DemoRun) -> list[Row]:
    url = str(demo.stack.marketo_url)
    revision = demo.admin_set("marketo_unsubscribe_check", True)
    demo.worker("send-check")
    applied = demo.wait_applied("send-check", revision)
    present = demo.present()
    with demo.store() as store:
        held = unsubscribed(store.engine, present)
    rng = random.Random(demo.seed + 10)
    people = sorted(
        rng.sample(sorted(m for m in present if present[m].get("email")), min(CHECKS, len(present)))
        + sorted(held)[:10]
    )
    marketo_side = [m for m in people if m not in held][:IN_MARKETO]
    demo.http.post(
        f"{url}/_sandbox/marketo/leads",
        timeout=30,
        json={
            "action": "updateOnly",
            "lookupField": "id",
            "input": [{"id": m, "unsubscribed": True} for m in marketo_side],
        },
    ).raise_for_status()
    emails = sorted({str(present[m]["email"]) for m in people})
    in_marketo = unsubscribed_emails(_leads_by_email(demo, emails))
    expected = {
        m: decide(True, m in held, email_key(str(present[m]["email"])) in in_marketo)
        for m in people
    }

    registry = RegistryClient(demo.stack.registry_url)
    decode = Deserializer(registry, "SendDecision")
    try:
        warm = str(uuid.uuid4())  # answered without Marketo: the worker is consuming
        demo.publish(
            SEND_CHECKS,
            "SendCheck",
            [
                (
                    "0",
                    {
                        "check_id": warm,
                        "marketo_id": 0,
                        "email": "warm-up@example.com",
                        "requested_at": STALE,
                    },
                )
            ],
        )
        decisions: dict[str, dict[str, Any]] = {}

        def answered(ids: set[str]) -> tuple[int, int]:
            for msg in read_topic(demo.stack.bootstrap, SEND_DECISIONS, idle_s=0.3):
                decision = decode(msg.value())
                decisions.setdefault(decision["check_id"], decision)
            return sum(i in decisions for i in ids), len(ids)

        demo.follow({"send-check worker: warm-up answered": lambda: answered({warm})})
        checks = {str(uuid.uuid4()): m for m in people}
        demo.publish(
            SEND_CHECKS,
            "SendCheck",
            (
                (
                    str(m),
                    {
                        "check_id": c,
                        "marketo_id": m,
                        "email": str(present[m]["email"]),
                        "requested_at": datetime.now(UTC),
                    },
                )
                for c, m in checks.items()
            ),
        )
        demo.follow({"send checks answered": lambda: answered(set(checks))})
    finally:
        registry.close()
    agree = 0
    for check_id, m in checks.items():
        got = decisions.get(check_id)
        want = expected[m]
        if got and (got["allowed"], got["reason"]) == (want.allowed, want.reason.value):
            agree += 1
        else:
            demo.problems.append(
                f"send check of {m}: {got and got['reason']}, expected {want.reason.value}"
            )
    blocked = sum(not d.allowed for d in expected.values())
    actions_only = [m for m in held if m in present and present[m].get("email")]
    leaked = (
        len(
            unsubscribed_emails(
                _leads_by_email(demo, sorted({str(present[m]["email"]) for m in actions_only}))
            )
            - in_marketo
        )
        if actions_only
        else 0
    )
    return [
        Row("S10", "the check switched on, applied live", "yes", "yes" if applied else "no"),
        Row(
            "S10",
            f"{len(checks)} send checks decided as the rules say ({blocked} blocked)",
            str(len(checks)),
            str(agree),
        ),
        Row("S10", "Actions unsubscribes pushed to Marketo", "0", str(leaked)),
    ]
