"""Is steering measurable? How often a word class appears in SmolLM2's outputs, baseline vs steered, over seeds.

    MISTUDIO_HOME=~/.cache/mistudio-test-home HF_HUB_OFFLINE=1 .venv/bin/python bench/steer_effect.py \
        [--sae SAE_ID --feature F] [--words dog,dogs,puppy] [--strengths 0,120,300] [--seeds 8] [--tokens 24] \
        [--prompt TEXT] [--chat]

With `--sae`, the feature is a library SAE's latent (its model and hook come from the manifest). Without it, a
stand-in "SAE" is built whose feature 0 decodes to the unit-normed input embedding of the first word: not a
trained feature, but the same code path (hook, Steerer, sampling, scoring), so it checks that a direction with a
known meaning moves the text. Each seed runs all strengths as rows of one batch with shared random draws, so the
strength-0 row is the baseline of that seed. Prints, per strength, the fraction of outputs containing a class word,
the mean count of class words, the perplexity under the unsteered model, and the feature's mean activation when
the unsteered model re-reads the output (does the text itself carry the feature?).
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere without installing

from mistudio_core.models import BUILTIN_ID, load_model  # noqa: E402
from mistudio_core.sae.config import SAEConfig  # noqa: E402
from mistudio_core.sae.model import SAE  # noqa: E402
from mistudio_core.steering.generate import SamplingConfig, decode, encode_prompt, iter_rows  # noqa: E402
from mistudio_core.steering.loader import load_target  # noqa: E402
from mistudio_core.steering.methods import Steerer, SteerFeature, SteeringConfig  # noqa: E402
from mistudio_core.steering.sweep import score_continuation  # noqa: E402
from mistudio_core.store import Store  # noqa: E402

PROMPT = "Here is a short story about my weekend:"


def stand_in(model, tokenizer, word: str) -> SAE:
    """An SAE whose feature 0 is the direction of `word`'s input embedding (the other rows are random)."""
    d = model.config.hidden_size
    sae = SAE(SAEConfig("standard", d_in=d, d_sae=16), seed=0)
    tid = tokenizer(" " + word, add_special_tokens=False)["input_ids"][0]
    with torch.no_grad():
        e = model.get_input_embeddings().weight[tid].float()
        sae.W_dec[0] = e / e.norm()
        sae.W_enc[:, 0] = sae.W_dec[0]
    return sae


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sae")
    ap.add_argument("--feature", type=int, default=0)
    ap.add_argument("--hook", default="blocks.8.hook_resid_post", help="used with the stand-in only")
    ap.add_argument("--words", default="dog,dogs,puppy,puppies")
    ap.add_argument("--pattern", help="a regular expression for the class instead of --words, e.g. years: "
                                      r"'\b(1[6-9]|20)\d\d\b'")
    ap.add_argument("--strengths", default="0,120,300")
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=24)
    ap.add_argument("--method", default="additive")
    ap.add_argument("--prompt", default=PROMPT)
    ap.add_argument("--chat", action="store_true", help="wrap the prompt in the model's chat template")
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    words = [w.strip().lower() for w in args.words.split(",") if w.strip()]
    strengths = [float(x) for x in args.strengths.split(",")]
    if args.sae:
        t = load_target(Store(), args.sae)
        model, tok, sae, hook = t.model, t.tokenizer, t.sae, t.hook_name
    else:
        loaded = load_model(Store(), BUILTIN_ID)
        model, tok, hook = loaded.model, loaded.tokenizer, args.hook
        sae = stand_in(model, tok, words[0])
    cfg = SteeringConfig([SteerFeature(args.feature, 1.0)], method=args.method)
    ids = encode_prompt(tok, args.prompt, args.chat)
    pattern = re.compile(args.pattern if args.pattern else r"\b(" + "|".join(map(re.escape, words)) + r")\b",
                         re.IGNORECASE)
    stats = {s: {"hit": 0, "count": 0, "ppl": [], "act": []} for s in strengths}
    example = {}
    for seed in range(args.seeds):
        sampling = SamplingConfig(max_new_tokens=args.tokens, temperature=0.8, top_p=0.95, seed=seed,
                                  stop_at_eos=False)
        rows = None
        for rows in iter_rows(model, ids, len(strengths), sampling,
                              Steerer(cfg, sae, row_scale=torch.tensor(strengths)), hook):
            pass
        for r, s in enumerate(strengths):
            text = decode(tok, rows[r])
            n = len(pattern.findall(text))
            stats[s]["hit"] += n > 0
            stats[s]["count"] += n
            score = score_continuation(model, sae, hook, ids, rows[r], [args.feature])
            stats[s]["ppl"].append(score["perplexity"])
            stats[s]["act"].append(score["feature_mean"][args.feature])
            example.setdefault(s, text)
        print(f"seed {seed} done", file=sys.stderr, flush=True)
    print(f"\n{'stand-in (embedding of ' + repr(words[0]) + ')' if not args.sae else args.sae} feature "
          f"{args.feature} at {hook}, {args.method}, {args.seeds} seeds x {args.tokens} tokens, "
          f"class {args.pattern or words}\n")
    print(f"prompt {args.prompt!r}{' (chat template)' if args.chat else ''}\n")
    print(f"| {'strength':>8} | {'outputs with a class word':>25} | {'class words / output':>20} | "
          f"{'median ppl':>10} | {'feature act. (unsteered re-read)':>32} |")
    print(f"|{'-' * 10}|{'-' * 27}|{'-' * 22}|{'-' * 12}|{'-' * 34}|")
    for s in strengths:
        st = stats[s]
        ppl = sorted(st["ppl"])[len(st["ppl"]) // 2]
        act = sum(st["act"]) / len(st["act"])
        print(f"| {s:>8g} | {st['hit']:>17}/{args.seeds:<7} | {st['count'] / args.seeds:>20.2f} | {ppl:>10.2f} | "
              f"{act:>32.3f} |")
    for s in strengths:
        print(f"\nstrength {s:g}, seed 0: {example[s]!r}")


if __name__ == "__main__":
    main()
