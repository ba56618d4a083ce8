"""`python -m sandboxes.salesforce`: run a Salesforce sandbox in the foreground.

Every `SalesforceConfig` setting is a flag (`--seed-people 1000`, `--error-rate 0.05`,
`--latency-ms 20`, `--session-ttl-s 60`, `--lock-error-rate 0.01`, `--users
ID:SECRET:005...,ID2:SECRET2:005...`, ...); `--help` lists them with their defaults.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

from sandboxes.base import main_for, options_parser
from sandboxes.salesforce.app import create_app
from sandboxes.salesforce.config import SalesforceConfig

__all__ = ["main", "parser"]


def _users(text: str) -> tuple[str, ...]:
    """`--users A:S:005...,B:T:005...` (the CLI's `--user` is repeatable instead)."""
    return tuple(text.split(","))


# Options whose default is None (or a tuple), and so whose type the default cannot tell.
_OPTIONAL: dict[str, Callable[[str], Any]] = {
    "session_ttl_s": float,
    "instance_url": str,
    "opt_out_field": str,
    "invalid_subject_marker": str,
    "refused_call_marker": str,
    "users": _users,
}


def parser() -> argparse.ArgumentParser:
    return options_parser(
        SalesforceConfig,
        "python -m sandboxes.salesforce",
        "Run a Salesforce sandbox.",
        8082,
        _OPTIONAL,
    )


def main(argv: Sequence[str] | None = None) -> None:
    main_for(parser(), SalesforceConfig, create_app, argv)


if __name__ == "__main__":
    main()
