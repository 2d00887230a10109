"""`python -m mistudio_core eval --suite ...`: the "benchmark" job run in the foreground (cli/train.py's eval
parser calls `add_flags` and, when --suite is given, `run_from_args`).

    eval --suite --sae ID [--dataset sotu] [--parts core,absorption,probing,autointerp]
         [--labeler-url http://localhost:11434/v1 --labeler-model llama3.2]   (default: the built-in model, local)
"""
from __future__ import annotations

from .spec import LOCAL_LABELER, PARTS


def add_flags(e) -> None:
    """The suite's flags on the `eval` parser."""
    e.add_argument("--suite", action="store_true", help="run the benchmark suite (core metrics + shrinkage, feature "
                   "absorption, k-sparse probing, auto-interpretation) and store it per suite version")
    e.add_argument("--parts", help=f"comma-separated suite parts (default: {','.join(PARTS)})")
    e.add_argument("--labeler-url", help="OpenAI-compatible base URL of the auto-interp labeler (default: "
                   f"{LOCAL_LABELER['base_url']}, a model of this data directory run in-process)")
    e.add_argument("--labeler-model", help=f"labeler model name (default: {LOCAL_LABELER['model']})")


def spec_from_args(args) -> dict:
    from .spec import BenchSpec

    labeler = {"base_url": args.labeler_url or LOCAL_LABELER["base_url"],
               "model": args.labeler_model or (LOCAL_LABELER["model"] if not args.labeler_url else "")}
    parts = [p.strip() for p in args.parts.split(",") if p.strip()] if args.parts else list(PARTS)
    return BenchSpec(sae_id=args.sae, dataset_id=args.dataset or "sotu", split=args.split, parts=parts,
                     n_contexts=args.n_contexts, downstream=args.downstream, labeler=labeler,
                     model_id=args.model, device=args.device).to_dict()


def run_from_args(args) -> dict:
    """Check, run in the foreground, and return the stored result record; `args.human` prints its table."""
    from ..cli.foreground import outcome, run_foreground
    from ..labeling.keys import ENV_VAR, remember_key
    from .results import load_result
    from .spec import BenchSpec, check_inputs

    import os

    spec = spec_from_args(args)
    if os.environ.get(ENV_VAR):  # the key stays in this process's memory; the spec holds a reference only
        spec["key_ref"] = remember_key(os.environ[ENV_VAR])
    check_inputs(args.store, BenchSpec.from_dict(spec))  # refuse bad input before queueing
    record = run_foreground(args.store, "benchmark", spec, name=f"{args.sae}-suite")
    result = outcome(record)
    args.human = human
    return load_result(args.store, result["sae_id"], result["dataset_id"], result["suite_version"], result["split"])


def human(record: dict) -> str:
    from .results import HEADLINE, source_line

    head = record.get("headline") or {}
    lines = [f"{record['sae_id']}: benchmark suite v{record['suite_version']} — core numbers on "
             f"{source_line(record)}"]
    lines += [f"  {k:22} {head[k]:.4g}" for k in HEADLINE if head.get(k) is not None]
    lines += [f"  {part:11} {record['seconds'].get(part, 0):7.1f} s   {where}"
              for part, where in (record.get("provenance") or {}).items()]
    if (record.get("autointerp") or {}).get("error"):
        lines.append(f"  autointerp failed: {record['autointerp']['error']}")
    return "\n".join(lines)
