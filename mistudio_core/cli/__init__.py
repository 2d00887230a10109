"""`python -m mistudio_core` — the command line.

Each area adds one module here exposing `register(subparsers)`, which adds its subcommand(s) and sets
`func=handler` on them. A handler takes the parsed args and returns a JSON-able result; `--json` prints it as
JSON, otherwise the handler's `human` formatter (if given via `set_defaults(human=...)`) or a compact listing.
User errors (`MistudioError`) print one clear line and exit 2; anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys

from ..errors import MistudioError
from ..store import Store

# Areas in the order `--help` lists them; a module that does not exist yet is skipped.
AREAS = ["datasets", "models", "train", "cache", "extract", "label", "steer", "interop", "jobs"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mistudio_core", description="miStudio: SAE workbench (CLI)")
    parser.add_argument("--home", help="data directory (default: $MISTUDIO_HOME or ~/.mistudio)")
    parser.add_argument("--json", action="store_true", help="machine-readable JSON output")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for area in AREAS:
        try:
            module = importlib.import_module(f"{__name__}.{area}")
        except ModuleNotFoundError as e:
            if e.name == f"{__name__}.{area}":
                continue
            raise
        module.register(sub)
    return parser


def stderr_progress(frac: float, msg: str) -> None:
    """The core's `progress(fraction, message)` callback for the terminal: stderr, so stdout stays clean for --json."""
    print(f"[{frac:4.0%}] {msg}", file=sys.stderr, flush=True)


def print_result(result, args) -> None:
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    elif getattr(args, "human", None):
        print(args.human(result))
    elif isinstance(result, list):
        for row in result:
            print(row if not isinstance(row, dict) else "  ".join(f"{k}={v}" for k, v in row.items()))
    elif isinstance(result, dict):
        for k, v in result.items():
            print(f"{k}: {v}")
    elif result is not None:
        print(result)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    args.store = Store(args.home)
    try:
        result = args.func(args)
    except MistudioError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print_result(result, args)
    return 0
