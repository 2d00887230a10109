"""Does steering at the suggested strength put a feature's own tokens into the text? (issue 17, item 5)

    MISTUDIO_HOME=DIR HF_HUB_OFFLINE=1 .venv/bin/python bench/steer_effect.py --sae SAE_ID \
        [--extract-tokens 32768] [--n-features 10] [--multiples 0,1,2,4] [--sweep-seeds 1] [--seeds 4] \
        [--tokens 16] [--prompt TEXT] [--chat]

For the `--n-features` most token-specific features of the SAE (the share of a feature's top examples that peak on
its most common token; features with fewer than `--min-examples` examples are skipped), with the feature's
extraction results as its token set (`steering/effect.py`; `--extract-tokens N` runs the extraction on the built-in
corpus first when the SAE has none):

1. sweep additive strengths = multiples of the feature's max activation (its natural scale) over `--sweep-seeds`
   seeds; the suggested strength is the largest whose perplexity stays ≤ 1.5× the unsteered baseline's;
2. at that strength, on `--seeds` *fresh* seeds (never used to pick the strength), compare the share of generated
   tokens that are among the feature's top tokens: unsteered baseline vs steered. Beside it, for comparison, the
   share of the tokens W_dec[f] promotes through the unembedding ("output tokens"): a feature that *reads* a token
   at layer 8 need not make the model *write* it.

Prints one row per feature and how many of them steering raised above baseline (the issue's goal: ≥ 7 of 10).
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

from mistudio_core.errors import NotFoundError  # noqa: E402
from mistudio_core.features.results import FeatureResults  # noqa: E402
from mistudio_core.steering.effect import (SOURCE_EXTRACTION, effect_tokens, token_share,  # noqa: E402
                                           token_specificity)
from mistudio_core.steering.generate import SamplingConfig, _eos_ids, encode_prompt, iter_rows  # noqa: E402
from mistudio_core.steering.loader import load_target  # noqa: E402
from mistudio_core.steering.methods import Steerer, SteerFeature, SteeringConfig  # noqa: E402
from mistudio_core.steering.score import score_continuation, strip_eos  # noqa: E402
from mistudio_core.steering.sweep import sweep  # noqa: E402
from mistudio_core.store import Store  # noqa: E402

PROMPT = "Let me tell you what I think about the year ahead."
FRESH_SEED = 1000  # evaluation seeds start here: never the seeds the suggestion was picked on


def results_for(store: Store, sae_id: str, extract_tokens: int) -> FeatureResults:
    try:
        return FeatureResults.load(store, sae_id)
    except NotFoundError:
        if not extract_tokens:
            raise
    from mistudio_core.features.extract import ExtractConfig
    from mistudio_core.features.job import run_extraction

    t0 = time.perf_counter()
    run_extraction(store, ExtractConfig(sae_id=sae_id, dataset_id="sotu", n_tokens=extract_tokens, top_k=50),
                   progress=lambda f, m: print(f"extract {f:.0%} {m}", file=sys.stderr, flush=True))
    print(f"extracted {extract_tokens} tokens in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return FeatureResults.load(store, sae_id)


def pick_features(results: FeatureResults, n: int, min_examples: int) -> list[tuple[int, float]]:
    spec, freq = token_specificity(results, min_examples).tolist(), results.frequencies().tolist()
    order = sorted(range(len(spec)), key=lambda f: (-spec[f], -freq[f]))  # ties: the more frequent feature
    return [(f, float(spec[f])) for f in order[:n] if spec[f] > 0]


def evaluate(t, f: int, strength: float, sampling: SamplingConfig, n_seeds: int, prompt_ids, keysets: dict) -> dict:
    """Unsteered baseline (row 0) vs steered at `strength` (row 1) on `n_seeds` fresh seeds: per key set the
    token-weighted share of generated tokens in it, and each row's perplexity (geometric mean over seeds)."""
    eos = _eos_ids(t.tokenizer, t.model)
    hits, n, logppl = {k: [0, 0] for k in keysets}, [0, 0], [0.0, 0.0]
    for k in range(n_seeds):
        s = SamplingConfig.from_dict({**sampling.to_dict(), "seed": FRESH_SEED + k})
        steerer = Steerer(SteeringConfig([SteerFeature(f, 1.0)]), t.sae, rows=torch.tensor([False, True]),
                          row_scale=torch.tensor([0.0, strength]))
        for rows in iter_rows(t.model, prompt_ids, 2, s, steerer, t.hook_name, eos):
            pass
        for r in (0, 1):
            toks = strip_eos(rows[r], eos)
            for name, keys in keysets.items():
                hits[name][r] += token_share(t.tokenizer, toks, keys)[0]
            n[r] += len(toks)
            logppl[r] += math.log(score_continuation(t.model, t.sae, t.hook_name, prompt_ids, toks, [f])["perplexity"])
    return {"share": {name: (h[0] / max(n[0], 1), h[1] / max(n[1], 1)) for name, h in hits.items()},
            "ppl": (math.exp(logppl[0] / n_seeds), math.exp(logppl[1] / n_seeds))}


