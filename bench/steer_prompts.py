"""A prompt set, baseline vs steered: how many outputs match a regex (e.g. a year) with and without the steering.

    MISTUDIO_HOME=~/.cache/mistudio-test-home HF_HUB_OFFLINE=1 .venv/bin/python bench/steer_prompts.py \
        --sae SAE_ID --feature 237:0 --feature 299:0 --method clamp_exact \
        --prompts bench/prompts/month_names.txt --pattern '\\b(1[6-9]|20)\\d\\d\\b' [--tokens 6] [--temperature 0]

Runs the same code as the Steering tab's prompt-set batch (`run_prompt_set`: baseline and steered share the seed,
so with --temperature 0 both are greedy), then prints the count of outputs matching `--pattern` in each column
and every pair of outputs.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere without installing

from mistudio_core.cli.steer import parse_feature  # noqa: E402
from mistudio_core.steering.generate import SamplingConfig, run_prompt_set  # noqa: E402
from mistudio_core.steering.loader import load_target  # noqa: E402
from mistudio_core.steering.methods import METHODS, SteeringConfig  # noqa: E402
from mistudio_core.platform.store import Store  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sae", required=True)
    ap.add_argument("--feature", action="append", required=True, type=parse_feature, help="IDX:STRENGTH")
    ap.add_argument("--method", default="additive", choices=METHODS)
    ap.add_argument("--prompts", required=True, help="a text file, one prompt per line")
    ap.add_argument("--pattern", required=True, help="regex counted in each output")
    ap.add_argument("--tokens", type=int, default=6)
    ap.add_argument("--temperature", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    t = load_target(Store(), args.sae)
    prompts = Path(args.prompts).read_text().splitlines()
    steering = SteeringConfig(args.feature, method=args.method)
    sampling = SamplingConfig(max_new_tokens=args.tokens, temperature=args.temperature, seed=args.seed,
                              stop_at_eos=False)
    rows = run_prompt_set(t.model, t.tokenizer, t.sae, t.hook_name, prompts, steering, sampling)
    rx = re.compile(args.pattern)
    base = sum(bool(rx.search(r["baseline"])) for r in rows)
    steered = sum(bool(rx.search(r["steered"])) for r in rows)
    feats = ", ".join(f"{f.index}:{f.strength:g}" for f in steering.features)
    print(f"\n{args.sae} at {t.hook_name}, {args.method} [{feats}], {len(rows)} prompts from {args.prompts}, "
          f"{args.tokens} tokens, temperature {args.temperature:g}\n")
    print(f"| {'outputs matching ' + args.pattern:>40} | {'baseline':>8} | {'steered':>8} |")
    print(f"|{'-' * 42}|{'-' * 10}|{'-' * 10}|")
    print(f"| {'':>40} | {base:>4}/{len(rows):<3} | {steered:>4}/{len(rows):<3} |\n")
    for r in rows:
        print(f"{r['prompt'][-40:]!r:>44} | {r['baseline']!r} | {r['steered']!r}")


if __name__ == "__main__":
    main()
