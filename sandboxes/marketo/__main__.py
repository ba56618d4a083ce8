"""`python -m sandboxes.marketo`: run a Marketo sandbox in the foreground.

Every `MarketoConfig` setting is a flag (`--seed-people 100000`, `--error-rate 0.05`,
`--latency-ms 20`, `--token-expiry-s 60`, ...); `--help` lists them with their defaults.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from sandboxes.base import main_for, options_parser
from sandboxes.marketo.app import create_app
from sandboxes.marketo.config import MarketoConfig

__all__ = ["main", "parser"]


def parser() -> argparse.ArgumentParser:
    return options_parser(
        MarketoConfig,
        "python -m sandboxes.marketo",
        "Run a Marketo Engage sandbox.",
        8081,
        {"token_expiry_s": float, "refused_call_marker": str},
    )


def main(argv: Sequence[str] | None = None) -> None:
    main_for(parser(), MarketoConfig, create_app, argv)


if __name__ == "__main__":
    main()
