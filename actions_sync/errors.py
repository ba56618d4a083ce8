"""One exception tree, named by what the caller should do.

ActionsSyncError
 +-- ConfigError        fix the configuration; nothing will work until then (exit 2)
 +-- Fatal              stop the worker: a bug or a broken contract with an API
 +-- Retriable          try the same thing again later, with backoff
 |    +-- Backpressure  ... after `retry_after` seconds (rate limit, daily quota)
 +-- Skippable          this record cannot be processed: dead-letter it and go on
      +-- UndecodableRecord   bytes that are not a record of the expected schema
      +-- RuleViolation       a well-formed record that breaks a sync rule
"""

from __future__ import annotations

__all__ = [
    "ActionsSyncError",
    "Backpressure",
    "ConfigError",
    "Fatal",
    "Retriable",
    "RuleViolation",
    "Skippable",
    "UndecodableRecord",
]


class ActionsSyncError(Exception):
    """Root of every error this project raises on purpose."""


class ConfigError(ActionsSyncError):
    """The configuration is wrong; the message names the setting and how to fix it."""


class Fatal(ActionsSyncError):
    """Stop: retrying cannot help."""


class Retriable(ActionsSyncError):
    """A transient failure: the same call may succeed later."""


class Backpressure(Retriable):
    """The remote side asks us to slow down; wait `retry_after` seconds."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Skippable(ActionsSyncError):
    """This one record cannot be processed; it goes to the dead-letter topic."""

    stage = "process"


class UndecodableRecord(Skippable):
    """Not a valid Confluent-framed Avro record of the expected schema."""

    stage = "decode"


class RuleViolation(Skippable):
    """A decoded record that a sync rule rejects (e.g. a key that is not its Marketo ID)."""

    stage = "rules"
