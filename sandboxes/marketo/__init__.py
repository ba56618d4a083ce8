"""A Marketo Engage sandbox: the subset of Marketo's REST API that actions-sync uses.

Identity (client credentials), leads (read by filter, sync, delete), lead changes and
deleted leads through paging tokens, the bulk lead extract, and custom activity types
and activities; with Marketo's limits (606 rate, 615 concurrency, 607 daily quota, 1003
batch size, HTTP 413 / 414), its error envelope, seeded faults and a request journal.
API facts follow `API_NOTES.md`; defaults are in `MarketoConfig`.

    from sandboxes.base import SandboxServer
    from sandboxes.marketo import MarketoConfig, create_app, STATE_KEY

    app = create_app(MarketoConfig(seed_people=1000))
    with SandboxServer(app) as server:
        app[STATE_KEY].counts()          # in-process access to the data
        ...                              # HTTP at server.url

Run one on its own: `python -m sandboxes.marketo --port 8081 --seed-people 100000`.
"""

from __future__ import annotations

from sandboxes.marketo.app import create_app
from sandboxes.marketo.config import MarketoConfig
from sandboxes.marketo.keys import STATE_KEY
from sandboxes.marketo.state import MarketoState

__all__ = ["STATE_KEY", "MarketoConfig", "MarketoState", "create_app"]
