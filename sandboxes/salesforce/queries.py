"""`/query`, `/queryAll` and their cursors: SOQL over the org, a page at a time.

`queryAll` also answers deleted rows (`IsDeleted = true`) while the recycle bin keeps them
(`deleted_horizon_days`); `query` never does.

A page holds at most `query_page_size` records (Salesforce: 2000), or fewer when the
client sends `Sforce-Query-Options: batchSize=N` (200..2000). When more remain, the answer
carries `nextRecordsUrl: /services/data/vXX.X/query/01g...-2000` and `done:false`; the
cursor lives `cursor_ttl_s` idle and only `max_open_cursors` stay open at once (the oldest
is dropped, as Salesforce does past its per-user limit) -> 400 INVALID_QUERY_LOCATOR.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from sandboxes.salesforce.errors import ApiError
from sandboxes.salesforce.soql import SoqlError, parse
from sandboxes.salesforce.soql_eval import compile_query
from sandboxes.salesforce.state import Cursor, SalesforceState

__all__ = ["next_page", "run_query", "sobject_row"]

_BATCH = re.compile(r"batchSize\s*=\s*(\d+)", re.IGNORECASE)
_LOCATOR = re.compile(r"(01g[0-9A-Za-z]+)-(\d+)")


def run_query(
    state: SalesforceState,
    soql: str | None,
    version: str,
    include_deleted: bool,
    options: str | None = None,
) -> dict[str, Any]:
    """The first page of `soql`; deleted rows only for `queryAll`."""
    if not soql:
        raise ApiError(400, "MALFORMED_QUERY", "A query string has to be specified")
    try:
        plan = compile_query(parse(soql), state.schemas)
    except SoqlError as exc:
        raise ApiError(400, exc.code, exc.message) from exc
    with state.lock:
        table = state.records[plan.sobject].values()
        purged = state.recycled_since()  # emptied from the recycle bin: gone for queryAll too
        source = (
            (r for r in table if not r["IsDeleted"] or r["SystemModstamp"] >= purged)
            if include_deleted
            else (r for r in table if not r["IsDeleted"])
        )
        rows = plan.run(source)
        if plan.is_count:
            return {"totalSize": len(rows), "done": True, "records": []}
        cursor = Cursor(plan.sobject, plan.fields, rows, _page_size(state, options), state.clock())
        return _page(state, cursor, None, 0, version)


def next_page(state: SalesforceState, token: str, version: str) -> dict[str, Any]:
    """The page `token` (`01g...-2000`) of an open cursor."""
    match = _LOCATOR.fullmatch(token)
    cursor = state.cursor(match.group(1)) if match else None
    if match is None or cursor is None:
        raise ApiError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
    with state.lock:
        return _page(state, cursor, match.group(1), int(match.group(2)), version)


def sobject_row(
    sobject: str, record: Mapping[str, Any], fields: list[str] | None, version: str
) -> dict[str, Any]:
    """A record as the REST API answers it, `attributes` first."""
    row: dict[str, Any] = {
        "attributes": {
            "type": sobject,
            "url": f"/services/data/{version}/sobjects/{sobject}/{record['Id']}",
        }
    }
    names = fields if fields is not None else list(record)
    for name in names:
        row[name] = record.get(name)
    return row


def _page(
    state: SalesforceState, cursor: Cursor, locator: str | None, offset: int, version: str
) -> dict[str, Any]:
    end = offset + cursor.page_size
    records = [
        sobject_row(cursor.sobject, r, cursor.fields, version) for r in cursor.rows[offset:end]
    ]
    answer: dict[str, Any] = {"totalSize": len(cursor.rows), "done": end >= len(cursor.rows)}
    if answer["done"]:
        if locator:
            state.cursors.pop(locator, None)
    else:
        locator = locator or state.open_cursor(cursor)
        answer["nextRecordsUrl"] = f"/services/data/{version}/query/{locator}-{end}"
    answer["records"] = records
    return answer


def _page_size(state: SalesforceState, options: str | None) -> int:
    size = state.config.query_page_size
    match = _BATCH.search(options or "")
    if match:
        size = min(size, max(200, min(2000, int(match.group(1)))))
    return size