def run_feature(t, results, f: int, args) -> dict:
    tokens = effect_tokens(t.model, t.tokenizer, t.sae, [f], results, n=args.top_tokens)
    out_tokens = effect_tokens(t.model, t.tokenizer, t.sae, [f], None, n=args.top_tokens)  # what W_dec[f] promotes
    scale = float(results.t["max"][f])  # the feature's largest activation in the extraction sample
    strengths = [round(m * scale, 3) for m in args.multiples]
    cfg = SteeringConfig([SteerFeature(f, 1.0)], method="additive")
    sampling = SamplingConfig(max_new_tokens=args.tokens, temperature=0.7, top_p=0.9, seed=0, chat=args.chat,
                              stop_at_eos=False)
    swept = sweep(t.model, t.tokenizer, t.sae, t.hook_name, args.prompt, cfg, strengths, sampling,
                  seeds=args.sweep_seeds, effect_tokens=tokens)
    row = {"feature": f, "tokens": tokens["tokens"][f][:3], "out_tokens": out_tokens["tokens"][f][:3],
           "source": tokens["source"], "max_act": scale, "suggested": swept["suggested_strength"]}
    if not swept["suggested_strength"]:   # None, or 0: no strength kept the text fluent
        return {**row, "ev": None, "raised": False}
    ev = evaluate(t, f, swept["suggested_strength"], sampling, args.seeds,
                  encode_prompt(t.tokenizer, args.prompt, args.chat),
                  {"top": tokens["keys"], "out": out_tokens["keys"]})
    base, steered = ev["share"]["top"]
    return {**row, "ev": ev, "raised": steered > base}


def print_header(args, hook: str, source: str) -> None:
    print(f"\nSAE {args.sae} at {hook}; additive; prompt {args.prompt!r}; strengths = max activation × "
          f"{args.multiples}; suggestion from {args.sweep_seeds} seed(s), effect on {args.seeds} fresh seeds × "
          f"{args.tokens} tokens\n'top tokens' = {source} (the effect score); 'output tokens' = unembedding "
          f"alignment of W_dec[f] (what the direction promotes), for comparison\n")
    print("| feature | specificity | top tokens | max act | suggested | ppl base → steered | top-token share "
          "base → steered | raised | output tokens | output-token share base → steered |")
    print("|---:|---:|---|---:|---:|---|---|:---:|---|---|", flush=True)


def print_row(r: dict) -> None:
    """One feature's line, printed as soon as it is measured (a long run still leaves its table behind)."""
    ev = r["ev"]
    ppl = f"{ev['ppl'][0]:.1f} → {ev['ppl'][1]:.1f}" if ev else "-"
    top = "{:.3f} → {:.3f}".format(*ev["share"]["top"]) if ev else "-"
    out = "{:.3f} → {:.3f}".format(*ev["share"]["out"]) if ev else "-"
    print(f"| {r['feature']} | {r['specificity']:.2f} | {', '.join(map(repr, r['tokens']))} | "
          f"{r['max_act']:.2f} | {'-' if not r['suggested'] else format(r['suggested'], 'g')} | {ppl} | {top} | "
          f"{'yes' if r['raised'] else 'no'} | {', '.join(map(repr, r['out_tokens']))} | {out} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sae", required=True)
    ap.add_argument("--extract-tokens", type=int, default=0, help="extract on sotu first if the SAE has no results")
    ap.add_argument("--n-features", type=int, default=10)
    ap.add_argument("--min-examples", type=int, default=20)
    ap.add_argument("--top-tokens", type=int, default=5, help="size of each feature's token set")
    ap.add_argument("--multiples", default="0,1,2,4", help="strengths as multiples of the max activation")
    ap.add_argument("--sweep-seeds", type=int, default=1)
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=16)
    ap.add_argument("--prompt", default=PROMPT)
    ap.add_argument("--chat", action="store_true")
    args = ap.parse_args()
    args.multiples = [float(x) for x in args.multiples.split(",")]
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    store = Store()
    t = load_target(store, args.sae)
    results = results_for(store, args.sae, args.extract_tokens)
    t0, cpu0, rows = time.perf_counter(), time.process_time(), []
    print_header(args, t.hook_name, SOURCE_EXTRACTION)
    for f, spec in pick_features(results, args.n_features, args.min_examples):
        rows.append({**run_feature(t, results, f, args), "specificity": spec})
        print_row(rows[-1])
    print(f"\nraised above baseline: {sum(r['raised'] for r in rows)} of {len(rows)} (goal: >= 7 of 10)")
    print(f"\n{time.perf_counter() - t0:.0f} s wall, {time.process_time() - cpu0:.0f} CPU-s; load average "
          f"{os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
