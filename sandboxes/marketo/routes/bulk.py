"""Bulk lead extract: the initial sync reads people through it (SPEC S6).

    POST /bulk/v1/leads/export/create.json       {"fields","format":"CSV","filter":{..}}
    POST /bulk/v1/leads/export/{id}/enqueue.json
    GET  /bulk/v1/leads/export/{id}/status.json
    POST /bulk/v1/leads/export/{id}/cancel.json
    GET  /bulk/v1/leads/export/{id}/file.json     CSV; `Range: bytes=a-b` answers 206
    GET  /bulk/v1/leads/export.json[?status=..]   the jobs

Marketo quirk: a job may report Completed before its file exists; file.json answers
HTTP 404 meanwhile (and for any job not Completed), so clients retry the download.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from sandboxes.marketo.envelope import list_param, ok, read_json
from sandboxes.marketo.export_file import ExportFile
from sandboxes.marketo.keys import STATE_KEY

__all__ = ["byte_range", "routes"]

routes = web.RouteTableDef()
BASE = "/bulk/v1/leads/export"


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) byte of a single `bytes=` range, clipped to `size`; None: whole file.

    Raises HTTPRequestRangeNotSatisfiable (416) for a range that starts past the end.
    """
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    first, _, last = header[len("bytes=") :].strip().partition("-")
    try:
        if not first:  # a suffix: the last N bytes
            return max(size - int(last), 0), size - 1
        start, end = int(first), int(last) if last else size - 1
    except ValueError:
        return None
    if start >= size or end < start:
        raise web.HTTPRequestRangeNotSatisfiable(headers={"Content-Range": f"bytes */{size}"})
    return start, min(end, size - 1)


@routes.post(f"{BASE}/create.json")
async def create(request: web.Request) -> web.Response:
    state, body = request.app[STATE_KEY], await read_json(request)
    with state.lock:
        return ok([state.exports.create(body, state.clock()).as_dict()])


@routes.post(f"{BASE}/{{export_id}}/enqueue.json")
async def enqueue(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    with state.lock:
        return ok([state.exports.enqueue(request.match_info["export_id"], state.clock()).as_dict()])


@routes.post(f"{BASE}/{{export_id}}/cancel.json")
async def cancel(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    with state.lock:
        return ok([state.exports.cancel(request.match_info["export_id"], state.clock()).as_dict()])


@routes.get(f"{BASE}/{{export_id}}/status.json")
async def status(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    with state.lock:
        return ok([state.exports.get(request.match_info["export_id"]).as_dict()])


@routes.get(f"{BASE}.json")
async def jobs(request: web.Request) -> web.Response:
    state, wanted = request.app[STATE_KEY], set(list_param(request.query, "status"))
    with state.lock:
        return ok([j.as_dict() for j in state.exports.all() if not wanted or j.status in wanted])


@routes.get(f"{BASE}/{{export_id}}/file.json")
async def file(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    with state.lock:
        job = state.exports.get(request.match_info["export_id"])
        ready = job.status == "Completed" and (job.file_ready_at or 0) <= state.clock()
        found = job.file if ready else None
    if found is None:
        return web.Response(status=404, text="Export file not available yet")
    return await _stream(request, found)


async def _stream(request: web.Request, found: ExportFile) -> web.StreamResponse:
    """Send bytes `first..last`, rendering chunks off the event loop as they are needed."""
    wanted = byte_range(request.headers.get("Range"), found.size)
    first, last = wanted or (0, found.size - 1)
    response = web.StreamResponse(
        status=206 if wanted else 200,
        headers={"Content-Type": "text/csv; charset=utf-8", "Accept-Ranges": "bytes"},
    )
    if wanted:
        response.headers["Content-Range"] = f"bytes {first}-{last}/{found.size}"
    response.content_length = last - first + 1
    await response.prepare(request)
    loop = asyncio.get_running_loop()
    for index, start, end in found.pieces(first, last):
        data = await loop.run_in_executor(None, found.chunk, index)
        await response.write(data[start:end])
    await response.write_eof()
    return response
