"""`actions-sync demo` run as a real process on a small population: every flow (people,
with the initial sync from the Marketo sandbox and live changes there, activities,
settings, unsubscribes, send checks, reminders) through the real workers and the Marketo
and Salesforce sandboxes, one reconciliation table with a row per SPEC behaviour, exit 0;
`--flows` picks a subset; nothing left behind without `--keep`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
SPECS = [f"S{n}" for n in range(1, 13)]


def run_demo(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The demo in `cwd`, with its own temp directory `cwd/tmp` (TMPDIR): what it leaves
    behind shows there. The embedded defaults: no broker, registry or store of the
    caller's environment."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ACTIONS_SYNC_")
        and k not in ("KAFKA_BOOTSTRAP_SERVERS", "SCHEMA_REGISTRY_URL", "DATABASE_URL")
    }
    (cwd / "tmp").mkdir(exist_ok=True)
    return subprocess.run(
        [sys.executable, "-m", "app", "demo", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=480,
        env={**clean, "COLUMNS": "200", "TMPDIR": str(cwd / "tmp")},
    )


def rows(output: str) -> dict[str, list[list[str]]]:
    """The reconciliation table: SPEC -> its rows' cells [check, expected, found, verdict]."""
    out: dict[str, list[list[str]]] = {}
    for line in output.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if len(cells) == 5 and re.fullmatch(r"S\d+", cells[0]):
            out.setdefault(cells[0], []).append(cells[1:])
    return out


def leftovers(cwd: Path) -> list[str]:
    return sorted(str(p.relative_to(cwd)) for p in cwd.rglob("*") if p != cwd / "tmp")


def test_demo_runs_every_flow_and_every_spec_row_agrees(tmp_path: Path) -> None:
    result = run_demo("--people", "1500", "--activities", "300", cwd=tmp_path)

    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    out = result.stdout
    assert out.rstrip().endswith("CONSISTENT") and "INCONSISTENT" not in out
    table = rows(out)
    assert sorted(table, key=lambda s: int(s[1:])) == SPECS  # a row for each behaviour
    for spec, spec_rows in table.items():
        for check, expected, found, verdict in spec_rows:
            assert verdict == "agrees" and expected == found, (spec, check)
    people = table["S1"][0]
    assert int(people[1]) > 500
    assert table["S7"][0][1] == "300"  # every activity in Marketo once
    marketo = {r[0].split(":")[0].split(" (")[0]: r for r in table["S6"]}
    assert int(marketo["initial sync"][1]) > 20  # the owned leads of one export window
    assert int(marketo["live Marketo changes"][1]) == 33  # every live edit, read back
    assert any("re-subscribes" in r[0] for r in table["S9"])
    assert len(table["S10"]) == 3 and len(table["S11"]) == 3 and len(table["S12"]) == 3
    logs = re.search(r"logs in (\S+)", out)
    assert logs and not Path(logs.group(1)).exists()  # removed at the end
    assert leftovers(tmp_path) == []  # nothing in the working tree or the temp directory


def test_flows_picks_a_subset_and_keep_keeps_the_run(tmp_path: Path) -> None:
    result = run_demo("--people", "300", "--flows", "people", "--keep", cwd=tmp_path)

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    table = rows(result.stdout)
    assert table["S1"][0][3] == "agrees"
    assert all(r[3] == "skipped" for s in ("S7", "S9", "S10", "S11", "S12") for r in table[s])
    assert "vendors" not in result.stdout  # Marketo only (the initial sync): no Salesforce
    assert any(r[0].startswith("initial sync") for r in table["S6"])
    kept = list((tmp_path / "tmp").glob("actions-sync-demo-*"))
    assert len(kept) == 1 and (kept[0] / "actions-sync.db").is_file()
    assert (kept[0] / "logs" / "worker-people-0.log").is_file()
    assert not (tmp_path / "var").exists()


def test_an_unknown_flow_is_refused_in_one_line(tmp_path: Path) -> None:
    result = run_demo("--flows", "people,nope", cwd=tmp_path)

    assert result.returncode == 2
    assert result.stderr.startswith("error: --flows: unknown flow 'nope'")
    assert len(result.stderr.strip().splitlines()) == 1 and "settings" in result.stderr
    assert leftovers(tmp_path) == []


def test_a_negative_activity_count_is_refused(tmp_path: Path) -> None:
    result = run_demo("--activities", "-1", cwd=tmp_path)

    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and "--activities" in result.stderr
