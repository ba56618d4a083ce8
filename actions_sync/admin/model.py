"""The admin settings of SPEC S12: what an admin may switch, typed, with defaults.

Keys are flat so that `actions-sync settings set KEY VALUE` and the HTTP API name them
the same way. A value given as text (CLI, HTTP) is parsed by `parse_value`; every
failure is a one-line `ConfigError` listing what would have been accepted.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, field_validator

from actions_sync.errors import ConfigError

__all__ = [
    "DEFAULT_SUBJECT_TEMPLATE",
    "KEYS",
    "PLACEHOLDERS",
    "AdminSettings",
    "parse_value",
    "placeholders_in",
]

PLACEHOLDERS = (  # SPEC S8: what a Salesforce Task subject template may use
    "activity_type",
    "activity_subject",
    "sales_campaign_name",
    "sales_campaign_day",
    "sales_campaign_step",
    "call_outcome",
    "call_reason",
)
DEFAULT_SUBJECT_TEMPLATE = "{{activity_type}}: {{activity_subject}}"
PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]*)\s*\}\}")
# Salesforce custom fields end in __c; HasOptedOutOfEmail is the standard opt-out field.
OPT_OUT_FIELD = re.compile(r"^(HasOptedOutOfEmail|[A-Za-z][A-Za-z0-9_]{0,36}__c)$")
SubjectObject = Literal["Lead", "Contact"]
RECONCILE_AT = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


def placeholders_in(template: str) -> list[str]:
    """The placeholder names a template uses, in order."""
    return PLACEHOLDER.findall(template)


class AdminSettings(BaseModel):
    """One consistent snapshot of every admin setting (frozen: agents share it)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # StrictBool: over HTTP a boolean is JSON true/false, never "yes" or 0; the CLI's text
    # is parsed to one first (parse_value)
    people_sync: StrictBool = Field(
        False, description="initiate data sync: people flow from Marketo into Actions (S1, S6)"
    )
    salesforce_log_emails: StrictBool = Field(
        True, description="log sent sales emails as Tasks (S8)"
    )
    salesforce_log_replies: StrictBool = Field(True, description="log replies as Tasks (S8)")
    salesforce_log_calls: StrictBool = Field(True, description="log sales calls as Tasks (S8)")
    salesforce_log_reminder_tasks: StrictBool = Field(
        True, description="log completed reminder tasks as Tasks (S8)"
    )
    salesforce_subject_template: str = Field(
        DEFAULT_SUBJECT_TEMPLATE,
        min_length=1,
        max_length=1000,
        description="Task Subject template; placeholders: " + ", ".join(PLACEHOLDERS),
    )
    unsubscribe_sync: StrictBool = Field(True, description="unsubscribes sync with Salesforce (S9)")
    unsubscribe_field: str = Field(
        "HasOptedOutOfEmail",
        description="Salesforce opt-out field: HasOptedOutOfEmail or a"
        " custom checkbox field ending in __c (S9)",
    )
    unsubscribe_objects: tuple[SubjectObject, ...] = Field(
        ("Lead", "Contact"), min_length=1, description="objects to opt out: Lead, Contact (S9)"
    )
    marketo_unsubscribe_check: StrictBool = Field(
        False, description="check Marketo's unsubscribed before a send (S10)"
    )
    reminder_task_sync: StrictBool = Field(
        False, description="reminder tasks sync both ways with Salesforce Tasks (S11)"
    )
    unsubscribe_reconcile_at: str = Field(
        "02:00",
        description="daily time (UTC, HH:MM) of the full unsubscribe reconciliation"
        " with Salesforce, or off (S9)",
    )

    @field_validator("salesforce_subject_template")
    @classmethod
    def _known_placeholders(cls, value: str) -> str:
        unknown = [p for p in placeholders_in(value) if p not in PLACEHOLDERS]
        if unknown:
            raise ValueError(
                f"unknown placeholder {{{{{unknown[0]}}}}}; use "
                + ", ".join(f"{{{{{p}}}}}" for p in PLACEHOLDERS)
            )
        return value

    @field_validator("unsubscribe_field")
    @classmethod
    def _opt_out_field(cls, value: str) -> str:
        if not OPT_OUT_FIELD.match(value):
            raise ValueError("expected HasOptedOutOfEmail or a custom field name ending in __c")
        return value

    @field_validator("unsubscribe_reconcile_at")
    @classmethod
    def _time_of_day(cls, value: str) -> str:
        if value != "off" and not RECONCILE_AT.match(value):
            raise ValueError("expected a UTC time of day HH:MM (00:00 to 23:59) or off")
        return value

    @field_validator("unsubscribe_objects", mode="before")
    @classmethod
    def _objects_from_text(cls, value: Any) -> Any:
        if isinstance(value, str):  # "Lead,Contact" from the CLI
            return tuple(v.strip() for v in value.split(",") if v.strip())
        return value

    def with_value(self, key: str, value: Any) -> AdminSettings:
        """A copy with `key` set to `value`, validated (`ConfigError` when not valid)."""
        check_key(key)
        try:
            return AdminSettings.model_validate({**self.model_dump(), key: value})
        except ValidationError as exc:
            raise ConfigError(f"{key}={_short(value)}: {_reason(exc, key)}") from exc


KEYS = tuple(AdminSettings.model_fields)


def _short(value: Any, limit: int = 80) -> str:
    """`repr(value)` cut to one short line (errors echo what a caller sent)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def check_key(key: str) -> None:
    if key not in AdminSettings.model_fields:
        raise ConfigError(f"unknown setting {_short(key)}; valid settings: {', '.join(KEYS)}")


def describe(key: str) -> str:
    """What values `key` accepts, in a few words."""
    field = AdminSettings.model_fields[key]
    if field.annotation is bool:
        return "expected true or false (a JSON boolean over HTTP)"
    return f"expected {field.description}"


def parse_value(key: str, text: str) -> Any:
    """A setting's value from text: booleans as true/false, lists as A,B or JSON; text as
    it is (a subject template may well start with "[")."""
    check_key(key)
    field = AdminSettings.model_fields[key]
    lowered = text.strip().lower()
    if field.annotation is bool:
        if lowered in ("true", "on", "yes", "1"):
            return True
        if lowered in ("false", "off", "no", "0"):
            return False
        raise ConfigError(f"{key}={text!r}: {describe(key)}")
    if field.annotation is not str and text.strip().startswith("["):  # a list's JSON
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{key}={_short(text)}: not a JSON list: {exc.msg}") from exc
        except RecursionError:  # [[[[... deeper than the parser goes
            raise ConfigError(f"{key}={_short(text)}: not a JSON list: nested too deeply") from None
    return text


def _reason(exc: ValidationError, key: str) -> str:
    err = exc.errors()[0]
    if err["type"] == "value_error":  # our validators already say what is expected
        return str(err["msg"]).removeprefix("Value error, ")
    return f"{err['msg']}; {describe(key)}"
