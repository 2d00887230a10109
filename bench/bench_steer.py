"""Generation speed with and without steering on SmolLM2-135M (target: steering overhead <= 10%).

    MISTUDIO_HOME=~/.cache/mistudio-test-home HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_steer.py \
        [--tokens 48] [--reps 3] [--device cpu] [--hook blocks.8.hook_resid_post]

Rows: `transformers generate` (reference for our loop), our loop unsteered, steered with each method (one row
of a batch of 1), and the side-by-side pair (baseline + steered as a batch of 2, tokens counted per row). The SAE
is random (TopK, 8× width, k=32): speed does not depend on what the features mean. Best of `--reps`.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere without installing

from mistudio_core.model.models import BUILTIN_ID, load_model
from mistudio_core.sae.config import SAEConfig
from mistudio_core.sae.model import SAE
from mistudio_core.steering.generate import SamplingConfig, iter_rows
from mistudio_core.steering.methods import METHODS, Steerer, SteerFeature, SteeringConfig
from mistudio_core.platform.store import Store

PROMPT = "The history of the city begins in the early middle ages, when"


def _timed(fn, reps: int) -> float:
    best = float("inf")
    for _ in range(reps):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=48)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--device", default=None)
    ap.add_argument("--hook", default="blocks.8.hook_resid_post")
    ap.add_argument("--quick", action="store_true", help="fewer rows (unsteered, additive, clamp, pair)")
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    loaded = load_model(Store(), BUILTIN_ID, device=args.device)
    model, tok = loaded.model, loaded.tokenizer
    sae = SAE(SAEConfig("topk", d_in=model.config.hidden_size, d_sae=8 * model.config.hidden_size, k=32),
              device=loaded.device, seed=0)
    ids = tok(PROMPT)["input_ids"]
    s = SamplingConfig(max_new_tokens=args.tokens, temperature=0.7, seed=0, stop_at_eos=False)

    def ours(n_rows=1, steerer=None):
        return lambda: list(iter_rows(model, ids, n_rows, s, steerer, args.hook))

    def hf():
        torch.manual_seed(0)
        model.generate(torch.tensor([ids], device=loaded.device), max_new_tokens=args.tokens,
                       min_new_tokens=args.tokens, do_sample=True, temperature=0.7, top_p=0.9)

    feats = [SteerFeature(123, 8.0)]
    rows = [("transformers generate (reference)", hf, 1),
            ("our loop, unsteered", ours(), 1)]
    for method in METHODS:
        rows.append((f"steered: {method}", ours(1, Steerer(SteeringConfig(feats, method=method), sae)), 1))
    rows.append(("pair: baseline + steered (batch 2), per row",
                 ours(2, Steerer(SteeringConfig(feats), sae, rows=torch.tensor([False, True]))), 2))
    if args.quick:  # on a crowded machine: the reference loop, one method per cost class, and the pair
        rows = [r for r in rows if r[0].split(": ")[-1] in ("our loop, unsteered", "additive", "clamp")
                or r[0].startswith("pair")]
    ours()()  # warm-up
    # Interleaved repetitions (every config once per round), best per config: load drifts hit all configs alike.
    best = {name: float("inf") for name, _, _ in rows}
    for _ in range(args.reps):
        for name, fn, _n in rows:
            best[name] = min(best[name], _timed(fn, 1))
    results = [(name, n * args.tokens / best[name]) for name, _, n in rows]
    base = next(rate for name, rate in results if name == "our loop, unsteered")
    print(f"\nSmolLM2-135M on {loaded.device} ({torch.get_num_threads()} threads), {args.tokens} new tokens, "
          f"hook {args.hook}, best of {args.reps}\n")
    print(f"| {'run':<45} | {'tokens/s':>9} | {'vs unsteered':>12} |")
    print(f"|{'-' * 47}|{'-' * 11}|{'-' * 14}|")
    for name, rate in results:
        print(f"| {name:<45} | {rate:>9.1f} | {rate / base:>12.3f} |")
    hook_cost(model, sae, ids, loaded.device)


def hook_cost(model, sae, ids, device, n: int = 200) -> None:
    """The steering hook alone on one decode step's activation [1, 1, d], against one decode step of the model:
    the per-token overhead steering adds, measured without the noise of whole generations."""
    d = model.config.hidden_size
    act = torch.randn(1, 1, d, device=device)
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids], device=device), use_cache=True)
        nxt = torch.tensor([[ids[-1]]], device=device)
        step = min(_timed(lambda: model(input_ids=nxt, past_key_values=out.past_key_values, use_cache=True), 1)
                   for _ in range(5))
        print(f"\none decode step: {step * 1e3:.1f} ms")
        print(f"| {'hook (one call, [1,1,d])':<28} | {'us/call':>8} | {'share of a step':>15} |")
        for method in METHODS:
            st = Steerer(SteeringConfig([SteerFeature(123, 8.0)], method=method), sae)
            st(act)
            secs = _timed(lambda: [st(act) for _ in range(n)], 3) / n
            print(f"| {method:<28} | {secs * 1e6:>8.1f} | {secs / step:>14.2%} |")


if __name__ == "__main__":
    main()
