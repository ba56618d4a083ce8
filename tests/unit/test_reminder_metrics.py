"""The reminder metrics (issue 13 item 3) are exported from the start, every label at 0,
so a dashboard shows them before the first reminder task moves."""

from __future__ import annotations

from prometheus_client import REGISTRY

from actions_sync.metrics import REMINDER_DIRECTIONS, REMINDER_OUTCOMES


def exported(name: str, **labels: str) -> bool:
    return REGISTRY.get_sample_value(name, labels) is not None


def test_every_reminder_series_is_exported_before_anything_moves() -> None:
    missing = [
        (direction, outcome)
        for direction in REMINDER_DIRECTIONS
        for outcome in REMINDER_OUTCOMES
        if not exported(
            "actions_sync_reminder_tasks_synced_total", direction=direction, outcome=outcome
        )
    ]
    assert missing == []
    assert all(
        exported("actions_sync_reminder_conflicts_total", winner=w)
        for w in ("actions", "salesforce")
    )
    assert exported("actions_sync_salesforce_deletion_gaps_total", sobject="Task")
    assert exported("actions_sync_salesforce_task_poll_age_seconds")
