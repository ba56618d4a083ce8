"""Structured logs (structlog over stdlib logging) with secrets redacted.

Two layers, because a secret can reach a line by a key, inside a message, or inside an
exception's text: `redact` masks values of secret-looking keys, and every rendered line
(tracebacks included) is scrubbed of the configured secret values and of secret-shaped
text (bearer tokens, `client_secret=`, passwords in URLs) before it is written.
Tracebacks are plain: never with local variables (structlog's default, rich, prints
them, and a frame's locals held the admin token).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, MutableMapping
from typing import Any, cast

import structlog
from pydantic import BaseModel, SecretStr

__all__ = ["configure_logging", "redact", "scrubber", "secrets_of"]

MASK = "***"
# Values of keys like these never reach a log line.
_SECRET_KEY = re.compile(r"(secret|password|token|authorization)", re.I)
_SECRET_IN_TEXT = re.compile(r"((?:client_secret|access_token|password)=)[^&\s]+", re.I)
_SECRET_SHAPED = (
    _SECRET_IN_TEXT,
    re.compile(r"(bearer\s+)[^\s'\",]+", re.I),  # Authorization header values
    re.compile(r"(://[^:/@\s]+:)[^@\s]+(?=@)"),  # user:password@ in URLs
)
# Shorter secrets would mask ordinary words ("sandbox-secret" is long enough).
MIN_SECRET_LEN = 6


def redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: mask secret-looking keys and secrets inside URLs."""
    for key, value in list(event.items()):
        if _SECRET_KEY.search(key):
            event[key] = MASK
        elif isinstance(value, str):
            event[key] = _SECRET_IN_TEXT.sub(rf"\1{MASK}", value)
    return event


def scrubber(secrets: Iterable[str] = ()) -> Callable[[str], str]:
    """A function that masks `secrets` and secret-shaped text in a rendered line."""
    values = sorted({s for s in secrets if len(s) >= MIN_SECRET_LEN}, key=len, reverse=True)
    literal = re.compile("|".join(map(re.escape, values))) if values else None

    def scrub(line: str) -> str:
        if literal is not None:
            line = literal.sub(MASK, line)
        for pattern in _SECRET_SHAPED:
            line = pattern.sub(rf"\1{MASK}", line)
        return line

    return scrub


def secrets_of(settings: BaseModel) -> list[str]:
    """The values of every `SecretStr` field of `settings` (for `configure_logging`)."""
    values = (getattr(settings, name) for name in type(settings).model_fields)
    return [v.get_secret_value() for v in values if isinstance(v, SecretStr)]


def configure_logging(
    level: str = "info", fmt: str = "console", secrets: Iterable[str] = ()
) -> None:
    """Route stdlib and structlog records through one redacting renderer; `secrets` are
    masked wherever they appear in a line."""
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(
            colors=False, exception_formatter=structlog.dev.plain_traceback
        )
    )
    scrub = scrubber(secrets)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact,
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                # the traceback as plain text (no locals), so that the scrub below sees it
                structlog.processors.format_exc_info,
                renderer,
                lambda _logger, _name, line: scrub(cast(str, line)),  # the renderer's text
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiokafka", "faust", "mode", "httpx", "alembic"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
