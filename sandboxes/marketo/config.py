"""Settings of one Marketo sandbox: the vendor's published limits and the faults to inject.

Every default is the value in `API_NOTES.md` (Marketo REST API); tests shrink the limits to
stay fast. `MarketoConfig.from_options` builds one from flat, CLI-friendly options, so a
sandbox is configurable without writing code (`python -m sandboxes.marketo --help`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sandboxes.base import FaultPlan, config_from_options

__all__ = ["MarketoConfig"]


@dataclass(frozen=True)
class MarketoConfig:
    """A Marketo Engage instance as the sandbox plays it.

    Auth: `client_id` / `client_secret` are the only credentials accepted; a token lives
    `token_ttl_s`. Limits on data calls: `rate_calls` per rolling `rate_window_s` (606),
    `max_concurrent` in flight (615), `daily_quota` calls (607), `batch_max` records or
    filter values (1003), `payload_max_bytes` (HTTP 413), `uri_max_bytes` (HTTP 414).
    Population: `seed_people` people from `sandboxes.population.generate(.., seed)`.

    Faults: `faults` (seeded) answers `error_rate` of data calls with 604/608/611/713 and
    adds latency and timeouts; `token_expiry_s` silently invalidates every token that many
    seconds after it was issued (identity still reports the nominal lifetime, so a client
    sees 602 and must refresh); `late_file_rate` is the share of bulk exports that report
    Completed `late_file_s` before their file can be downloaded (HTTP 404 meanwhile);
    `export_fail_rate` is the share of bulk exports that end Failed;
    `refused_call_marker` makes a write call (custom activities) holding a record whose
    `primaryAttributeValue` contains it refused as a whole with 1003, as Marketo refuses a
    call for one record it cannot read (None: never).
    """

    client_id: str = "actions-sync"
    client_secret: str = "sandbox-secret"
    token_ttl_s: int = 3600
    rate_calls: int = 100
    rate_window_s: float = 20.0
    max_concurrent: int = 10
    daily_quota: int = 50_000
    batch_max: int = 300
    payload_max_bytes: int = 1_000_000
    uri_max_bytes: int = 8192
    seed_people: int = 0
    seed: int = 7
    faults: FaultPlan = field(default_factory=FaultPlan)
    token_expiry_s: float | None = None
    late_file_rate: float = 0.0
    late_file_s: float = 3.0
    export_fail_rate: float = 0.0
    # Bulk extract: a job spends at least this long Processing (the real one takes minutes).
    export_processing_s: float = 0.5
    export_max_running: int = 2
    export_max_queued: int = 10
    export_daily_bytes: int = 500_000_000
    export_window_days: int = 31
    # Rendered file chunks kept in memory for the download that follows (not Marketo's).
    export_cache_bytes: int = 256_000_000
    # Custom activity types: at most 10 types of at most 20 attributes each.
    max_activity_types: int = 10
    max_type_attributes: int = 20
    refused_call_marker: str | None = "[[refuse-call]]"

    @classmethod
    def from_options(cls, **options: Any) -> MarketoConfig:
        """Build from flat options (see `sandboxes.base.config_from_options`)."""
        return config_from_options(cls, **options)
