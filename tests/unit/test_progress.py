"""The progress plugin `make test` loads: lines on the descriptor it is handed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_progress_lines_go_to_the_descriptor_make_hands_over(tmp_path: Path) -> None:
    (tmp_path / "test_two.py").write_text(
        "def test_a():\n    pass\n\ndef test_b():\n    assert False\n"
    )
    read, write = os.pipe()
    env = {
        **os.environ,
        "PROGRESS_FD": str(write),
        "PROGRESS_TIER": "demo",
        "PROGRESS_EVERY_S": "0",
        "PYTHONPATH": str(ROOT),
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-p",
            "tests.support.progress",
            "-q",
            str(tmp_path / "test_two.py"),
            "--rootdir",
            str(tmp_path),
        ],
        pass_fds=(write,),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    os.close(write)
    with os.fdopen(read) as progress:
        lines = progress.read().splitlines()
    assert result.returncode == 1  # test_b fails; the plugin changes no outcome
    assert lines[-1].startswith("[demo] finished: 2 of 2 tests (1 failed, 1 passed) in ")
    assert "[demo]" not in result.stdout  # the held output stays as it was
