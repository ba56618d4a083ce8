"""No secret reaches a log: the admin API and the sandboxes run as `actions-sync`
processes (their real logging, at debug), a corpus of hostile requests goes at each,
then every line of their logs is searched for the admin token and the vendor secrets.

Before the fix, `Authorization: Bearer \\xff` and a deeply nested body made the admin API
answer 500 and print a traceback whose locals held `expected = b'Bearer <token>'`.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from app.process import spawn, stop
from app.stack import http_client, wait_http
from sandboxes.base import free_port

pytestmark = pytest.mark.slow

TOKEN = "admin-Tok3n-0f-the-test"
MARKETO_SECRET = "mkto-S3cret-0f-the-test"
SALESFORCE_SECRET = "sfdc-S3cret-0f-the-test"
SECRETS = (TOKEN, MARKETO_SECRET, SALESFORCE_SECRET)
CLI = [sys.executable, "-m", "app"]
DEEP = b"[" * 200_000 + b"]" * 200_000
DEEP_IN_VALUE = b'{"value": ' + b"[" * 900 + b"]" * 900 + b"}"


@dataclass(frozen=True)
class Hostile:
    method: str
    path: str
    headers: dict[str, str | bytes]
    body: bytes = b""

    def wire_headers(self) -> dict[bytes, bytes]:
        """The headers as bytes, as httpx sends them (text is ASCII)."""
        return {
            k.encode("ascii"): v if isinstance(v, bytes) else v.encode("ascii")
            for k, v in self.headers.items()
        }


def corpus(paths: list[str], token: str = TOKEN) -> list[Hostile]:
    """Malformed auth, bodies and parameters, each carrying secrets where a careless
    server would echo or log them; bodies go with `token`, valid for the server."""
    good = f"Bearer {token}"
    auths: list[dict[str, str | bytes]] = [
        {"Authorization": b"Bearer \xff"},
        {"Authorization": f"Bearer {TOKEN}\xe9".encode()},
        {"Authorization": TOKEN},
        {"Authorization": f"Basic {MARKETO_SECRET}"},
        {"Authorization": "Bearer " + "x" * 6000},
        {"Authorization": good, "X-Admin-User": b"\xff\xfe"},
        {"Authorization": good, "X-Admin-User": SALESFORCE_SECRET},
    ]
    bodies = [
        DEEP,
        DEEP_IN_VALUE,
        b"\xff\xfe{",
        b'{"value": "' + TOKEN.encode() + b'"}',
        b'{"people_sync": "yes"}',
        b'{"value": 0}',
        b"[" + b"1," * 50_000 + b"1]",
        b'{"value": ' + b"9" * 5000 + b"}",
        b"null",
    ]
    items = []
    for path in paths:
        items += [Hostile("GET", path, auth) for auth in auths]
        items += [
            Hostile(method, path, {"Authorization": good, "Content-Type": "application/json"}, body)
            for method in ("PUT", "POST")
            for body in bodies
        ]
        items += [
            Hostile(
                "GET",
                f"{path}?limit={limit}&client_secret={MARKETO_SECRET}&access_token={TOKEN}",
                {"Authorization": good},
            )
            for limit in ("-1", "0", "1e3", "99999999999999999999", "%ff", "")
        ]
    return items


@dataclass(frozen=True)
class Servers:
    urls: dict[str, str]
    tokens: dict[str, str]  # a valid bearer token of each (the vendors' are secrets too)
    logs: list[Path]


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    tmp = tmp_path_factory.mktemp("hostile")
    admin_port = free_port()
    env = {
        "DATABASE_URL": f"sqlite:///{tmp}/store.db",
        "ACTIONS_SYNC_ADMIN_TOKEN": TOKEN,
        "ACTIONS_SYNC_ADMIN_PORT": str(admin_port),
        "ACTIONS_SYNC_LOG_LEVEL": "debug",
        "ACTIONS_SYNC_MARKETO_CLIENT_SECRET": MARKETO_SECRET,
        "ACTIONS_SYNC_SALESFORCE_CLIENT_SECRET": SALESFORCE_SECRET,
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACTIONS_SYNC_")} | env
    urls = {"admin": f"http://127.0.0.1:{admin_port}"}
    procs = [spawn([*CLI, "worker", "admin-api"], log=tmp / "admin.log", env=env)]
    for name, secret in (
        ("marketo", MARKETO_SECRET),
        ("salesforce", SALESFORCE_SECRET),
        ("registry", ""),
    ):
        port = free_port()
        secret_args = ["--client-secret", secret] if secret else []
        procs.append(
            spawn(
                [*CLI, "sandbox", name, "--port", str(port), *secret_args],
                log=tmp / f"{name}.log",
                env=env,
            )
        )
        urls[name] = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{urls['admin']}/health", timeout_s=60, proc=procs[0])
        for name, proc in zip(("marketo", "salesforce", "registry"), procs[1:], strict=True):
            wait_http(f"{urls[name]}/_sandbox/journal", timeout_s=60, proc=proc)
        tokens = {
            "admin": TOKEN,
            "registry": TOKEN,
            "marketo": http_client()
            .get(
                f"{urls['marketo']}/identity/oauth/token",
                params={
                    "grant_type": "client_credentials",
                    "client_id": "actions-sync",
                    "client_secret": MARKETO_SECRET,
                },
            )
            .json()["access_token"],
            "salesforce": http_client()
            .post(
                f"{urls['salesforce']}/services/oauth2/token",
                data={
                    "grant_type": "client_credentials",
                    "client_id": "actions-sync",
                    "client_secret": SALESFORCE_SECRET,
                },
            )
            .json()["access_token"],
        }
        yield Servers(urls, tokens, sorted(tmp.glob("*.log")))
    finally:
        for proc in procs:
            stop(proc)


PATHS = {
    "admin": ["/settings", "/settings/people_sync", "/settings/audit", "/ui/login", "/ui/settings"],
    "marketo": [
        "/identity/oauth/token",
        "/rest/v1/leads.json",
        "/rest/v1/activities/external.json",
    ],
    "salesforce": ["/services/oauth2/token", "/services/data/v59.0/composite/sobjects"],
    "registry": ["/subjects/person-value/versions", "/config"],
}


def send(client: httpx.Client, item: Hostile) -> int:
    return client.request(
        item.method, item.path, headers=item.wire_headers(), content=item.body or None
    ).status_code


@pytest.mark.parametrize("name", list(PATHS))
def test_hostile_requests_never_make_a_server_fail(servers: Servers, name: str) -> None:
    with httpx.Client(base_url=servers.urls[name], timeout=60) as client:
        answers = {
            (i.method, i.path[:40], repr(i.headers)[:50], i.body[:12]): send(client, i)
            for i in corpus(PATHS[name], servers.tokens[name])
        }
    assert {key: code for key, code in answers.items() if code >= 500} == {}


def use_the_page(url: str) -> str:
    """Log in to the admin page with a wrong token, then the right one; change a setting
    without and with the CSRF token. Return the session id (a secret too)."""
    with httpx.Client(base_url=url, timeout=60) as client:
        wrong = client.post("/ui/login", data={"token": f"{TOKEN}-not", "user": "ada"})
        assert wrong.status_code == 401
        right = client.post("/ui/login", data={"token": TOKEN, "user": "ada"})
        assert right.status_code == 303
        session = client.cookies["actions_sync_session"]
        page = client.get("/ui/")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf, page.text[:200]
        assert client.post("/ui/settings", data={"people_sync": "true"}).status_code == 403
        assert (
            client.post(
                "/ui/settings", data={"people_sync": ["false", "true"], "csrf": csrf.group(1)}
            ).status_code
            == 200
        )
    return session


def test_no_log_line_of_any_server_holds_a_secret(servers: Servers) -> None:
    for name, paths in PATHS.items():
        with httpx.Client(base_url=servers.urls[name], timeout=60) as client:
            for item in corpus(paths, servers.tokens[name]):
                send(client, item)
    session = use_the_page(servers.urls["admin"])
    for name, control in (
        ("marketo", "/_sandbox/journal"),
        ("salesforce", "/_sandbox/journal"),
        ("salesforce", "/_sandbox/salesforce/config"),
    ):  # read by anyone
        shown = http_client().get(servers.urls[name] + control).text
        assert "/identity/oauth/token" in shown or "client_secret" in shown
        assert not [s for s in (*SECRETS, *servers.tokens.values()) if s in shown], control
    lines = [
        (log.name, line)
        for log in servers.logs
        for line in log.read_text("utf-8", "replace").splitlines()
    ]
    assert any("GET /settings" in line for _, line in lines)  # the logs are the right ones
    assert any("admin page: login refused" in line for _, line in lines)
    assert any("admin page: page:ada logged in" in line for _, line in lines)
    secrets = [*SECRETS, servers.tokens["marketo"], servers.tokens["salesforce"], session]
    leaks = [
        (name, line[:200]) for name, line in lines if any(secret in line for secret in secrets)
    ]
    assert leaks == []
