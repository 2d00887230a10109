"""`python -m mistudio_core steer SAE_ID PROMPT --feature IDX:STRENGTH ...`: baseline vs steered generation.

    steer my-sae "The weather today is" --feature 123:8 --feature 40:-4 --method additive --seed 1
    steer my-sae "I think" --feature 123:1 --sweep "0,4,8,16" --seeds 4 --json   # strength sweep with scores

Every run reports the feature's two activations: `steered_feature_mean`, the activation in the steered model (the
SAE's encoding of the steered residual at the hook, mean over steered positions), and `feature_mean`, the
unsteered model reading the output. A sweep adds perplexity, the effect share (generated tokens among the
feature's top tokens, baseline vs steered) and a suggested strength (largest with perplexity ≤ 1.5× baseline).

Strengths follow Neuronpedia: additive adds strength × W_dec[f]; `clamp` sets the feature's activation to the
strength in feature space (0 ablates it); `clamp_exact` scales that change so the SAE re-reads exactly the
strength. `--positions generated` leaves the prompt unsteered.
"""
from __future__ import annotations

import argparse
import sys

from ..errors import ValidationError
from ..steering.generate import SamplingConfig, compare, run_prompt_set
from ..steering.loader import effect_tokens_for, load_target
from ..steering.methods import METHODS, POSITIONS, SteerFeature, SteeringConfig
from ..steering.score import READ_LABEL, STEERED_LABEL
from ..steering.sweep import parse_strengths, sweep


def parse_feature(text: str) -> SteerFeature:
    """'123:8' or '123:-4.5' → SteerFeature(123, 8.0)."""
    idx, sep, strength = text.partition(":")
    try:
        if not sep:
            raise ValueError
        return SteerFeature(int(idx), float(strength))
    except ValueError:
        raise ValidationError(f"Cannot read --feature {text!r}: write INDEX:STRENGTH, e.g. --feature 123:8 "
                              "(negative strengths suppress: --feature 123:-4).") from None


def _configs(args) -> tuple[SteeringConfig, SamplingConfig]:
    if not args.feature:
        raise ValidationError("No feature to steer with. Add --feature INDEX:STRENGTH (repeatable).")
    steering = SteeringConfig([parse_feature(f) for f in args.feature], method=args.method,
                              normalize=args.normalize, positions=args.positions)
    sampling = SamplingConfig(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p,
                              seed=args.seed, chat=args.chat)
    return steering, sampling


def cmd_steer(args):
    steering, sampling = _configs(args)
    t = load_target(args.store, args.sae, device=args.device)
    common = (t.model, t.tokenizer, t.sae, t.hook_name)
    if args.sweep:
        tokens = effect_tokens_for(args.store, t, args.sae, [f.index for f in steering.features])
        return sweep(*common, args.prompt, steering, parse_strengths(args.sweep), sampling, seeds=args.seeds,
                     effect_tokens=tokens)
    if args.prompts_file:
        with open(args.prompts_file, encoding="utf-8") as f:
            prompts = f.read().splitlines()
        return {"results": run_prompt_set(*common, prompts, steering, sampling), "steering": steering.to_dict()}
    r = compare(*common, args.prompt, steering, sampling)
    return {"prompt": args.prompt, "baseline": r["baseline"], "steered": r["steered"],
            **{k: r[k] for k in READINGS}, "steering": steering.to_dict(), "sampling": sampling.to_dict(),
            "seconds": round(r["seconds"], 3)}


READINGS = ("steered_feature_mean", "feature_mean", "baseline_feature_mean", "perplexity", "baseline_perplexity")


def _num(x, fmt=".3f") -> str:
    return "n/a" if x is None else format(x, fmt)


def _human_sweep(result: dict) -> str:
    f0, base = result["features"][0], result["baseline"]
    lines = [f"feature {f0}: 'at hook' = {STEERED_LABEL}; 'read back' = {READ_LABEL} "
             f"(means over {result['seeds']} seed(s))",
             f"{'strength':>9}  {'ppl':>7}  {'at hook':>8}  {'read back':>9}  {'effect':>7}  {'expected':>8}  text"]
    for name, r in [("baseline", base)] + [(format(r["strength"], "g"), r) for r in result["rows"]]:
        lines.append(f"{name:>9}  {_num(r['perplexity'], '.2f'):>7}  {_num(r['steered_feature_mean'][f0]):>8}  "
                     f"{_num(r['feature_mean'][f0]):>9}  {_num(r.get('effect_share')):>7}  "
                     f"{_num(r.get('effect_expected'), '.5f'):>8}  {r['text']!r}")
    if result.get("effect_source"):
        lines.append(f"effect = share of generated tokens among the feature's top tokens "
                     f"({result['effect_source']}: {result['effect_token_list'][f0][:8]}); expected = the "
                     "model's probability of those tokens per generated position, averaged")
    lines.append(f"suggested strength: {_num(result['suggested_strength'], 'g')} — {result['suggestion']}")
    return "\n".join(lines)


def _human(result: dict) -> str:
    if "rows" in result:
        return _human_sweep(result)
    if "results" in result:
        return "\n\n".join(f"PROMPT   {r['prompt']!r}\nBASELINE {r['baseline']!r}\nSTEERED  {r['steered']!r}"
                           for r in result["results"])
    f0 = next(iter(result["steered_feature_mean"]), None)
    return (f"BASELINE {result['baseline']!r}\nSTEERED  {result['steered']!r}\n"
            f"feature {f0}: {STEERED_LABEL} {_num(result['steered_feature_mean'].get(f0))}; {READ_LABEL}: "
            f"steered {_num(result['feature_mean'].get(f0))}, baseline {_num(result['baseline_feature_mean'].get(f0))}")


def register(subparsers) -> None:
    p = subparsers.add_parser("steer", help="generate with SAE features amplified or suppressed, vs the baseline",
                              description=sys.modules[__name__].__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sae", help="SAE id in the library (its model and hook point come from its manifest)")
    p.add_argument("prompt", nargs="?", default="", help="prompt text (or use --prompts-file)")
    p.add_argument("--feature", action="append", metavar="IDX:STRENGTH", help="feature and strength (repeatable)")
    p.add_argument("--method", choices=METHODS, default="additive")
    p.add_argument("--positions", choices=POSITIONS, default="all", help="steer prompt+generated or generated only")
    p.add_argument("--normalize", action="store_true", help="use unit-norm decoder rows (additive)")
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--temperature", type=float, default=0.7, help="0 = greedy")
    p.add_argument("--top-p", type=float, default=0.9)
    p.add_argument("--seed", type=int, default=0, help="same seed for baseline and steered")
    p.add_argument("--chat", action="store_true", help="apply the tokenizer's chat template (instruct models)")
    p.add_argument("--sweep", metavar="STRENGTHS", help="'0,4,8' or '0:16:4': every feature at each strength")
    p.add_argument("--seeds", type=int, default=1, help="sweep: seeds per strength (means over seeds)")
    p.add_argument("--prompts-file", help="run every line of this file as a prompt (batch)")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: CUDA if available)")
    p.set_defaults(func=cmd_steer, human=_human)
