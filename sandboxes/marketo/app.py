"""Builds the Marketo sandbox application."""

from __future__ import annotations

from aiohttp import web

from sandboxes.base import Faults, Journal, add_control_routes
from sandboxes.marketo.config import MarketoConfig
from sandboxes.marketo.guard import guard_middleware
from sandboxes.marketo.keys import STATE_KEY
from sandboxes.marketo.routes import ALL
from sandboxes.marketo.runner import ExportRunner
from sandboxes.marketo.state import MarketoState

__all__ = ["create_app"]

_LINE_SLACK = 8  # aiohttp must read URIs longer than the limit, to answer 414 itself


def create_app(
    config: MarketoConfig | None = None, state: MarketoState | None = None
) -> web.Application:
    """A Marketo sandbox; pass `state` to share or pre-seed one (tests do)."""
    config = config or (state.config if state else MarketoConfig())
    state = state or MarketoState(config)
    line_max = max(config.uri_max_bytes * _LINE_SLACK, 65536)
    app = web.Application(
        client_max_size=config.payload_max_bytes,  # beyond: HTTP 413 from aiohttp itself
        handler_args={"max_line_size": line_max, "max_field_size": line_max},
    )
    faults = Faults(config.faults)
    add_control_routes(app, Journal(), faults)  # first: its journal sees every answer
    app.middlewares.append(guard_middleware(state, faults))
    app[STATE_KEY] = state
    app.cleanup_ctx.append(ExportRunner(state, faults).cleanup_ctx)
    for routes in ALL:
        app.add_routes(routes)
    return app
