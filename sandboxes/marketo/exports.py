"""Bulk lead export jobs: their lifecycle and the limits Marketo puts on them.

Created -> (enqueue) Queued -> Processing -> Completed | Failed; Created, Queued and
Processing jobs may be Cancelled. At most `export_max_running` jobs process at once and
`export_max_queued` wait (1029 beyond); a day allows `export_daily_bytes` of files (1029
once spent). The date filter (`createdAt` or `updatedAt`, both ends inclusive, so a row on
the boundary of two adjacent windows is in both) spans at most `export_window_days`
(1003 beyond). The `ExportRunner` in `runner.py` moves jobs through their states.
Not thread-safe on its own: `MarketoState` holds the lock.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Literal

from sandboxes.marketo.config import MarketoConfig
from sandboxes.marketo.errors import MarketoError
from sandboxes.marketo.export_file import ExportFile
from sandboxes.marketo.fields import BY_NAME, iso, parse_iso

__all__ = ["ExportJob", "ExportJobs", "Status"]

Status = Literal["Created", "Queued", "Processing", "Completed", "Failed", "Cancelled"]
FILTER_FIELDS = ("createdAt", "updatedAt")
_IDS = uuid.UUID("6d61726b-6574-6f00-0000-73616e64626f")  # namespace of export ids


@dataclass
class ExportJob:
    export_id: str
    fields: list[str]
    headers: list[str]
    filter_field: str
    start: float
    end: float
    created_at: float
    status: Status = "Created"
    queued_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    file: ExportFile | None = None
    file_ready_at: float | None = None
    late_s: float | None = None  # set by the control route: the file lags this long
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "exportId": self.export_id,
            "format": "CSV",
            "status": self.status,
            "createdAt": iso(self.created_at),
        }
        for key, moment in (
            ("queuedAt", self.queued_at),
            ("startedAt", self.started_at),
            ("finishedAt", self.finished_at),
        ):
            if moment is not None:
                out[key] = iso(moment)
        if self.status == "Completed" and self.file is not None:
            out.update(
                numberOfRecords=self.file.records,
                fileSize=self.file.size,
                fileChecksum=self.file.checksum,
            )
        if self.error:
            out["errorMsg"] = self.error
        return out


class ExportJobs:
    def __init__(self, config: MarketoConfig) -> None:
        self.config = config
        self.bytes_used = 0
        self._jobs: dict[str, ExportJob] = {}

    def all(self) -> list[ExportJob]:
        return list(self._jobs.values())

    def get(self, export_id: str) -> ExportJob:
        job = self._jobs.get(export_id)
        if job is None:
            raise MarketoError("610", f"Export job '{export_id}' not found")
        return job

    def create(self, body: Any, now: float) -> ExportJob:
        fields, headers = _parse_fields(body)
        filter_field, start, end = self._parse_filter(body.get("filter"))
        export_id = str(uuid.uuid5(_IDS, str(len(self._jobs) + 1)))
        job = ExportJob(export_id, fields, headers, filter_field, start, end, now)
        self._jobs[export_id] = job
        return job

    def enqueue(self, export_id: str, now: float) -> ExportJob:
        job = self.get(export_id)
        if job.status != "Created":
            raise MarketoError("1003", f"Export job is {job.status}, not Created")
        if self.bytes_used >= self.config.export_daily_bytes:
            raise MarketoError("1029", "Export daily quota exceeded")
        if self._count("Queued") >= self.config.export_max_queued:
            raise MarketoError("1029", f"Too many jobs ({self.config.export_max_queued}) in queue")
        job.status, job.queued_at = "Queued", now
        return job

    def cancel(self, export_id: str, now: float) -> ExportJob:
        job = self.get(export_id)
        if job.status in ("Created", "Queued", "Processing"):
            job.status, job.finished_at = "Cancelled", now
        return job

    def start_next(self, now: float) -> ExportJob | None:
        """Move the oldest queued job to Processing when a slot is free."""
        if self._count("Processing") >= self.config.export_max_running:
            return None
        job = next((j for j in self._jobs.values() if j.status == "Queued"), None)
        if job is not None:
            job.status, job.started_at = "Processing", now
        return job

    def fail(self, job: ExportJob, now: float, reason: str = "Export failed") -> None:
        if job.status == "Processing":
            job.status, job.finished_at, job.error = "Failed", now, reason

    def finish(
        self, job: ExportJob, file: ExportFile, now: float, *, failed: bool, late: bool
    ) -> None:
        """End a Processing job (a job cancelled meanwhile stays Cancelled)."""
        if job.status != "Processing" or failed:
            file.release()
            self.fail(job, now)
            return
        job.status, job.finished_at, job.file = "Completed", now, file
        lag = job.late_s if job.late_s is not None else self.config.late_file_s if late else 0
        job.file_ready_at = now + lag
        self.bytes_used += file.size

    def delay_file(self, export_id: str, seconds: float, now: float) -> ExportJob:
        """Make the job's file answer 404 for `seconds` (from now, or from completion)."""
        job = self.get(export_id)
        if job.status == "Completed":
            job.file_ready_at = now + seconds
        else:
            job.late_s = seconds
        return job

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for job in self._jobs.values():
            out[job.status] = out.get(job.status, 0) + 1
        return out

    def _count(self, status: Status) -> int:
        return sum(1 for j in self._jobs.values() if j.status == status)

    def _parse_filter(self, body: Any) -> tuple[str, float, float]:
        if not isinstance(body, dict) or len(body) != 1 or next(iter(body)) not in FILTER_FIELDS:
            raise MarketoError("1003", "filter must hold exactly one of createdAt, updatedAt")
        name, window = next(iter(body.items()))
        try:
            start, end = parse_iso(window["startAt"]), parse_iso(window["endAt"])
        except (KeyError, TypeError, ValueError) as exc:
            raise MarketoError("1003", f"Invalid {name} startAt/endAt") from exc
        if end < start:
            raise MarketoError("1003", "endAt is before startAt")
        if end - start > self.config.export_window_days * 86400:
            raise MarketoError("1003", f"Date range exceeds {self.config.export_window_days} days")
        return name, start, end


def _parse_fields(body: Any) -> tuple[list[str], list[str]]:
    if not isinstance(body, dict) or not isinstance(body.get("fields"), list) or not body["fields"]:
        raise MarketoError("1003", "fields must be a non-empty list")
    if body.get("format", "CSV") != "CSV":
        raise MarketoError("1003", f"Unsupported format '{body['format']}'")
    fields = [str(name) for name in body["fields"]]
    unknown = [name for name in fields if name not in BY_NAME]
    if unknown:
        raise MarketoError("1006", f"Field '{unknown[0]}' not found")
    renames = body.get("columnHeaderNames") or {}
    return fields, [str(renames.get(name, name)) for name in fields]
