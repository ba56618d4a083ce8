"""`python -m sandboxes.marketo`: run a Marketo sandbox in the foreground.

Every `MarketoConfig` setting is a flag (`--seed-people 100000`, `--error-rate 0.05`,
`--latency-ms 20`, `--token-expiry-s 60`, ...); `--help` lists them with their defaults.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import fields
from typing import Any

from sandboxes.base import FaultPlan, serve
from sandboxes.marketo.app import create_app
from sandboxes.marketo.config import MarketoConfig

__all__ = ["main", "parser"]

_FAULT_FLAGS = {"error_rate": float, "latency_ms": float, "timeout_rate": float,
                "timeout_s": float, "fault_seed": int}


def parser() -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(prog="python -m sandboxes.marketo",
                                  description="Run a Marketo Engage sandbox.")
    cli.add_argument("--host", default="127.0.0.1")
    cli.add_argument("--port", type=int, default=8081)
    defaults = MarketoConfig()
    for f in fields(MarketoConfig):
        if f.name == "faults":
            continue
        default = getattr(defaults, f.name)
        kind = float if f.name == "token_expiry_s" else type(default)
        cli.add_argument(f"--{f.name.replace('_', '-')}", type=kind, default=None,
                         help=f"default: {default}")
    plan = FaultPlan()
    for name, kind in _FAULT_FLAGS.items():
        default = getattr(plan, "seed" if name == "fault_seed" else name)
        cli.add_argument(f"--{name.replace('_', '-')}", type=kind, default=None,
                         help=f"fault plan, default: {default}")
    return cli


def main(argv: Sequence[str] | None = None) -> None:
    options: dict[str, Any] = vars(parser().parse_args(argv))
    host, port = options.pop("host"), options.pop("port")
    serve(create_app(MarketoConfig.from_options(**options)), host, port)


if __name__ == "__main__":
    main()
