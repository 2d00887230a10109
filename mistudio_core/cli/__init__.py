"""`python -m mistudio_core` — the command line.

Each area adds one module here exposing `register(subparsers)`, which adds its subcommand(s) and sets
`func=handler` on them. A handler takes the parsed args and returns a JSON-able result; `--json` prints it as
JSON, otherwise the handler's `human` formatter (if given via `set_defaults(human=...)`) or a compact listing.
User errors (`MistudioError`) print one clear line and exit 2. Every id and path argument goes through one
validator (`check_args`: `store.check_id` / `store.check_path_text`) before any handler runs, so a traversal, a NUL
or a 5,000-character id is one clear line in every command. Anything else is a bug: one line naming it, exit 3,
and the traceback only with `MISTUDIO_DEBUG=1`.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import traceback

from ..platform.errors import MistudioError
from ..platform.store import Store, check_id, check_path_text

# Argument names (dest) that hold artifact ids, with the kind named in messages; and those that hold paths.
ID_ARGS = {"id": None, "sae": "saes", "dataset": "datasets", "model": "models", "export": "exports", "a": "saes",
           "b": "saes"}
PATH_ARGS = ("path", "file", "prompts_file")
COMMAND_KINDS = {"datasets": "datasets", "models": "models", "jobs": "jobs", "steer": "saes", "extract": "saes"}

# Areas in the order `--help` lists them; a module that does not exist yet is skipped.
AREAS = ["datasets", "models", "train", "cache", "extract", "label", "steer", "circuit", "interop", "jobs"]


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
    try:
        check_args(args)
        args.store = Store(args.home)
        result = args.func(args)
    except MistudioError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the file system refused a user's path (too long, permissions, a full disk)
        where = f" ({str(e.filename)[:120]})" if e.filename else ""
        print(f"error: {e.strerror or e}{where}. Check the path and the permissions, then run again.",
              file=sys.stderr)
        return 2
    except Exception as e:  # a bug: one line for the user, the traceback on request
        if os.environ.get("MISTUDIO_DEBUG") == "1":
            traceback.print_exc()
        print(f"error: unexpected {type(e).__name__} in '{args.command}': {str(e)[:200]}. This is a bug; run "
              "again with MISTUDIO_DEBUG=1 for the traceback and report it.", file=sys.stderr)
        return 3
    print_result(result, args)
    return 0


def check_args(args: argparse.Namespace) -> None:
    """The one validator for every command's id and path arguments (see module doc)."""
    for dest, kind in ID_ARGS.items():
        value = getattr(args, dest, None)
        if value is None or (dest == "model" and args.command == "label"):  # label's --model is an LLM's name
            continue
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, str):
                check_id(kind or COMMAND_KINDS.get(args.command, "artifacts"), v)
    for dest in PATH_ARGS:
        value = getattr(args, dest, None)
        if isinstance(value, str):
            check_path_text(value, dest.replace("_", " "))
    if args.home is not None:
        check_path_text(args.home, "--home")
