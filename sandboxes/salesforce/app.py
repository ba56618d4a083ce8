"""The Salesforce sandbox as an aiohttp application.

    POST /services/oauth2/token            client credentials -> access_token, instance_url
    GET  /services/data                    API versions
    *    /services/data/vXX.X/...          the data API (`routes.py`)

Every data call goes through the same gate, in Salesforce's order: fault latency, API
version (404), URI length (414), session (401 INVALID_SESSION_ID), daily budget (403
REQUEST_LIMIT_EXCEEDED, not counted), injected 500/503 SERVER_UNAVAILABLE (counted), then
the handler. Every data answer carries `Sforce-Limit-Info: api-usage=used/limit`; none
carries Retry-After.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
from typing import Any

from aiohttp import web

from sandboxes.base import CODE, Faults, Journal, add_control_routes, load_json
from sandboxes.salesforce.calls import Call, Reply
from sandboxes.salesforce.config import SalesforceConfig
from sandboxes.salesforce.control import add_salesforce_control_routes
from sandboxes.salesforce.errors import ApiError
from sandboxes.salesforce.humans import seed_people
from sandboxes.salesforce.routes import dispatch
from sandboxes.salesforce.state import SalesforceState

__all__ = ["STATE_KEY", "create_app"]

_log = logging.getLogger(__name__)
STATE_KEY = web.AppKey("salesforce_state", SalesforceState)
_VERSION = re.compile(r"v(\d+)\.(\d)")
_BODY_MAX = 64 * 1024 * 1024  # 200 Tasks with 32,000-character descriptions fit easily


def create_app(
    config: SalesforceConfig | None = None, state: SalesforceState | None = None
) -> web.Application:
    """A Salesforce sandbox; `state` (default: a new, empty org for `config`) is exposed as
    `app[STATE_KEY]` for in-process tests. `config.seed_people` people are loaded at once.
    When both are given, `state` must have been built with `config`."""
    if config is not None and state is not None and state.config != config:
        raise ValueError("create_app: state was built with another config")
    state = state or SalesforceState(config)
    config = state.config
    app = web.Application(
        client_max_size=_BODY_MAX,
        handler_args={"max_line_size": config.uri_max_bytes + 8192, "max_field_size": 16_384},
    )
    faults = Faults(config.faults)
    add_control_routes(app, Journal(), faults)
    app[STATE_KEY] = state
    gate = _Gate(state, faults)
    app.router.add_post("/services/oauth2/token", gate.token)
    app.router.add_get("/services/data", gate.versions)
    app.router.add_get("/services/data/", gate.versions)
    app.router.add_route("*", "/services/data/{version}/{tail:.*}", gate.data)
    add_salesforce_control_routes(app, state)
    if config.seed_people:
        seed_people(state, config.seed_people, config.seed)
    return app


class _Gate:
    """Authentication, limits and faults in front of the data API."""

    def __init__(self, state: SalesforceState, faults: Faults) -> None:
        self.state = state
        self.faults = faults

    async def token(self, request: web.Request) -> web.Response:
        await self.faults.delay()
        form = await request.post()
        params = {**request.query, **{k: str(v) for k, v in form.items()}}
        config = self.state.config
        if params.get("grant_type") != "client_credentials":
            return _oauth_error("unsupported_grant_type", "grant type not supported")
        client_id, secret = params.get("client_id", ""), params.get("client_secret", "")
        user = config.api_users().get((client_id, secret))
        if user is None:
            return _oauth_error("invalid_client", "invalid client credentials")
        return web.json_response(self._session(request, user, secret))

    def _session(self, request: web.Request, user: str, secret: str) -> dict[str, Any]:
        config = self.state.config
        instance = config.instance_url or f"{request.scheme}://{request.host}"
        issued_at = str(int(self.state.clock().timestamp() * 1000))
        identity = f"{instance}/id/{config.org_id}/{user}"  # clients learn who they are here
        digest = hmac.new(secret.encode(), (identity + issued_at).encode(), hashlib.sha256).digest()
        return {
            "access_token": self.state.issue_session(user),
            "instance_url": instance,
            "id": identity,
            "token_type": "Bearer",
            "issued_at": issued_at,
            "signature": base64.b64encode(digest).decode(),
            "scope": "api",
        }

    async def versions(self, _: web.Request) -> web.Response:
        version = self.state.config.api_version
        return web.json_response(
            [
                {
                    "label": "Sandbox",
                    "url": f"/services/data/{version}",
                    "version": version.lstrip("v"),
                }
            ]
        )

    async def data(self, request: web.Request) -> web.Response:
        await self.faults.delay()
        try:
            call = await self._admit(request)
            reply = dispatch(call)
        except ApiError as exc:
            reply = Reply.error(exc)
        except Exception as exc:  # a sandbox bug: answer like Salesforce, keep the trace
            _log.exception("Salesforce sandbox failed on %s %s", request.method, request.path)
            reply = Reply(500, [{"errorCode": "UNKNOWN_EXCEPTION", "message": repr(exc)}])
        return self._respond(reply)

    async def _admit(self, request: web.Request) -> Call:
        state, config = self.state, self.state.config
        version = request.match_info["version"]
        match = _VERSION.fullmatch(version)
        if not match or not 20.0 <= float(version[1:]) <= config.version_number():
            raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
        if len(request.raw_path) > config.uri_max_bytes:
            raise ApiError(
                414, "URI_TOO_LONG", f"The request URI is longer than {config.uri_max_bytes} bytes"
            )
        user = self._authenticate(request)
        with state.lock:
            if not state.budget.take():
                raise ApiError(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
        self._inject_server_error()
        return Call(
            state,
            version,
            request.method,
            request.match_info["tail"],
            dict(request.query),
            await _json(request),
            user,
            dict(request.headers),
        )

    def _authenticate(self, request: web.Request) -> str:
        """The user the request's session acts as (its writes carry it)."""
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() not in ("bearer", "oauth") or not token.strip():
            raise ApiError(401, "INVALID_AUTH_HEADER", "INVALID_HEADER_TYPE")
        user = self.state.session_user(token.strip())
        if user is None:
            raise ApiError(401, "INVALID_SESSION_ID", "Session expired or invalid")
        return user

    def _inject_server_error(self) -> None:
        if self.faults.roll(self.faults.plan.error_rate):
            status = 503 if self.faults.roll(0.5) else 500
            raise ApiError(
                status,
                "SERVER_UNAVAILABLE",
                "Server temporarily unavailable; please retry (injected by the sandbox)",
            )

    def _respond(self, reply: Reply) -> web.Response:
        budget = self.state.budget
        with self.state.lock:
            usage = f"api-usage={budget.used}/{budget.limit}"
        headers = {"Sforce-Limit-Info": usage, **reply.headers}
        if reply.body is None and reply.status in (204, 304):
            response = web.Response(status=reply.status, headers=headers)
        else:
            response = web.Response(
                status=reply.status,
                headers=headers,
                text=json.dumps(reply.body),
                content_type="application/json",
                charset="UTF-8",
            )
        if reply.code:
            response[CODE] = reply.code
        return response


def _oauth_error(error: str, description: str) -> web.Response:
    response = web.json_response({"error": error, "error_description": description}, status=400)
    response[CODE] = error
    return response


async def _json(request: web.Request) -> Any:
    if not request.can_read_body:
        return None
    raw = await request.read()
    if not raw.strip():
        return None
    try:
        return load_json(raw)
    except json.JSONDecodeError as exc:
        raise ApiError(
            400,
            "JSON_PARSER_ERROR",
            f"Unexpected character at [line:{exc.lineno}, column:{exc.colno}]",
        ) from exc
    except UnicodeDecodeError as exc:
        raise ApiError(400, "JSON_PARSER_ERROR", "The request body is not UTF-8") from exc
    except ValueError as exc:  # nested too deeply, a number of thousands of digits
        raise ApiError(400, "JSON_PARSER_ERROR", str(exc)) from exc
