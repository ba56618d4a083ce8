"""The admin HTTP API (SPEC S12) over real HTTP and a real store: authentication, read,
validated and audited changes, the audit log."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from actions_sync.admin.http import create_app
from actions_sync.errors import ConfigError
from actions_sync.settings import Settings
from actions_sync.store import Store
from sandboxes.base import SandboxServer

TOKEN = "s3cret-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}", "X-Admin-User": "ada"}


@pytest.fixture
def api(tmp_path: Path) -> Iterator[httpx.Client]:
    settings = Settings(database_url=f"sqlite:///{tmp_path}/store.db", admin_token=SecretStr(TOKEN))
    with Store(settings.database_url) as store:
        store.migrate()
        with (
            SandboxServer(create_app(settings, store)) as server,
            httpx.Client(base_url=server.url, timeout=10) as client,
        ):
            yield client


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}]
)
def test_every_call_needs_the_token(api: httpx.Client, headers: dict[str, str]) -> None:
    assert api.get("/settings", headers=headers).status_code == 401
    assert (
        api.put("/settings/people_sync", json={"value": True}, headers=headers).status_code == 401
    )
    assert api.get("/health").status_code == 200


def test_read_change_and_audit(api: httpx.Client) -> None:
    before = api.get("/settings", headers=AUTH).json()
    assert before["settings"]["salesforce_log_emails"] is True
    changed = api.put("/settings/salesforce_log_emails", json={"value": False}, headers=AUTH)
    assert changed.status_code == 200
    assert (changed.json()["old_value"], changed.json()["new_value"]) == (True, False)
    after = api.get("/settings", headers=AUTH).json()
    assert after["settings"]["salesforce_log_emails"] is False
    assert after["revision"] > before["revision"]
    [entry] = api.get("/settings/audit", headers=AUTH).json()
    assert entry["key"] == "salesforce_log_emails" and entry["changed_by"] == "api:ada"


def test_several_changes_are_all_or_nothing(api: httpx.Client) -> None:
    bad = api.put(
        "/settings",
        json={"reminder_task_sync": True, "unsubscribe_objects": ["Account"]},
        headers=AUTH,
    )
    assert bad.status_code == 400 and "unsubscribe_objects" in bad.json()["error"]
    assert api.get("/settings/audit", headers=AUTH).json() == []
    good = api.put(
        "/settings",
        json={"reminder_task_sync": True, "unsubscribe_objects": ["Contact"]},
        headers=AUTH,
    )
    assert good.status_code == 200
    assert good.json()["settings"]["unsubscribe_objects"] == ["Contact"]
    assert len(good.json()["changes"]) == 2


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/settings/nope", {"value": 1}, "valid settings"),
        ("/settings/people_sync", {"value": "sometimes"}, "people_sync"),
        ("/settings/people_sync", {"val": True}, '{"value": ...}'),
        ("/settings/salesforce_subject_template", {"value": "{{x}}"}, "unknown placeholder"),
    ],
)
def test_bad_changes_are_400_with_the_reason(
    api: httpx.Client,
    path: str,
    body: dict[str, int] | dict[str, str] | dict[str, bool],
    message: str,
) -> None:
    response = api.put(path, json=body, headers=AUTH)
    assert response.status_code == 400 and message in response.json()["error"]


def test_the_api_refuses_to_run_without_a_token(tmp_path: Path) -> None:
    with (
        Store(f"sqlite:///{tmp_path}/s.db") as store,
        pytest.raises(ConfigError, match="ADMIN_TOKEN"),
    ):
        create_app(Settings(), store)


@pytest.mark.parametrize(
    ("method", "path", "headers", "body", "status", "message"),
    [
        ("GET", "/settings", {"Authorization": b"Bearer \xff"}, None, 401, "bearer token"),
        (
            "GET",
            "/settings",
            {"Authorization": f"Bearer {TOKEN}\xe9".encode()},
            None,
            401,
            "bearer token",
        ),
        ("PUT", "/settings", AUTH, b"[" * 100_000 + b"]" * 100_000, 400, "JSON"),
        (
            "PUT",
            "/settings/people_sync",
            AUTH,
            b'{"value": ' + b"[" * 900 + b"]" * 900 + b"}",
            400,
            "people_sync",
        ),
        ("PUT", "/settings", AUTH, b"\xff\xfe{", 400, "UTF-8 JSON"),
        ("PUT", "/settings/people_sync", AUTH, b'{"value": "yes"}', 400, "JSON boolean"),
        ("PUT", "/settings/people_sync", AUTH, b'{"value": 0}', 400, "JSON boolean"),
        ("PUT", "/settings", AUTH, b'{"salesforce_log_calls": "true"}', 400, "JSON boolean"),
        (
            "PUT",
            "/settings/people_sync",
            {**AUTH, "X-Admin-User": b"\xff"},
            b'{"value": true}',
            400,
            "X-Admin-User",
        ),
        ("GET", "/settings/audit?limit=-1", AUTH, None, 400, "limit must be a whole number"),
        ("GET", "/settings/audit?limit=0", AUTH, None, 400, "from 1 to 1000"),
        ("GET", "/settings/audit?limit=1001", AUTH, None, 400, "from 1 to 1000"),
        ("GET", "/settings/audit?limit=%C2%B2", AUTH, None, 400, "limit"),  # "²".isdigit()
        ("GET", "/settings/audit?limit=ten", AUTH, None, 400, "limit"),
    ],
)
def test_malformed_requests_are_4xx_with_a_one_line_reason(
    api: httpx.Client,
    method: str,
    path: str,
    headers: dict[str, Any],
    body: bytes | None,
    status: int,
    message: str,
) -> None:
    response = api.request(method, path, headers=headers, content=body)
    assert response.status_code == status
    reason = response.json()["error"]
    assert message in reason and "\n" not in reason
    assert api.get("/settings/audit", headers=AUTH).json() == []  # nothing was changed


def test_the_audit_limit_takes_whole_numbers_from_1_to_1000(api: httpx.Client) -> None:
    for value in (True, False):
        api.put("/settings/people_sync", json={"value": value}, headers=AUTH)
    assert len(api.get("/settings/audit?limit=1", headers=AUTH).json()) == 1
    assert len(api.get("/settings/audit?limit=1000", headers=AUTH).json()) == 2
