"""A Salesforce org stand-in: OAuth, SOQL, sObject Collections, composite, deletions.

Speaks the subset of the Salesforce REST API described in API_NOTES.md with Salesforce's
error shapes, limits and record-level validation, plus seeded faults (5xx, latency,
session expiry, UNABLE_TO_LOCK_ROW, late commits) and control routes under
`/_sandbox/salesforce/`. Ids are accepted with 15 or 18 characters (`sandboxes.sfdc_ids`);
extra API users (`SalesforceConfig.users`) let any client write as a person in the org.

    app = create_app(SalesforceConfig(seed_people=100))
    with SandboxServer(app) as server:
        state = app[STATE_KEY]          # in-process access to the org's records

Modules: `config` (settings), `schema` (objects and fields), `records` (field validation),
`writes` (record rules), `state` (records, ids, stamps, sessions, cursors), `budget`,
`soql` / `soql_eval` (SOQL parser and evaluator), `queries`, `sobjects`,
`sobject_collections`, `composite` (endpoints), `routes` (dispatcher), `app` (HTTP gate),
`control` and `humans` (seeding and edits made as a person).
"""

from sandboxes.salesforce.app import STATE_KEY, create_app
from sandboxes.salesforce.config import SalesforceConfig
from sandboxes.salesforce.errors import ApiError, RecordError
from sandboxes.salesforce.humans import human_create, human_delete, human_update, seed_people
from sandboxes.salesforce.state import SalesforceState

__all__ = [
    "STATE_KEY",
    "ApiError",
    "RecordError",
    "SalesforceConfig",
    "SalesforceState",
    "create_app",
    "human_create",
    "human_delete",
    "human_update",
    "seed_people",
]
