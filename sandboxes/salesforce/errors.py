"""Salesforce's error shapes and the two exceptions the sandbox raises to answer with them.

A call-level failure is a JSON array `[{"message","errorCode","fields"}]` with an HTTP
status (`ApiError`). A record-level failure inside an sObject Collections answer is an item
`{"success":false,"errors":[{"statusCode","message","fields"}]}` under HTTP 200
(`RecordError`); on a single-record endpoint the same problem becomes a call-level 400.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["ApiError", "RecordError", "problem"]


def problem(code: str, message: str, fields: Sequence[str] = ()) -> dict[str, Any]:
    """One record-level error: `{"statusCode", "message", "fields"}`."""
    return {"statusCode": code, "message": message, "fields": list(fields)}


class ApiError(Exception):
    """A call-level failure answered with `status` and `[{"message","errorCode","fields"}]`."""

    def __init__(
        self, status: int, code: str, message: str, fields: Sequence[str] | None = None
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        item: dict[str, Any] = {"message": message, "errorCode": code}
        if fields is not None:
            item["fields"] = list(fields)
        self.items = [item]

    def body(self) -> list[dict[str, Any]]:
        return self.items


class RecordError(Exception):
    """One record could not be written; `errors` are `problem()` dicts."""

    def __init__(self, *errors: dict[str, Any]) -> None:
        super().__init__("; ".join(f"{e['statusCode']}: {e['message']}" for e in errors))
        self.errors = list(errors)

    @classmethod
    def of(cls, code: str, message: str, fields: Sequence[str] = ()) -> RecordError:
        return cls(problem(code, message, fields))

    @property
    def code(self) -> str:
        return str(self.errors[0]["statusCode"])

    def as_api_error(self, status: int = 400) -> ApiError:
        """The same problems on a single-record endpoint (`statusCode` becomes `errorCode`)."""
        first = self.errors[0]
        error = ApiError(status, first["statusCode"], first["message"], first["fields"])
        error.items = [
            {"message": e["message"], "errorCode": e["statusCode"], "fields": e["fields"]}
            for e in self.errors
        ]
        return error
