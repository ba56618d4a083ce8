"""Settings of one Salesforce sandbox: the org it plays, its limits and the faults to inject.

Every default is the value in `API_NOTES.md` (Salesforce REST API); tests shrink the limits
to stay fast. `SalesforceConfig.from_options` builds one from flat, CLI-friendly options, so
a sandbox is configurable without writing code. Most fields can also be changed on a
running sandbox through `POST /_sandbox/salesforce/config`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from sandboxes.base import FaultPlan, config_from_options
from sandboxes.sfdc_ids import full_id, is_id

__all__ = ["SalesforceConfig"]


@dataclass(frozen=True)
class SalesforceConfig:
    """A Salesforce org as the sandbox plays it.

    Auth: OAuth client credentials `client_id` / `client_secret`; `instance_url` overrides
    the URL handed out by the token endpoint (default: the base URL the client called).
    Records written with an OAuth token carry `integration_user_id` in `LastModifiedById`;
    edits made through the control routes carry `human_user_id` (or the user they name).

    Limits: `daily_budget` API calls per rolling 24 h (403 REQUEST_LIMIT_EXCEEDED beyond),
    `collection_max` records per sObject Collections call, `composite_max` subrequests per
    composite call of which `composite_max_heavy` collections or queries, `query_page_size`
    records per query page (Salesforce: 2000; the `Sforce-Query-Options: batchSize=N`
    header asks for less), `max_open_cursors` query cursors alive at once (the oldest is
    dropped beyond), `cursor_ttl_s` idle seconds before a cursor expires, `deleted_horizon_days`
    how long deleted records stay in the recycle bin (queryAll sees them, `/deleted/` may
    look back that far), `updated_horizon_days` how far back `/updated/` may look,
    `replication_id_limit` ids one `/updated/` or `/deleted/` answer may hold
    (EXCEEDED_ID_LIMIT beyond), `uri_max_bytes` (HTTP 414 above).

    Users: `users` adds API users, each `CLIENT_ID:CLIENT_SECRET:USER_ID` (15 or 18
    characters, `005...`): a client logging in with those credentials acts as that person,
    so its writes carry the user id in `LastModifiedById` (and the token answer's `id` URL
    ends in it), as a person's integration or a script would.

    Org shape: `opt_out_field` is the admin-chosen custom opt-out checkbox on Lead and
    Contact (SPEC S9; None for none); `task_external_id_field` the Task external id used for
    idempotent upserts; `external_id_unique` makes it a unique field (duplicates are then
    refused with DUPLICATE_VALUE instead of producing HTTP 300 on upsert);
    `invalid_subject_marker` makes a Task whose Subject contains it fail with
    FIELD_CUSTOM_VALIDATION_EXCEPTION, as a customer's validation rule would;
    `refused_call_marker` makes an sObject Collections write holding a record with a
    string value that contains it fail as a whole (HTTP 400 JSON_PARSER_ERROR), as
    Salesforce refuses a request for one value it cannot deserialize.

    Population: `seed_people` people from `sandboxes.population.generate(.., seed)` at start.

    Faults: `faults` answers `error_rate` of data calls with 500/503 SERVER_UNAVAILABLE and
    adds latency and timeouts; `session_ttl_s` expires every session that many seconds
    after it was issued (None: sessions never expire); `lock_error_rate` is the share of
    written records (`lock_error_scope="record"`) or of write calls (`"request"`, every
    record of the call fails) refused with UNABLE_TO_LOCK_ROW. `late_commit_rate` is the
    share of write calls (API or people's) committed late: their records get a
    SystemModstamp `late_commit_s` in the past, older than rows already visible, as a long
    transaction's rows do in Salesforce. Draws come from streams seeded with `faults.seed`
    (`--fault-seed`), so a run repeats.
    """

    client_id: str = "actions-sync"
    client_secret: str = "sandbox-secret"
    api_version: str = "v62.0"
    instance_url: str | None = None
    org_id: str = "00D000000000001AAA"
    # 18 characters, like every Salesforce id; echo prevention keys on it (API_NOTES.md).
    integration_user_id: str = "0050000000000INTEG"
    human_user_id: str = "0050000000000HUMAN"
    daily_budget: int = 100_000
    collection_max: int = 200
    composite_max: int = 25
    composite_max_heavy: int = 5
    query_page_size: int = 2000
    max_open_cursors: int = 10
    cursor_ttl_s: float = 900.0
    deleted_horizon_days: int = 15
    updated_horizon_days: int = 30
    replication_id_limit: int = 600_000
    uri_max_bytes: int = 16_384
    opt_out_field: str | None = "ActionsSync_Opt_Out__c"
    task_external_id_field: str = "ActionsSync_Id__c"
    external_id_unique: bool = False
    invalid_subject_marker: str | None = "[[invalid]]"
    refused_call_marker: str | None = "[[refuse-call]]"
    seed_people: int = 0
    seed: int = 7
    faults: FaultPlan = field(default_factory=FaultPlan)
    session_ttl_s: float | None = None
    lock_error_rate: float = 0.0
    lock_error_scope: Literal["record", "request"] = "record"
    late_commit_rate: float = 0.0
    late_commit_s: float = 5.0
    users: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "users", tuple(self.users))  # JSON options give lists
        problems = [_user_problem(u) for u in self.users if _user_problem(u)]
        if self.lock_error_scope not in ("record", "request"):
            problems.append(
                f"lock_error_scope must be record or request, not {self.lock_error_scope!r}"
            )
        for name in ("lock_error_rate", "late_commit_rate"):
            if not 0 <= getattr(self, name) <= 1:
                problems.append(f"{name} must be between 0 and 1")
        for name in ("integration_user_id", "human_user_id"):
            value = getattr(self, name)
            if len(value) != 18 or not value.startswith("005") or not value.isalnum():
                problems.append(f"{name} must be an 18-character user id (005...)")
        if not self.api_version.startswith("v"):
            problems.append(f"api_version must look like v62.0, not {self.api_version!r}")
        for name in (
            "daily_budget",
            "collection_max",
            "composite_max",
            "query_page_size",
            "max_open_cursors",
            "deleted_horizon_days",
            "updated_horizon_days",
            "replication_id_limit",
        ):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be positive")
        if problems:
            raise ValueError("invalid Salesforce sandbox config: " + "; ".join(problems))

    @classmethod
    def from_options(cls, **options: Any) -> SalesforceConfig:
        """Build from flat options (see `sandboxes.base.config_from_options`)."""
        return config_from_options(cls, **options)

    def version_number(self) -> float:
        """`v62.0` -> 62.0."""
        return float(self.api_version.lstrip("v"))

    def api_users(self) -> dict[tuple[str, str], str]:
        """(client id, secret) -> the 18-character user id its sessions act as."""
        out = {(self.client_id, self.client_secret): self.integration_user_id}
        for entry in self.users:
            client_id, secret, user = entry.rsplit(":", 2)
            out.setdefault((client_id, secret), full_id(user))
        return out


def _user_problem(entry: str) -> str:
    """What is wrong with a `CLIENT_ID:CLIENT_SECRET:USER_ID` entry ("" when nothing)."""
    parts = entry.rsplit(":", 2) if isinstance(entry, str) else []
    if len(parts) != 3 or not all(parts):
        return f"users: {entry!r} is not CLIENT_ID:CLIENT_SECRET:USER_ID"
    if not is_id(parts[2]) or not parts[2].startswith("005"):
        return f"users: {parts[2]!r} is not a 15- or 18-character user id (005...)"
    return ""
