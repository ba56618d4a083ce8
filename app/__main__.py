"""`python -m app` and the `actions-sync` console script: the CLI (`app.cli`).

A module of its own, importing nothing at the top, because a worker's helper process
(`streams.offload`, multiprocessing's "spawn") re-imports its parent's `__main__`: it
skips a module named `*.__main__` run by `-m`, and runs a console script's file, which
imports this `main` and nothing else. Started as `-m app.cli`, every helper imported the
CLI (typer, rich, SQLAlchemy through the settings: ~11 MB of RSS) that it never runs
(bench/RESULTS.md, issue 15, memory).
"""

from __future__ import annotations

import sys

__all__ = ["main"]


def main() -> int:
    from app.cli import main as cli

    return cli()


if __name__ == "__main__":
    sys.exit(main())
