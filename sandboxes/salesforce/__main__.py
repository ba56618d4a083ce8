"""`python -m sandboxes.salesforce`: run a Salesforce sandbox in the foreground.

Every `SalesforceConfig` setting is a flag (`--seed-people 1000`, `--error-rate 0.05`,
`--latency-ms 20`, `--session-ttl-s 60`, `--lock-error-rate 0.01`, ...); `--help` lists
them with their defaults.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import fields
from typing import Any

from sandboxes.base import FaultPlan, serve
from sandboxes.salesforce.app import create_app
from sandboxes.salesforce.config import SalesforceConfig

__all__ = ["main", "parser"]

_FAULT_FLAGS = {"error_rate": float, "latency_ms": float, "timeout_rate": float,
                "timeout_s": float, "fault_seed": int}
# Options whose default is None, and so whose type the default cannot tell.
_OPTIONAL = {"session_ttl_s": float, "instance_url": str, "opt_out_field": str,
             "invalid_subject_marker": str}


def _flag(text: str) -> bool:
    if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
        raise argparse.ArgumentTypeError(f"not a boolean: {text}")
    return text.lower() in ("true", "1", "yes")


def parser() -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(prog="python -m sandboxes.salesforce",
                                  description="Run a Salesforce sandbox.")
    cli.add_argument("--host", default="127.0.0.1")
    cli.add_argument("--port", type=int, default=8082)
    defaults = SalesforceConfig()
    for f in fields(SalesforceConfig):
        if f.name == "faults":
            continue
        default = getattr(defaults, f.name)
        kind: Callable[[str], Any] = _OPTIONAL.get(f.name) or (
            _flag if isinstance(default, bool) else type(default))
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
    serve(create_app(SalesforceConfig.from_options(**options)), host, port)


if __name__ == "__main__":
    main()
