"""The repository documents itself: every relative link in its Markdown resolves, and
nothing points at documents a user of the repository does not have."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def markdown_files() -> list[Path]:
    """The repository's own Markdown (what git tracks: not virtualenvs or caches)."""
    listed = subprocess.run(
        ["git", "ls-files", "*.md"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    return [ROOT / name for name in listed]


def relative_links(path: Path) -> list[str]:
    links = LINK.findall(path.read_text())
    return [link for link in links if not re.match(r"^[a-z]+:", link) and not link.startswith("#")]


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(path: Path) -> None:
    targets = {
        link: (path.parent / link.split("#", 1)[0]).resolve() for link in relative_links(path)
    }
    broken = [link for link, target in targets.items() if not target.exists()]
    outside = [link for link, target in targets.items() if not target.is_relative_to(ROOT)]
    assert (broken, outside) == ([], [])


def test_docs_cover_the_product_the_contract_the_runbook_and_the_architecture() -> None:
    docs = {p.name for p in (ROOT / "docs").glob("*.md")}
    assert {"product.md", "contract.md", "runbook.md", "architecture.md"} <= docs
    product = (ROOT / "docs" / "product.md").read_text()
    assert all(f"| S{n} |" in product for n in range(1, 13))


def test_every_alert_has_a_runbook_entry() -> None:
    alerts = re.findall(r"- alert: (\w+)", (ROOT / "deploy/prometheus/alerts.yml").read_text())
    runbook = (ROOT / "docs" / "runbook.md").read_text()
    assert alerts and [a for a in alerts if f"`{a}`" not in runbook] == []
