"""The "yelling" run-of-show on the built-in model: can a concept vector, and the SAE features the tool finds for it,
make the model shout? (issue 25, "Measure")

    HF_HUB_OFFLINE=1 .venv/bin/python bench/steer_yelling.py --home DIR --sae SAE_ID [--seeds 4] [--tokens 32]

Method (the app's code and defaults throughout; no hand-picked feature indices):

1. Concept: the built-in `yelling` pair (`mistudio_core/steering/concepts/yelling.json`, shouted vs plain sentences)
   → `concept.concept_vector` at the SAE's hook: the mean difference, its decomposition onto the SAE's features
   (the features with the largest share of the vector: what carries it), and the features the tool selects to
   steer with (`concept_select`: the candidates whose own output effect best reproduces the vector's, each at its
   fitted strength — what the Steering tab ticks).
2. Two ways to steer: the raw vector (`concept.as_vector`) and the selected features (`concept.as_features`, each
   at multiplier × its fitted strength).
3. Suggested multiplier: `auto.auto_sweep` over `concept.CONCEPT_MULTIPLES` on the pair's own prompts, effect =
   share of capital letters, pick = strongest effect with perplexity ≤ `concept.CONCEPT_MAX_PPL_RATIO` × baseline.
4. Evaluation on fresh seeds (1000+): `--seeds` seeds × `--tokens` tokens × the pair's 3 prompts: share of capital
   letters among the generated letters (mean over outputs) and perplexity of the output under the unsteered model
   (geometric mean), baseline vs steered. Goal: baseline < 10%, steered ≥ 50% at perplexity ≤ 3× baseline.
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

from mistudio_core.steering import concept as C  # noqa: E402
from mistudio_core.steering.auto import auto_sweep  # noqa: E402
from mistudio_core.steering.generate import SamplingConfig  # noqa: E402
from mistudio_core.steering.loader import load_target, stats_for  # noqa: E402
from mistudio_core.steering.sweep import sweep  # noqa: E402
from mistudio_core.platform.store import Store  # noqa: E402

FRESH_SEED = 1000


def evaluate(t, cfg, mult: float, prompts, args) -> dict:
    sampling = SamplingConfig(max_new_tokens=args.tokens, temperature=0.7, top_p=0.9, seed=FRESH_SEED,
                              stop_at_eos=False)
    caps, logp, sample, cap = [[], []], [[], []], "", None
    for i, prompt in enumerate(prompts):
        res = sweep(t.model, t.tokenizer, t.sae, t.hook_name, prompt, cfg, [mult], sampling, seeds=args.seeds,
                    capability=i == 0, text_effect=("caps", C.uppercase_share))
        for k, row in enumerate((res["baseline"], res["rows"][0])):
            caps[k].append(row["text_effect"])
            logp[k].append(math.log(row["perplexity"]))
        if i == 0:
            sample, cap = res["rows"][0]["text"], (res["baseline"]["capability_ppl"], res["rows"][0]["capability_ppl"])
    mean = [sum(v for v in c if v is not None) / max(1, sum(v is not None for v in c)) for c in caps]
    ppl = [math.exp(sum(x) / len(x)) for x in logp]
    return {"caps": mean, "ppl": ppl, "sample": sample, "capability": cap,
            "ok": mean[0] < 0.10 and mean[1] >= 0.50 and ppl[1] <= C.CONCEPT_MAX_PPL_RATIO * ppl[0]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--home", default=None)
    ap.add_argument("--sae", required=True)
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=32)
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
    t0, c0 = time.perf_counter(), time.process_time()
    store = Store(args.home)
    t = load_target(store, args.sae, device="cpu")
    d = C.load_builtin("yelling")
    c1 = time.process_time()
    cv = C.concept_vector(t.model, t.tokenizer, t.sae, t.hook_name, d["positive"], d["negative"], "yelling",
                          dead=stats_for(store, args.sae).get("dead"))
    print(f"SAE {args.sae} at {t.hook_name}; yelling vector from {cv['n_pairs']} pairs, norm {cv['norm']:.1f}, "
          f"SAE reconstructs {cv['reconstructed_share']:.0%} of it; built with the features in "
          f"{time.process_time() - c1:.0f} CPU-s.\nfeatures that carry it (index: share of the vector): "
          + ", ".join(f"{f['index']}: {f['share']:.3f}" for f in cv["features"][:12])
          + "\nfeatures found to steer with (index: push, strength at multiplier 1): "
          + ", ".join(f"{f['index']}: {f['push']:.2f}, {f['strength']:.2f}" for f in cv["writers"]))
    print(f"evaluation: {args.seeds} fresh seeds × {args.tokens} tokens × {d['prompts']}\n")
    print("| steer with | suggested multiplier | caps base → steered | ppl base → steered (ratio) | capability ppl "
          "base → steered | ok | sample |")
    print("|---|---:|---|---|---|:---:|---|", flush=True)
    for name, cfg in (("raw concept vector", C.as_vector(cv)), (f"the {len(cv['writers'])} features found",
                                                                 C.as_features(cv))):
        auto = auto_sweep(t.model, t.tokenizer, t.sae, t.hook_name, cfg, list(C.CONCEPT_MULTIPLES),
                          prompts=d["prompts"], text_effect=("caps", C.uppercase_share),
                          max_new_tokens=C.CONCEPT_TOKENS,
                          max_ppl_ratio=C.CONCEPT_MAX_PPL_RATIO, pick="effect")
        m = auto["suggested_strength"]
        if m is None:
            print(f"| {name} | none | - | - | - | no | {auto['suggestion']} |", flush=True)
            continue
        ev = evaluate(t, cfg, m, d["prompts"], args)
        b, s = ev["ppl"]
        cb, cs = ev["capability"]
        print(f"| {name} | {m:g} | {ev['caps'][0]:.1%} → {ev['caps'][1]:.1%} | {b:.1f} → {s:.1f} ({s / b:.2f}×) | "
              f"{cb:.1f} → {cs:.1f} | {'yes' if ev['ok'] else 'no'} | {ev['sample'][:90]!r} |", flush=True)
    print(f"\n{time.perf_counter() - t0:.0f} s wall, {time.process_time() - c0:.0f} CPU-s; load average "
          f"{os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
