"""`actions-sync demo` run as a real process on a small population: the people flow, then
the activity flow through the Marketo and Salesforce sandboxes, reconciled, exit 0."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def run_demo(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # The embedded defaults: no broker, registry or store of the caller's environment.
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith("ACTIONS_SYNC_") and k not in (
                 "KAFKA_BOOTSTRAP_SERVERS", "SCHEMA_REGISTRY_URL", "DATABASE_URL")}
    return subprocess.run([sys.executable, "-m", "app.cli", "demo", *args], cwd=cwd,
                          capture_output=True, text=True, env={**clean, "COLUMNS": "200"},
                          timeout=240)


def row(output: str, check: str) -> list[str]:
    """The cells of a report table's row: [expected, actual]."""
    line = next(line for line in output.splitlines() if f" {check} " in line)
    return [cell.strip() for cell in line.split("│")[2:4]]


def test_demo_runs_both_flows_and_reconciles(tmp_path: Path) -> None:
    result = run_demo("--people", "1500", "--activities", "600", cwd=tmp_path)

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert out.rstrip().endswith("CONSISTENT") and "INCONSISTENT" not in out
    people = row(out, "people in Actions")
    assert people[0] == people[1] and int(people[0]) > 500
    assert row(out, "activities in Marketo") == ["600", "600"]
    assert row(out, "duplicate Marketo activities") == ["0", "0"]
    tasks = row(out, "Tasks in Salesforce")
    assert tasks[0] == tasks[1] and 100 < int(tasks[0]) < 600  # emails, replies, calls
    assert row(out, "dead-lettered activities") == ["0", "0"]
    assert row(out, "mismatched activities") == ["0", "0"]
    assert list(tmp_path.glob("var/demo-*/actions-sync.db"))  # its own store, under var/


def test_demo_without_activities_runs_the_people_flow_only(tmp_path: Path) -> None:
    result = run_demo("--people", "300", "--activities", "0", cwd=tmp_path)

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "people in Actions" in result.stdout
    assert "activities in Marketo" not in result.stdout


def test_a_negative_activity_count_is_refused(tmp_path: Path) -> None:
    result = run_demo("--activities", "-1", cwd=tmp_path)

    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and "--activities" in result.stderr
