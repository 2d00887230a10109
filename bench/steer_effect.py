"""Do the features with the highest output score steer at the suggested strength? (issue 25, "Measure")

    HF_HUB_OFFLINE=1 .venv/bin/python bench/steer_effect.py --home DIR --sae SAE_ID [--n 10] [--seeds 4] \
        [--tokens 32] [--only output|input] [--start RANK]

Method, fixed before any steering (nothing is re-picked after seeing results):

0. Features: the `--n` live features with the highest output score (`features/scores.py`, stored by the
   extraction), skipping BOS-only ones (every top example peaks on the start token); beside them the `--n` with
   the highest input score (the paper predicts they steer worse).
1. Strength: the app's own suggestion, by the code Find's one click runs: `steering.auto.feature_auto_sweep`
   (`auto.feature_strengths(max activation)`, 1/8× .. 4× max activation, on `auto.AUTO_PROMPTS`, `AUTO_SEEDS` seeds ×
   `AUTO_TOKENS` tokens; the largest strength whose perplexity stays ≤ `auto.FEATURE_SUGGEST_RATIO` × the
   baseline's there), with the effect tokens the tab gives it (`loader.effect_tokens_for`).
2. Effect, on *fresh* seeds (1000+, never used for the suggestion) and *other* neutral prompts (`EVAL_PROMPTS`):
   `--seeds` seeds × `--tokens` tokens × 3 prompts, unsteered baseline vs steered (same draws): the share of
   generated tokens among the feature's top-20 logit-lens tokens (compared as stripped lower-case text), pooled;
   the perplexity of the output under the unsteered model (geometric mean). "ok" = share above baseline and
   perplexity ≤ 1.5× baseline. Goal: ≥ 8 of 10 for the output-score features.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere without installing

from mistudio_core.features.logits import decoder_logits  # noqa: E402
from mistudio_core.model.hooks import unwrap  # noqa: E402
from mistudio_core.steering.auto import AUTO_PROMPTS, feature_auto_sweep  # noqa: E402
from mistudio_core.steering.effect import token_key  # noqa: E402
from mistudio_core.steering.generate import SamplingConfig  # noqa: E402
from mistudio_core.steering.loader import effect_tokens_for, load_results, load_target  # noqa: E402
from mistudio_core.steering.methods import SteerFeature, SteeringConfig  # noqa: E402
from mistudio_core.steering.sweep import MAX_PPL_RATIO, sweep  # noqa: E402
from mistudio_core.platform.store import Store  # noqa: E402

EVAL_PROMPTS = ("Let me tell you what I think about the year ahead.", "The weather today is",
                "Here is what happened next:")
FRESH_SEED = 1000


def pick(results, column: str, n: int, start: int = 0) -> list[int]:
    """The n live, not-BOS-only features with the largest `column` score, from rank `start` (0 = the best) on."""
    score = torch.nan_to_num(results.score_column(column), nan=-1.0)
    peaks, bos = results.peak_tokens(), results.start_token_id()
    out = []
    for f in score.argsort(descending=True).tolist():
        row = peaks[f][peaks[f] >= 0]
        if score[f] < 0 or results.t["count"][f] == 0 or len(row) == 0:
            continue
        if bos is not None and bool((row == bos).all()):
            continue   # BOS-only
        out.append(f)
        if len(out) == start + n:
            break
    return out[start:]


def evaluate(t, f: int, strength: float, keys, args) -> dict:
    """Baseline vs steered at `strength` on EVAL_PROMPTS × fresh seeds: pooled lens-token share, geo-mean ppl."""
    cfg = SteeringConfig([SteerFeature(f, 1.0)])
    sampling = SamplingConfig(max_new_tokens=args.tokens, temperature=0.7, top_p=0.9, seed=FRESH_SEED,
                              stop_at_eos=False)
    hits, n, logp = [0, 0], [0, 0], [[], []]
    for prompt in EVAL_PROMPTS:
        res = sweep(t.model, t.tokenizer, t.sae, t.hook_name, prompt, cfg, [strength], sampling, seeds=args.seeds,
                    effect_tokens={"keys": keys, "source": "logit lens top 20", "tokens": {}}, capability=False)
        for k, row in enumerate((res["baseline"], res["rows"][0])):
            hits[k] += row["effect_hits"]
            n[k] += row["effect_tokens"]
            logp[k].append(math.log(row["perplexity"]))
    ppl = [math.exp(sum(x) / len(x)) for x in logp]
    share = [h / max(m, 1) for h, m in zip(hits, n)]
    return {"share": share, "hits": hits, "n": n, "ppl": ppl,
            "ok": share[1] > share[0] and ppl[1] <= MAX_PPL_RATIO * ppl[0]}


def run_group(store, sae_id, t, results, feats: list[int], column: str, args) -> list[dict]:
    lens = decoder_logits(unwrap(t.model), t.sae.W_dec[torch.tensor(feats)], 20)[0]
    print(f"\n### top {len(feats)} by {column}\n")
    print("| feature | in score | out score | lens tokens | max act | suggested (× max act) | ppl base → steered | "
          "lens-token share base → steered | ok |")
    print("|---:|---:|---:|---|---:|---:|---|---|:---:|", flush=True)
    rows = []
    for f, ids in zip(feats, lens.tolist()):
        mx = float(results.t["max"][f])
        keys = sorted({token_key(t.tokenizer, i) for i in ids})
        auto = feature_auto_sweep(t.model, t.tokenizer, t.sae, t.hook_name, SteeringConfig([SteerFeature(f, 1.0)]),
                                  mx, effect_tokens=effect_tokens_for(store, t, sae_id, [f]))   # as the tab does
        c = auto["suggested_strength"]
        ev = evaluate(t, f, c, keys, args) if c else None
        rows.append({"feature": f, "ok": bool(ev and ev["ok"])})
        toks = ", ".join(repr(t.tokenizer.decode([i])) for i in ids[:4])
        ins, outs = (float(results.score_column(k)[f]) for k in ("input_score", "output_score"))
        sug = f"{c:.3g} ({c / mx:.2g}×)" if c else "none"
        body = (f"{ev['ppl'][0]:.1f} → {ev['ppl'][1]:.1f} | {ev['share'][0]:.3f} → {ev['share'][1]:.3f} "
                f"({ev['hits'][0]}/{ev['n'][0]} → {ev['hits'][1]}/{ev['n'][1]}) | {'yes' if ev['ok'] else 'no'}"
                if ev else "- | - | no")
        print(f"| {f} | {ins:.2f} | {outs:.3f} | {toks} | {mx:.2f} | {sug} | {body} |", flush=True)
    print(f"\n{column}: raised above baseline with perplexity ≤ {MAX_PPL_RATIO}× baseline for "
          f"{sum(r['ok'] for r in rows)} of {len(rows)}", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--home", default=None)
    ap.add_argument("--sae", required=True)
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--only", choices=("output", "input"), default=None)
    ap.add_argument("--start", type=int, default=0, help="first rank to measure (split a long run over processes)")
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
    store = Store(args.home)
    t = load_target(store, args.sae, device="cpu")
    results = load_results(store, args.sae)
    if results is None or not results.has_scores:
        sys.exit("this SAE has no extraction with input/output scores: run `extract run` first")
    t0, c0 = time.perf_counter(), time.process_time()
    print(f"SAE {args.sae} at {t.hook_name}; suggestion: auto sweep on {AUTO_PROMPTS}; evaluation: {args.seeds} fresh "
          f"seeds × {args.tokens} tokens × {EVAL_PROMPTS}")
    for column in ("output_score", "input_score"):
        if args.only and not column.startswith(args.only):
            continue
        run_group(store, args.sae, t, results, pick(results, column, args.n, args.start), column, args)
    print(f"\n{time.perf_counter() - t0:.0f} s wall, {time.process_time() - c0:.0f} CPU-s; load average "
          f"{os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
