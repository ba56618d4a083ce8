"""The sandbox's HTTP routes, one module per area of Marketo's API (plus the controls)."""

from __future__ import annotations

from aiohttp import web

from sandboxes.marketo.routes import activities, bulk, control, identity, leads

__all__ = ["ALL"]

ALL: tuple[web.RouteTableDef, ...] = (
    identity.routes,
    leads.routes,
    activities.routes,
    bulk.routes,
    control.routes,
)
