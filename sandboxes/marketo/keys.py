"""Where a Marketo sandbox app keeps its parts (aiohttp `AppKey`s)."""

from __future__ import annotations

from aiohttp import web

from sandboxes.marketo.state import MarketoState

__all__ = ["STATE_KEY"]

STATE_KEY = web.AppKey("marketo_state", MarketoState)
