"""The admin settings model of SPEC S12: defaults, text values, validation, tolerance."""

from __future__ import annotations

import pytest

from actions_sync.admin.model import DEFAULT_SUBJECT_TEMPLATE, KEYS, AdminSettings, parse_value
from actions_sync.admin.snapshot import SETTINGS_TOPIC, Versioned, decode, encode, from_stored
from actions_sync.errors import ConfigError
from actions_sync.topics import SETTINGS


def test_defaults_cover_every_setting_of_s12() -> None:
    settings = AdminSettings()
    assert settings.people_sync is False  # nothing syncs until an admin initiates it
    assert settings.salesforce_log_emails and settings.salesforce_log_replies
    assert settings.salesforce_log_calls and settings.salesforce_log_reminder_tasks
    assert settings.salesforce_subject_template == DEFAULT_SUBJECT_TEMPLATE
    assert settings.unsubscribe_sync and settings.unsubscribe_field == "HasOptedOutOfEmail"
    assert settings.unsubscribe_objects == ("Lead", "Contact")
    assert settings.marketo_unsubscribe_check is False
    assert settings.reminder_task_sync is False


@pytest.mark.parametrize(
    ("key", "text", "expected"),
    [
        ("people_sync", "true", True),
        ("salesforce_log_calls", "off", False),
        ("marketo_unsubscribe_check", "YES", True),
        ("unsubscribe_objects", "Contact", ("Contact",)),
        ("unsubscribe_objects", "Lead, Contact", ("Lead", "Contact")),
        ("unsubscribe_objects", '["Lead"]', ("Lead",)),
        ("unsubscribe_field", "Opted_Out__c", "Opted_Out__c"),
        (
            "salesforce_subject_template",
            "{{ call_outcome }} {{activity_subject}}",
            "{{ call_outcome }} {{activity_subject}}",
        ),
        ("salesforce_subject_template", "[Sales] {{activity_type}}", "[Sales] {{activity_type}}"),
    ],
)
def test_text_values_are_parsed_and_validated(
    key: str, text: str, expected: bool | tuple[str] | tuple[str, str] | str
) -> None:
    settings = AdminSettings().with_value(key, parse_value(key, text))
    assert getattr(settings, key) == expected


@pytest.mark.parametrize(
    ("key", "text", "names"),
    [
        ("nope", "1", "people_sync"),  # lists the valid keys
        ("people_sync", "maybe", "true or false"),
        ("unsubscribe_objects", "Account", "Lead"),
        ("unsubscribe_objects", "", "at least 1"),
        ("unsubscribe_field", "Email", "__c"),
        ("salesforce_subject_template", "{{subject}}", "{{activity_subject}}"),
        ("salesforce_subject_template", "", "at least 1"),
        ("unsubscribe_objects", "[" * 100_000, "nested too deeply"),
    ],
)
def test_bad_keys_and_values_are_one_line_config_errors(key: str, text: str, names: str) -> None:
    with pytest.raises(ConfigError) as err:
        AdminSettings().with_value(key, parse_value(key, text))
    assert names in str(err.value) and "\n" not in str(err.value)


def test_every_key_is_settable_from_its_shown_value() -> None:
    dumped = AdminSettings().model_dump(mode="json")
    for key in KEYS:
        text = dumped[key] if isinstance(dumped[key], str) else str(dumped[key]).lower()
        if isinstance(dumped[key], list):
            text = ",".join(dumped[key])
        assert AdminSettings().with_value(key, parse_value(key, text)) == AdminSettings()


def test_stored_values_no_longer_valid_fall_back_to_defaults() -> None:
    settings = from_stored(
        {"salesforce_log_calls": False, "retired_key": 1, "unsubscribe_field": "not valid"}
    )
    assert settings.salesforce_log_calls is False
    assert settings.unsubscribe_field == "HasOptedOutOfEmail"


def test_snapshot_round_trips_and_names_the_design_topic() -> None:
    snapshot = Versioned(AdminSettings(salesforce_log_emails=False), 7)
    assert decode(encode(snapshot)) == snapshot
    assert SETTINGS_TOPIC == SETTINGS
