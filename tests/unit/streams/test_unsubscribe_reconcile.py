"""When the daily unsubscribe reconciliation is due (`unsubscribe_reconcile_at`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from actions_sync.admin.model import AdminSettings
from actions_sync.errors import ConfigError
from streams.unsubscribe_reconcile import due

DAY = datetime(2026, 12, 2, tzinfo=UTC)


@pytest.mark.parametrize(
    "now, finished, want",
    [
        (DAY + timedelta(hours=1), None, False),  # before 02:00
        (DAY + timedelta(hours=2), None, True),
        (DAY + timedelta(hours=3), DAY - timedelta(hours=22), True),  # yesterday's run
        (DAY + timedelta(hours=3), DAY + timedelta(hours=2, minutes=5), False),  # done today
        (DAY + timedelta(hours=1), DAY - timedelta(hours=22), False),  # not yet today
    ],
)
def test_due_once_a_day_after_its_time(
    now: datetime, finished: datetime | None, want: bool
) -> None:
    assert due("02:00", now, finished) is want


def test_off_is_never_due() -> None:
    assert due("off", DAY + timedelta(hours=23), None) is False


def test_nightly_by_default_and_validated() -> None:
    assert AdminSettings().unsubscribe_reconcile_at == "02:00"
    assert AdminSettings().with_value("unsubscribe_reconcile_at", "off")
    with pytest.raises(ConfigError, match="HH:MM"):
        AdminSettings().with_value("unsubscribe_reconcile_at", "2am")
