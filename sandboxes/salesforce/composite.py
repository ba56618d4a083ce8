"""`POST /composite`: up to 25 subrequests in one call, which counts as ONE API call.

    {"allOrNone": false, "compositeRequest": [{"method", "url", "referenceId", "body"}]}
 -> {"compositeResponse": [{"body", "httpHeaders", "httpStatusCode", "referenceId"}]}

At most `composite_max_heavy` (5) subrequests may be sObject Collections or queries. A
later subrequest may use an earlier answer through `@{referenceId.id}` or
`@{ref.records[0].Id}`. With `allOrNone=true` the first failing subrequest (HTTP >= 300)
rolls back every write of the call; the others answer 400 PROCESSING_HALTED.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from sandboxes.salesforce.calls import Call, Reply
from sandboxes.salesforce.errors import ApiError
from sandboxes.salesforce.state import Transaction

__all__ = ["run_composite"]

Dispatch = Callable[[Call], Reply]
_REFERENCE = re.compile(r"@\{([A-Za-z0-9_]+)((?:\.[A-Za-z0-9_]+|\[\d+\])*)\}")
_STEP = re.compile(r"\.([A-Za-z0-9_]+)|\[(\d+)\]")
_DATA_URL = re.compile(r"/services/data/(v\d+\.\d)/(.*)")
_HALTED = "The transaction was rolled back since another operation in the same transaction failed."


class _Unresolved(Exception):
    pass


def run_composite(call: Call, dispatch: Dispatch, is_heavy: Callable[[str, str], bool]) -> Reply:
    """Run the subrequests in order through `dispatch` (the router)."""
    subrequests, all_or_none = _validate(call, is_heavy)
    tx = Transaction(call.state, call.tx) if all_or_none else None
    results: list[dict[str, Any]] = []
    answers: dict[str, Any] = {}
    failed = False
    for sub in subrequests:
        if failed:
            results.append(_item(sub, Reply(400, _halted())))
            continue
        reply = _one(call, sub, answers, tx, dispatch)
        results.append(_item(sub, reply))
        if reply.status < 300:
            answers[sub["referenceId"]] = reply.body
        failed = all_or_none and reply.status >= 300
    if failed and tx is not None:
        tx.rollback()
        results = [
            {**r, "body": _halted(), "httpHeaders": {}, "httpStatusCode": 400}
            if r["httpStatusCode"] < 300
            else r
            for r in results
        ]
    return Reply(200, {"compositeResponse": results})


def _validate(
    call: Call, is_heavy: Callable[[str, str], bool]
) -> tuple[list[dict[str, Any]], bool]:
    body = call.json_object()
    subrequests = body.get("compositeRequest")
    all_or_none = body.get("allOrNone", False)
    if (
        not isinstance(subrequests, list)
        or not isinstance(all_or_none, bool)
        or not all(
            isinstance(s, dict)
            and isinstance(s.get("method"), str)
            and isinstance(s.get("url"), str)
            and isinstance(s.get("referenceId"), str)
            for s in subrequests
        )
    ):
        raise ApiError(
            400,
            "JSON_PARSER_ERROR",
            "compositeRequest must be a list of {method, url, referenceId, body} objects",
        )
    config = call.state.config
    if not subrequests or len(subrequests) > config.composite_max:
        raise ApiError(
            400,
            "LIMIT_EXCEEDED",
            f"A composite request takes 1 to "
            f"{config.composite_max} subrequests, not {len(subrequests)}",
        )
    heavy = sum(1 for s in subrequests if is_heavy(s["method"].upper(), _path(s["url"])))
    if heavy > config.composite_max_heavy:
        raise ApiError(
            400,
            "LIMIT_EXCEEDED",
            f"A composite request can hold at most "
            f"{config.composite_max_heavy} sObject Collections or query subrequests",
        )
    references = [s["referenceId"] for s in subrequests]
    if len(set(references)) != len(references):
        raise ApiError(400, "JSON_PARSER_ERROR", "Duplicate referenceId in compositeRequest")
    return subrequests, all_or_none


def _one(
    call: Call,
    sub: dict[str, Any],
    answers: dict[str, Any],
    tx: Transaction | None,
    dispatch: Dispatch,
) -> Reply:
    try:
        url = _resolve(sub["url"], answers)
        body = _resolve(sub.get("body"), answers)
    except _Unresolved as exc:
        return Reply(400, [{"errorCode": "PROCESSING_HALTED", "message": str(exc)}])
    match = _DATA_URL.fullmatch(urlsplit(url).path)
    if match is None or unquote(match.group(2)).rstrip("/") == "composite":
        return Reply(
            400,
            [{"errorCode": "INVALID_INPUT", "message": f"Invalid subrequest url: {sub['url']}"}],
        )
    subcall = replace(
        call,
        version=match.group(1),
        method=sub["method"].upper(),
        path=unquote(match.group(2)),
        query=dict(parse_qsl(urlsplit(url).query)),
        body=body,
        headers={**call.headers, **(sub.get("httpHeaders") or {})},
        params={},
        tx=tx or call.tx,
        in_composite=True,
    )
    return dispatch(subcall)


def _item(sub: dict[str, Any], reply: Reply) -> dict[str, Any]:
    return {
        "body": reply.body,
        "httpHeaders": dict(reply.headers),
        "httpStatusCode": reply.status,
        "referenceId": sub["referenceId"],
    }


def _halted() -> list[dict[str, str]]:
    return [{"errorCode": "PROCESSING_HALTED", "message": _HALTED}]


def _path(url: str) -> str:
    match = _DATA_URL.fullmatch(urlsplit(url).path)
    return unquote(match.group(2)) if match else ""


def _resolve(value: Any, answers: dict[str, Any]) -> Any:
    """`value` with every `@{ref.path}` replaced by what the earlier answer holds there."""
    if isinstance(value, dict):
        return {k: _resolve(v, answers) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, answers) for v in value]
    if not isinstance(value, str) or "@{" not in value:
        return value
    whole = _REFERENCE.fullmatch(value)
    if whole:
        return _lookup(whole, answers)
    return _REFERENCE.sub(lambda m: str(_lookup(m, answers)), value)


def _lookup(match: re.Match[str], answers: dict[str, Any]) -> Any:
    reference, path = match.group(1), match.group(2)
    if reference not in answers:
        raise _Unresolved(
            f"Invalid reference specified. No value for {reference} found: it "
            "failed or has not run yet"
        )
    current = answers[reference]
    for step in _STEP.finditer(path):
        name, index = step.group(1), step.group(2)
        try:
            current = current[int(index)] if index is not None else current[name]
        except (KeyError, IndexError, TypeError) as exc:
            raise _Unresolved(
                f"Invalid reference specified. No value for {reference}{path} found"
            ) from exc
    return current
