"""Marketo's response envelope and the request-reading helpers every route shares.

Success: `{"requestId","success":true,"result":[...]}` plus `moreResult` / `nextPageToken`
on paged reads. Failure: HTTP 200 with `{"requestId","success":false,"errors":[...]}`, and
the code marked on the response (`response[CODE]`) for the sandbox journal.
"""

from __future__ import annotations

import base64
import itertools
import time
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from sandboxes.base import CODE, load_json
from sandboxes.marketo.errors import MarketoError

__all__ = [
    "decode_offset",
    "encode_offset",
    "failure",
    "int_param",
    "list_param",
    "ok",
    "read_json",
    "request_id",
]

_counter = itertools.count(1)
_OFFSET_PREFIX = "off:"


def request_id() -> str:
    """Shaped like Marketo's: `e42b#14272d07d78` (a counter, then epoch ms in hex)."""
    return f"{next(_counter) % 0x10000:04x}#{int(time.time() * 1000):x}"


def ok(
    result: list[Any] | None, *, more: bool | None = None, token: str | None = None, **extra: Any
) -> web.Response:
    body: dict[str, Any] = {"requestId": request_id(), "success": True, **extra}
    if result is not None:
        body["result"] = result
    if more is not None:
        body["moreResult"] = more
    if token is not None:
        body["nextPageToken"] = token
    return web.json_response(body)


def failure(error: MarketoError) -> web.Response:
    response = web.json_response(
        {"requestId": request_id(), "success": False, "errors": [error.as_dict()]}
    )
    response[CODE] = error.code
    return response


async def read_json(request: web.Request) -> Any:
    """The JSON body of a POST: 612 unless sent as application/json, 609 if malformed."""
    if request.content_type != "application/json":
        raise MarketoError("612", f"Content type '{request.content_type}' not supported")
    try:
        return load_json(await request.read() or b"null")
    except ValueError as exc:  # UnicodeDecodeError and too deep nesting included
        raise MarketoError("609") from exc


def list_param(params: Mapping[str, str], name: str, *, required: bool = False) -> list[str]:
    """A comma-separated parameter as a list (empty items dropped)."""
    items = [v.strip() for v in params.get(name, "").split(",") if v.strip()]
    if required and not items:
        raise MarketoError("1003", f"{name} not specified")
    return items


def int_param(params: Mapping[str, str], name: str, default: int, maximum: int) -> int:
    raw = params.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= maximum:
        raise MarketoError("1003", f"{name} must be an integer from 1 to {maximum}")
    return int(raw)


def encode_offset(offset: int) -> str:
    """The nextPageToken of a paged lead query: opaque to clients."""
    return base64.b32encode(f"{_OFFSET_PREFIX}{offset}".encode()).decode().rstrip("=")


def decode_offset(token: str | None) -> int:
    if not token:
        return 0
    try:
        text = base64.b32decode(token + "=" * (-len(token) % 8)).decode()
    except (ValueError, UnicodeDecodeError) as exc:
        raise MarketoError("1003", "Invalid nextPageToken") from exc
    if not text.startswith(_OFFSET_PREFIX) or not text[len(_OFFSET_PREFIX) :].isdigit():
        raise MarketoError("1003", "Invalid nextPageToken")
    return int(text[len(_OFFSET_PREFIX) :])
