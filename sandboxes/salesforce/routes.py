"""The data API's route table and the dispatcher shared by HTTP calls and composite.

Paths are matched after `/services/data/vXX.X/`. A path that exists under another method
answers 405 METHOD_NOT_ALLOWED, an unknown one 404 NOT_FOUND. `heavy` routes (sObject
Collections, queries) are the ones a composite call may hold at most five of.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from sandboxes.salesforce import sobject_collections as collections
from sandboxes.salesforce import sobjects
from sandboxes.salesforce.calls import Call, Reply
from sandboxes.salesforce.composite import run_composite
from sandboxes.salesforce.errors import ApiError
from sandboxes.salesforce.queries import next_page, run_query

__all__ = ["ROUTES", "Route", "dispatch", "is_heavy"]

Handler = Callable[[Call], Reply]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    heavy: bool = False


def _query(include_deleted: bool) -> Handler:
    def handler(call: Call) -> Reply:
        options = call.headers.get("Sforce-Query-Options")
        return Reply(
            200, run_query(call.state, call.query.get("q"), call.version, include_deleted, options)
        )

    return handler


def _next_page(call: Call) -> Reply:
    return Reply(200, next_page(call.state, call.params["token"], call.version))


def _limits(call: Call) -> Reply:
    budget = call.state.budget
    return Reply(
        200,
        {
            "DailyApiRequests": {
                "Max": budget.limit,
                "Remaining": max(0, budget.limit - budget.used),
            }
        },
    )


def _composite(call: Call) -> Reply:
    if call.in_composite:
        raise ApiError(400, "INVALID_INPUT", "composite cannot be nested")
    return run_composite(call, dispatch, is_heavy)


_NAME = r"(?P<sobject>[A-Za-z0-9_]+)"


def _route(method: str, pattern: str, handler: Handler, heavy: bool = False) -> Route:
    return Route(method, re.compile(pattern + "/?"), handler, heavy)


ROUTES: tuple[Route, ...] = (
    _route("GET", r"query", _query(False), heavy=True),
    _route("GET", r"queryAll", _query(True), heavy=True),
    _route("GET", r"(?:query|queryAll)/(?P<token>01g[^/]+)", _next_page, heavy=True),
    _route("GET", r"limits", _limits),
    _route("POST", r"composite", _composite),
    _route("POST", r"composite/sobjects", collections.create_collection, heavy=True),
    _route("PATCH", r"composite/sobjects", collections.update_collection, heavy=True),
    _route("DELETE", r"composite/sobjects", collections.delete_collection, heavy=True),
    _route(
        "PATCH",
        rf"composite/sobjects/{_NAME}/(?P<field>[A-Za-z0-9_]+)",
        collections.upsert_collection,
        heavy=True,
    ),
    _route("GET", rf"sobjects/{_NAME}/describe", sobjects.describe),
    _route("GET", rf"sobjects/{_NAME}/deleted", sobjects.deleted),
    _route("GET", rf"sobjects/{_NAME}/updated", sobjects.updated),
    _route("POST", rf"sobjects/{_NAME}", sobjects.create_one),
    _route("GET", rf"sobjects/{_NAME}/(?P<id>[A-Za-z0-9]+)", sobjects.get_one),
    _route("PATCH", rf"sobjects/{_NAME}/(?P<id>[A-Za-z0-9]+)", sobjects.update_one),
    _route("DELETE", rf"sobjects/{_NAME}/(?P<id>[A-Za-z0-9]+)", sobjects.delete_one),
    _route(
        "GET",
        rf"sobjects/{_NAME}/(?P<field>[A-Za-z0-9_]+)/(?P<value>[^/]+)",
        sobjects.get_by_external,
    ),
    _route(
        "PATCH", rf"sobjects/{_NAME}/(?P<field>[A-Za-z0-9_]+)/(?P<value>[^/]+)", sobjects.upsert_one
    ),
)


def dispatch(call: Call) -> Reply:
    """Answer `call` from the route table; ApiError becomes its error answer."""
    allowed: list[str] = []
    for route in ROUTES:
        match = route.pattern.fullmatch(call.path)
        if match is None:
            continue
        if route.method != call.method:
            allowed.append(route.method)
            continue
        try:
            with call.state.lock:
                return route.handler(call.with_params(match.groupdict()))
        except ApiError as exc:
            return Reply.error(exc)
    if allowed:
        return Reply(
            405,
            [
                {
                    "errorCode": "METHOD_NOT_ALLOWED",
                    "message": f"HTTP Method "
                    f"'{call.method}' not allowed. Allowed are {','.join(allowed)}",
                }
            ],
        )
    return Reply.error(ApiError(404, "NOT_FOUND", "The requested resource does not exist"))


def is_heavy(method: str, path: str) -> bool:
    """Whether `method path` is an sObject Collections or query call (composite's limit)."""
    return any(r.method == method and r.heavy and r.pattern.fullmatch(path) for r in ROUTES)
