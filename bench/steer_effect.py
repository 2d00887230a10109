"""Does steering at the suggested strength put a feature's own tokens into the text? (issue 17, item 5)

    HF_HUB_OFFLINE=1 .venv/bin/python bench/steer_effect.py --home DIR --sae SAE_ID [--extract-tokens 32768] \
        [--n-features 10] [--multiples 0.25,0.5,0.75,1,1.25,1.5,2] [--positions generated] [--sweep-seeds 2] \
        [--seeds 6] [--tokens 24] [--prompt TEXT] [--chat]

Method, fixed before any steering (nothing is re-picked after seeing results):

0. Features: the `--n-features` most token-specific features over WORD tokens (`steer_select.py`: alphabetic, 3+
   characters, not a stopword; specificity = share of the feature's top examples that peak on its most common
   word). Each feature's token set (the effect score's) is what the app uses: the tokens its top examples peak on,
   most frequent first (`steering/effect.py`). `--extract-tokens N` extracts on the built-in corpus first when the
   SAE has no results.
1. Strengths: multiples of the feature's max activation in the extraction sample. Additive steering adds c·W_dec[f]
   and the library stores decoders with the activation normalisation folded in, so c = m × max activation adds
   m times the largest contribution the feature made to the residual — the grid is in the SAE's own units,
   whatever its decoder norm. The table shows that change as a fraction of the mean residual norm (Δ/‖h‖).
2. Suggested strength: the app's rule, by the app's code (`steering.sweep`): the largest strength whose perplexity
   stays ≤ 1.5× the unsteered baseline's, over `--sweep-seeds` seeds. `--positions generated` (default) steers
   only generated positions, so the prompt is read as written.
3. Effect: at that strength, on `--seeds` *fresh* seeds (never used to pick the strength), the share of generated
   tokens among the feature's top tokens, unsteered baseline vs steered (pooled over seeds; baseline and steered
   share each seed's random draws). "raised" = steered share > baseline share. Beside it, for comparison, the share
   of the tokens W_dec[f] promotes through the unembedding ("output tokens"): a feature that *reads* a token at
   layer 8 need not make the model *write* it. And "word Δlog p": adding W_dec[f] × max activation at the last
   position of three neutral prompts, how much the next-token log-probability of the feature's word rises through
   the rest of the model (`steer_select.own_word_logit_effect`) — the size of the push steering can give the word.

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
sys.path.insert(0, str(Path(__file__).resolve().parent))

from mistudio_core.errors import NotFoundError  # noqa: E402
from mistudio_core.features.results import FeatureResults  # noqa: E402
from mistudio_core.steering.effect import SOURCE_EXTRACTION, effect_tokens, token_share  # noqa: E402
from mistudio_core.steering.generate import SamplingConfig, _eos_ids, encode_prompt, iter_rows  # noqa: E402
from mistudio_core.steering.loader import load_target  # noqa: E402
from mistudio_core.steering.methods import Steerer, SteerFeature, SteeringConfig  # noqa: E402
from mistudio_core.steering.score import score_continuation, strip_eos  # noqa: E402
from mistudio_core.steering.sweep import MAX_PPL_RATIO, sweep  # noqa: E402
from mistudio_core.store import Store  # noqa: E402
from steer_select import own_word_logit_effect, pick_word_features  # noqa: E402

PROMPT = "Let me tell you what I think about the year ahead."
WRITE_PROMPTS = (PROMPT, "The report says that", "In my opinion, the most important thing is")
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


@torch.no_grad()
def residual_norm(t, prompt_ids: list[int]) -> float:
    """Mean ‖h‖ at the hook over the prompt's positions after the first (position 0 carries the huge
    start-of-sequence norm, which would make every steering vector look small)."""
    from mistudio_core.hooks import intervene

    seen = {}

    def record(act):
        seen["h"] = act
        return act

    with intervene(t.model, t.hook_name, record):
        t.model(input_ids=torch.tensor([prompt_ids], device=next(t.model.parameters()).device))
    return float(seen["h"][0, 1:].float().norm(dim=-1).mean())


def evaluate(t, cfg: SteeringConfig, strength: float, sampling: SamplingConfig, n_seeds: int, prompt_ids,
             keysets: dict) -> dict:
    """Unsteered baseline (row 0) vs steered at `strength` (row 1) on `n_seeds` fresh seeds: per key set the
    pooled (hits, tokens) of each row, the expected share of the "top" set per row (the model's probability of
    those tokens at each generated position, averaged: what the sampled share estimates), and each row's
    perplexity (geometric mean over seeds)."""
    from mistudio_core.steering.effect import key_mask

    eos, f = _eos_ids(t.tokenizer, t.model), cfg.features[0].index
    hits, n, logppl, expected = {k: [0, 0] for k in keysets}, [0, 0], [0.0, 0.0], [[], []]
    mask = None
    for k in range(n_seeds):
        s = SamplingConfig.from_dict({**sampling.to_dict(), "seed": FRESH_SEED + k})
        steerer = Steerer(cfg, t.sae, rows=torch.tensor([False, True]), row_scale=torch.tensor([0.0, strength]))
        probs = []

        def record(logits):
            nonlocal mask
            if mask is None:
                mask = key_mask(t.tokenizer, keysets["top"], logits.shape[-1])
            probs.append(torch.softmax(logits.float(), -1)[:, mask].sum(-1))

        for rows in iter_rows(t.model, prompt_ids, 2, s, steerer, t.hook_name, eos, on_logits=record):
            pass
        for r in (0, 1):
            toks = strip_eos(rows[r], eos)
            for name, keys in keysets.items():
                hits[name][r] += token_share(t.tokenizer, toks, keys)[0]
            n[r] += len(toks)
            expected[r] += [float(p[r]) for p in probs[:len(toks)]]
            logppl[r] += math.log(score_continuation(t.model, t.sae, t.hook_name, prompt_ids, toks, [f])["perplexity"])
    return {"hits": hits, "n": n, "ppl": (math.exp(logppl[0] / n_seeds), math.exp(logppl[1] / n_seeds)),
            "expected": tuple(sum(e) / max(len(e), 1) for e in expected)}


def run_feature(t, results, f: int, args, h_norm: float) -> dict:
    tokens = effect_tokens(t.model, t.tokenizer, t.sae, [f], results, n=args.top_tokens)
    out_tokens = effect_tokens(t.model, t.tokenizer, t.sae, [f], None, n=args.top_tokens)  # what W_dec[f] promotes
    scale = float(results.t["max"][f])  # the feature's largest activation in the extraction sample
    cfg = SteeringConfig([SteerFeature(f, 1.0)], method="additive", positions=args.positions)
    sampling = SamplingConfig(max_new_tokens=args.tokens, temperature=0.7, top_p=0.9, seed=0, chat=args.chat,
                              stop_at_eos=False)
    swept = sweep(t.model, t.tokenizer, t.sae, t.hook_name, args.prompt, cfg,
                  [round(m * scale, 4) for m in args.multiples], sampling, seeds=args.sweep_seeds,
                  effect_tokens=tokens, max_ppl_ratio=MAX_PPL_RATIO)
    c = swept["suggested_strength"]
    row = {"feature": f, "tokens": tokens["tokens"][f][:3], "out_tokens": out_tokens["tokens"][f][:3],
           "max_act": scale, "suggested": c, "ev": None, "raised": False, "raised_expected": False,
           "dh": c * float(t.sae.W_dec[f].detach().norm()) / h_norm if c else None}
    if c:   # None, or 0: no strength kept the text fluent -> counted as not raised
        row["ev"] = evaluate(t, cfg, c, sampling, args.seeds, encode_prompt(t.tokenizer, args.prompt, args.chat),
                             {"top": tokens["keys"], "out": out_tokens["keys"]})
        (b, s), (nb, ns) = row["ev"]["hits"]["top"], row["ev"]["n"]
        row["raised"] = s / max(ns, 1) > b / max(nb, 1)
        row["raised_expected"] = row["ev"]["expected"][1] > row["ev"]["expected"][0]
    return row


def print_header(args, hook: str, h_norm: float) -> None:
    print(f"\nSAE {args.sae} at {hook}; additive at {args.positions} positions; prompt {args.prompt!r}; mean "
          f"‖h‖ {h_norm:.1f}\nstrengths = max activation × {args.multiples}; suggested = largest with perplexity ≤ "
          f"{MAX_PPL_RATIO}× baseline over {args.sweep_seeds} seed(s); effect on {args.seeds} fresh seeds × "
          f"{args.tokens} tokens\n'top tokens' = {SOURCE_EXTRACTION} (the effect score); 'output tokens' = "
          "unembedding alignment of W_dec[f] (what the direction promotes), for comparison\n")
    print("'word Δlog p' = how much adding W_dec[f] × max activation at the last position raises the next-token "
          "log-probability of the feature's word, through the rest of the model (nats, mean over 3 prompts)\n")
    print("| feature | word spec. | top tokens | word Δlog p | max act | suggested (× max) | Δ/‖h‖ | ppl base → "
          "steered | top-token share base → steered | raised | expected share base → steered | raised (expected) | "
          "output tokens | output-token share base → steered |")
    print("|---:|---:|---|---:|---:|---:|---:|---|---|:---:|---|:---:|---|---|", flush=True)


def _share(ev: dict, name: str) -> str:
    (b, s), (nb, ns) = ev["hits"][name], ev["n"]
    return f"{b / max(nb, 1):.3f} → {s / max(ns, 1):.3f} ({b}/{nb} → {s}/{ns})"


def print_row(r: dict) -> None:
    """One feature's line, printed as soon as it is measured (a long run still leaves its table behind)."""
    ev = r["ev"]
    sug = f"{r['suggested']:.3g} ({r['suggested'] / r['max_act']:.2g}×)" if r["suggested"] else "none"
    print(f"| {r['feature']} | {r['specificity']:.2f} ({r['word']!r}) | {', '.join(map(repr, r['tokens']))} | "
          f"{r['write']:+.2f} | {r['max_act']:.2f} | {sug} | {'-' if r['dh'] is None else format(r['dh'], '.2f')} | "
          f"{'{:.1f} → {:.1f}'.format(*ev['ppl']) if ev else '-'} | {_share(ev, 'top') if ev else '-'} | "
          f"{'yes' if r['raised'] else 'no'} | "
          f"{'{:.5f} → {:.5f}'.format(*ev['expected']) if ev else '-'} | {'yes' if r['raised_expected'] else 'no'} | "
          f"{', '.join(map(repr, r['out_tokens']))} | "
          f"{_share(ev, 'out') if ev else '-'} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--home", default=None, help="data directory (default: MISTUDIO_HOME or ~/.mistudio)")
    ap.add_argument("--sae", required=True)
    ap.add_argument("--extract-tokens", type=int, default=0, help="extract on sotu first if the SAE has no results")
    ap.add_argument("--n-features", type=int, default=10)
    ap.add_argument("--min-examples", type=int, default=20)
    ap.add_argument("--top-tokens", type=int, default=5, help="size of each feature's token set")
    ap.add_argument("--multiples", default="0.25,0.5,0.75,1,1.25,1.5,2",
                    help="strengths as multiples of the feature's max activation")
    ap.add_argument("--positions", default="generated", choices=("generated", "all"))
    ap.add_argument("--sweep-seeds", type=int, default=2)
    ap.add_argument("--seeds", type=int, default=6)
    ap.add_argument("--tokens", type=int, default=24)
    ap.add_argument("--prompt", default=PROMPT)
    ap.add_argument("--chat", action="store_true")
    args = ap.parse_args()
    args.multiples = [float(x) for x in args.multiples.split(",")]
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    store = Store(args.home)
    t = load_target(store, args.sae)
    results = results_for(store, args.sae, args.extract_tokens)
    picked = pick_word_features(results, t.tokenizer, args.n_features, args.min_examples)  # fixed before steering
    h_norm = residual_norm(t, encode_prompt(t.tokenizer, args.prompt, args.chat))
    write = own_word_logit_effect(t, results, picked, WRITE_PROMPTS)
    t0, cpu0, rows = time.perf_counter(), time.process_time(), []
    print_header(args, t.hook_name, h_norm)
    for f, spec, word in picked:
        rows.append({**run_feature(t, results, f, args, h_norm), "specificity": spec, "word": word,
                     "write": write[f]})
        print_row(rows[-1])
    print(f"\nraised above baseline: sampled share {sum(r['raised'] for r in rows)} of {len(rows)}, expected share "
          f"{sum(r['raised_expected'] for r in rows)} of {len(rows)} (goal: >= 7 of 10)")
    print(f"\n{time.perf_counter() - t0:.0f} s wall, {time.process_time() - cpu0:.0f} CPU-s; load average "
          f"{os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
