"""Log lines never carry a secret: tracebacks are plain (no local variables) and every
rendered line, tracebacks included, is scrubbed of the configured secrets."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator

import pytest
import structlog
from pydantic import SecretStr

from actions_sync.logging import configure_logging, scrubber, secrets_of
from actions_sync.settings import Settings

SECRET = "s3cret-of-the-test"


@pytest.fixture
def logs(capsys: pytest.CaptureFixture[str]) -> Iterator[Callable[[], str]]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield lambda: capsys.readouterr().err
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()


def fail(token: str) -> None:
    expected = f"Bearer {token}".encode()  # a local a rich traceback would print
    raise ValueError(f"no match for {expected!r}")


@pytest.mark.parametrize("fmt", ["console", "json"])
def test_a_traceback_shows_no_locals_and_no_secret(logs: Callable[[], str], fmt: str) -> None:
    configure_logging("info", fmt, secrets=[SECRET])
    try:
        fail(SECRET)
    except ValueError:
        logging.getLogger("test").exception("request failed")
    out = logs()
    assert "request failed" in out and "Traceback" in out and "fail" in out
    assert SECRET not in out and "expected =" not in out
    if fmt == "json":
        assert json.loads(out)["exception"].startswith("Traceback")


def test_structlog_events_are_scrubbed_too(logs: Callable[[], str]) -> None:
    configure_logging("info", "console", secrets=[SECRET])
    structlog.get_logger("test").info(
        "calling",
        url=f"https://x/?client_secret={SECRET}",
        note=f"header Bearer {SECRET}",
        api_key=SECRET,
    )
    out = logs()
    assert "calling" in out and SECRET not in out


@pytest.mark.parametrize(
    ("line", "scrubbed"),
    [
        ("Authorization: Bearer abc.def-1", "Authorization: Bearer ***"),
        (
            "GET /identity/oauth/token?client_id=a&client_secret=xyz&x=1",
            "GET /identity/oauth/token?client_id=a&client_secret=***&x=1",
        ),
        ("postgresql://actions:p%40ss@db:5432/actions", "postgresql://actions:***@db:5432/actions"),
        (f"value {SECRET}!", "value ***!"),
        ("short ones like 'abc' are left alone", "short ones like 'abc' are left alone"),
    ],
)
def test_scrubber_masks_secrets_and_secret_shaped_text(line: str, scrubbed: str) -> None:
    assert scrubber([SECRET, "abc"])(line) == scrubbed


def test_every_secret_setting_is_masked() -> None:
    settings = Settings(
        admin_token=SecretStr("admin-tok"), marketo_client_secret=SecretStr("mkto-sec")
    )
    assert {"admin-tok", "mkto-sec", "sandbox-secret"} <= set(secrets_of(settings))
