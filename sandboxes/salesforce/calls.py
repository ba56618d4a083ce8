"""One REST data call as the handlers see it, and their answer.

The same `Call` -> `Reply` handlers serve HTTP requests (`app.py`) and the subrequests of a
composite call (`composite.py`), so a subrequest behaves exactly like the call it stands
for, minus authentication and the API budget, which the composite call paid once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from sandboxes.salesforce.errors import ApiError
from sandboxes.salesforce.schema import SObjectSchema
from sandboxes.salesforce.state import SalesforceState, Transaction
from sandboxes.salesforce.writes import Writer

__all__ = ["Call", "Reply", "not_found"]


def not_found(message: str = "The requested resource does not exist") -> ApiError:
    return ApiError(404, "NOT_FOUND", message)


@dataclass(frozen=True)
class Reply:
    """Status, JSON body (None: no body) and extra headers of one answer."""

    status: int
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def code(self) -> str | None:
        """The Salesforce error code carried by an error answer, for the journal."""
        if self.status >= 300 and isinstance(self.body, list) and self.body:
            first = self.body[0]
            if isinstance(first, dict):
                return first.get("errorCode")
        return None

    @classmethod
    def error(cls, exc: ApiError) -> Reply:
        return cls(exc.status, exc.body())


@dataclass(frozen=True)
class Call:
    """A data call: `path` is what follows `/services/data/vXX.X/`, `params` the route's
    named groups, `tx` the allOrNone transaction of an enclosing composite call."""

    state: SalesforceState
    version: str
    method: str
    path: str
    query: Mapping[str, str]
    body: Any
    user: str
    headers: Mapping[str, str] = field(default_factory=dict)
    params: Mapping[str, str] = field(default_factory=dict)
    tx: Transaction | None = None
    in_composite: bool = False

    def with_params(self, params: Mapping[str, str]) -> Call:
        return replace(self, params=params)

    def writer(self) -> Writer:
        return Writer.for_call(self.state, self.user, self.tx)

    def flag(self, name: str, default: bool = False) -> bool:
        """A boolean query parameter (`allOrNone=true`)."""
        value = self.query.get(name)
        return default if value is None else value.lower() == "true"

    def schema(self, key: str = "sobject") -> SObjectSchema:
        """The object named by the route parameter `key` (any letter case), else 404."""
        name = self.params.get(key, "").lower()
        for schema in self.state.schemas.values():
            if schema.name.lower() == name:
                return schema
        raise not_found()

    def url(self, sobject: str, record_id: str) -> str:
        return f"/services/data/{self.version}/sobjects/{sobject}/{record_id}"

    def json_object(self) -> dict[str, Any]:
        """The body, which must be a JSON object."""
        if not isinstance(self.body, dict):
            raise ApiError(400, "JSON_PARSER_ERROR", "The request body must be a JSON object")
        return self.body
