"""Does suppressing a feature change what the model predicts where the feature fires? Clamp it to 0 (feature-space
suppression, no SAE error added) on the feature's own top contexts and compare the next-token prediction.

    MISTUDIO_HOME=~/.cache/mistudio-test-home HF_HUB_OFFLINE=1 .venv/bin/python bench/steer_suppress.py \
        --sae SAE_ID --feature F [--pattern '^\\s*\\d'] [--n 40] [--control 5]

Contexts are the feature's top examples from its extraction (run `extract run` first), cut right after the peak
token plus the `--horizon` tokens that followed in the corpus (teacher-forced). For each, one forward unsteered
and one with the feature clamped to 0 at every position. Reported, as means over contexts and over the horizon's
positions: the feature's activation at the peak (re-encoded from the hook after the intervention), the
probability of the token that really came next in the corpus, the probability mass on the token class
`--pattern` (a regex on decoded tokens, e.g. digits), and KL(unsteered ‖ suppressed). `--control` random features
that are active at the peak are suppressed the same way, one at a time, as a reference for how much an arbitrary
active feature moves the prediction.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere without installing

from mistudio_core.features.results import FeatureResults  # noqa: E402
from mistudio_core.model.hooks import intervene  # noqa: E402
from mistudio_core.steering.loader import load_target  # noqa: E402
from mistudio_core.steering.methods import Steerer, SteerFeature, SteeringConfig  # noqa: E402
from mistudio_core.platform.store import Store  # noqa: E402


def contexts(results: FeatureResults, feature: int, n: int, horizon: int, bos: int | None
             ) -> list[tuple[list[int], int]]:
    """(ids through the peak plus the corpus's next `horizon` tokens, index of the peak) for the top `n`
    examples that have `horizon` tokens after the peak."""
    out = []
    for ex in results.feature(feature)["top_examples"]:
        ids, peak = list(ex["token_ids"]), ex["peak"]
        if peak + horizon >= len(ids):
            continue
        head = [bos] if bos is not None and ids[0] != bos else []
        out.append((head + ids[:peak + 1 + horizon], len(head) + peak))
        if len(out) == n:
            break
    return out


@torch.no_grad()
def forward(model, sae, hook: str, ids: list[int], peak: int, steer: Steerer | None
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probs at positions peak.. (predicting the tokens after the peak) and the SAE code at the peak as the
    hook saw it (after `steer`)."""
    seen = {}

    def hook_fn(act):
        act = steer(act) if steer is not None else act
        seen["act"] = act[0, peak]
        return act

    if steer is not None:
        steer.reset()
    with intervene(model, hook, hook_fn):
        logits = model(input_ids=torch.tensor([ids])).logits[0, peak:-1].float()
    return torch.log_softmax(logits, -1), sae.encode(seen["act"].to(sae.W_dec.dtype)[None])[0]


def measure(model, sae, hook, ctxs, features: list[int], class_mask: torch.Tensor | None,
            method: str = "clamp") -> dict:
    """Means over contexts (and over the horizon's positions) of activation (summed over `features`), P(true
    token), class mass and KL, with `features` all clamped to 0."""
    steer = Steerer(SteeringConfig([SteerFeature(f, 0.0) for f in features], method=method), sae)
    rows = {"act": [], "act_sup": [], "p_next": [], "p_next_sup": [], "p_class": [], "p_class_sup": [], "kl": []}
    for ids, peak in ctxs:
        truth = torch.tensor(ids[peak + 1:])[:, None]
        lp, z = forward(model, sae, hook, ids, peak, None)
        lp_s, z_s = forward(model, sae, hook, ids, peak, steer)
        rows["act"].append(float(z[features].sum()))
        rows["act_sup"].append(float(z_s[features].sum()))
        rows["p_next"].append(float(lp.gather(-1, truth).exp().mean()))
        rows["p_next_sup"].append(float(lp_s.gather(-1, truth).exp().mean()))
        if class_mask is not None:
            rows["p_class"].append(float(lp.exp()[:, class_mask].sum(-1).mean()))
            rows["p_class_sup"].append(float(lp_s.exp()[:, class_mask].sum(-1).mean()))
        rows["kl"].append(float((lp.exp() * (lp - lp_s)).sum(-1).mean()))
    return {k: sum(v) / len(v) if v else float("nan") for k, v in rows.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sae", required=True)
    ap.add_argument("--feature", required=True, help="a feature index, or several (comma-separated) suppressed "
                                                     "together; the first one's top contexts are used")
    ap.add_argument("--pattern", help=r"token class as a regex on decoded tokens, e.g. '^\s*\d' (digits)")
    ap.add_argument("--n", type=int, default=40, help="top contexts to use")
    ap.add_argument("--control", type=int, default=5, help="random active features suppressed for reference")
    ap.add_argument("--method", default="clamp", choices=["clamp", "clamp_exact"])
    ap.add_argument("--horizon", type=int, default=3, help="corpus tokens after the peak to score (teacher-forced)")
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    store = Store()
    t = load_target(store, args.sae)
    model, tok, sae, hook = t.model, t.tokenizer, t.sae, t.hook_name
    res = FeatureResults.load(store, args.sae)
    feats = [int(x) for x in args.feature.split(",")]
    ctxs = contexts(res, feats[0], args.n, args.horizon, tok.bos_token_id)
    mask = None
    if args.pattern:
        rx = re.compile(args.pattern)
        mask = torch.tensor([bool(rx.search(tok.decode([i]))) for i in range(len(tok))])
        mask = torch.nn.functional.pad(mask, (0, model.config.vocab_size - len(mask)))[:model.config.vocab_size]
    target = measure(model, sae, hook, ctxs, feats, mask, args.method)

    # Controls: as many features, active at the first context's peak and not targets, chosen at random.
    _, z = forward(model, sae, hook, *ctxs[0], None)
    active = [int(i) for i in torch.nonzero(z > 0).flatten() if int(i) not in feats]
    g = torch.Generator().manual_seed(0)
    controls = []
    for _ in range(args.control):
        pick = [active[int(i)] for i in torch.randperm(len(active), generator=g)[:len(feats)]]
        controls.append((",".join(map(str, pick)), measure(model, sae, hook, ctxs, pick, mask, args.method)))

    print(f"\n{args.sae} at {hook}: suppress ({args.method} to 0) on feature {feats[0]}'s top {len(ctxs)} contexts, "
          f"prediction of the {args.horizon} corpus tokens after the peak (teacher-forced; means over positions)\n")
    cls = f" | {'P(class ' + args.pattern + ')':>22} | {'suppressed':>10}" if mask is not None else ""
    w = max(19, len(args.feature) + 9)
    print(f"| {'suppressed features':>{w}} | {'act. at peak (sum)':>12} | {'after':>6} | {'P(true next)':>12} | "
          f"{'suppressed':>10}{cls} | {'KL':>6} |")
    print(f"|{'-' * (w + 2)}|{'-' * 20}|{'-' * 8}|{'-' * 14}|{'-' * 12}|" + (f"{'-' * 24}|{'-' * 12}|" if cls else "")
          + f"{'-' * 8}|")
    for name, m in [(f"{args.feature} (target)", target)] + [(f"{f} (control)", m) for f, m in controls]:
        name = name if len(name) <= w else name[:w - 11] + "… (control)"
        extra = f" | {m['p_class']:>22.3f} | {m['p_class_sup']:>10.3f}" if mask is not None else ""
        print(f"| {name:>{w}} | {m['act']:>18.3f} | {m['act_sup']:>6.3f} | {m['p_next']:>12.3f} | "
              f"{m['p_next_sup']:>10.3f}{extra} | {m['kl']:>6.3f} |")


if __name__ == "__main__":
    main()
