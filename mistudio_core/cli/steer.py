"""`python -m mistudio_core steer SAE_ID PROMPT --feature IDX:STRENGTH ...`: baseline vs steered generation.

    steer my-sae "The weather today is" --feature 123:8 --feature 40:-4 --method additive --seed 1
    steer my-sae "I think" --feature 123:1 --sweep "0,4,8,16" --seeds 4 --json   # strength sweep with scores

Every run reports the feature's two activations: `steered_feature_mean`, the activation in the steered model (the
SAE's encoding of the steered residual at the hook, mean over steered positions), and `feature_mean`, the
unsteered model reading the output. A sweep adds perplexity, the effect share (generated tokens among the
feature's top tokens, baseline vs steered) and a suggested strength (largest with perplexity ≤ 1.5× baseline).

    steer my-sae --find "war"                       # features ranked by how strongly they write 'war'
    steer my-sae "I think" --feature 123:1 --auto   # the app's automatic sweep picks the strength
    steer my-sae "Tell me about your weekend." --concept yelling [--as features] [--concept-strength 0.75]
    steer my-sae --concept-files shouted.txt plain.txt --json     # a concept vector from your own prompt sets
    steer my-sae "Hi" --feature 12:3 --feature 40:-1 --save-group mixed   /   steer my-sae "Hi" --group mixed-1a2b

Strengths follow Neuronpedia: additive adds strength × W_dec[f]; `clamp` sets the feature's activation to the
strength in feature space (0 ablates it); `clamp_exact` scales that change so the SAE re-reads exactly the
strength. `--positions generated` leaves the prompt unsteered.
"""
from __future__ import annotations

import argparse
import sys

from .. import spec as front_door
from ..platform.errors import ValidationError
from ..steering.generate import SamplingConfig, compare, run_prompt_set
from ..steering.loader import effect_tokens_for, load_target
from ..steering.methods import METHODS, POSITIONS, SteerFeature, SteeringConfig
from ..steering.score import READ_LABEL, STEERED_LABEL
from ..steering.sweep import parse_strengths
from ..steering.sweep_spec import run as run_sweep


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


def _configs(args, need_features: bool = True) -> tuple[SteeringConfig, SamplingConfig]:
    group = _group_steering(args)
    if need_features and not args.feature and group is None:
        raise ValidationError("No feature to steer with. Add --feature INDEX:STRENGTH (repeatable), --group ID, "
                              "--find WORDS or --concept NAME.")
    feats = [parse_feature(f) for f in args.feature or []] + (group.features if group else [])
    steering = SteeringConfig(feats, method=group.method if group and not args.feature else args.method,
                              normalize=args.normalize, positions=args.positions)
    sampling = SamplingConfig(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p,
                              seed=args.seed, chat=args.chat)
    return steering, sampling


def _find(args, t) -> dict:
    from ..steering.find import find_features, find_one
    from ..steering.loader import search_features, stats_for

    stats = stats_for(args.store, args.sae)
    hits = search_features(args.store, args.sae, args.find, d_sae=t.sae.W_dec.shape[0])
    labels = {h["index"]: h["label"] for h in hits}
    if args.find.strip().isdigit():
        return find_one(t.model, t.tokenizer, t.sae, t.hook_name, int(args.find), stats, labels)
    return find_features(t.model, t.tokenizer, t.sae, t.hook_name, args.find, stats,
                         label_hits=[h["index"] for h in hits], labels=labels)


def _concept(args, t) -> dict:
    """Build the concept (built-in name or two files), pick a multiplier (given, or the automatic sweep's) and, with a
    prompt, generate baseline vs steered."""
    from ..steering import concept as C
    from ..steering.auto import auto_sweep

    if args.concept_files:
        pos, neg = (open(f, encoding="utf-8").read() for f in args.concept_files)
        d = {"name": "concept", "positive": pos, "negative": neg, "prompts": None, "effect": None}
    else:
        d = C.load_builtin(args.concept)
    cv = C.concept_vector(t.model, t.tokenizer, t.sae, t.hook_name, d["positive"], d["negative"], d["name"])
    steering = C.as_features(cv) if args.as_ == "features" else C.as_vector(cv)
    out = {"concept": {k: v for k, v in cv.items() if k != "vector"}, "steer_with": args.as_}
    mult = args.concept_strength
    if mult is None:
        fn = C.EFFECTS.get(d.get("effect") or "")
        auto = auto_sweep(t.model, t.tokenizer, t.sae, t.hook_name, steering, list(C.CONCEPT_MULTIPLES),
                          prompts=d.get("prompts") or [args.prompt or "From my experience,"],
                          text_effect=(d["effect"], fn) if fn else None, max_ppl_ratio=C.CONCEPT_MAX_PPL_RATIO,
                          max_new_tokens=C.CONCEPT_TOKENS,
                          pick="effect")
        mult, out["suggestion"] = auto["suggested_strength"], auto["suggestion"]
    out["multiplier"] = mult
    if args.prompt and mult is not None:
        cfg = C.as_features(cv, multiplier=mult) if args.as_ == "features" else C.as_vector(cv, strength=mult)
        _, sampling = _configs(args, need_features=False)
        r = compare(t.model, t.tokenizer, t.sae, t.hook_name, args.prompt, cfg, sampling)
        out.update(prompt=args.prompt, baseline=r["baseline"], steered=r["steered"], perplexity=r["perplexity"],
                   baseline_perplexity=r["baseline_perplexity"])
    return out


def _group_steering(args) -> SteeringConfig | None:
    from ..steering import groups as G

    if args.group:
        return G.group_config(G.load_group(args.store, args.group))
    return None


def sweep_spec(args, steering: SteeringConfig, sampling: SamplingConfig) -> dict:
    """`--sweep`'s "sweep" spec, built through the front door (checked before a model loads)."""
    return front_door.build("sweep", store=args.store, sae_id=args.sae, prompt=args.prompt,
                            strengths=parse_strengths(args.sweep), seeds=args.seeds, steering=steering.to_dict(),
                            sampling=sampling.to_dict())


def cmd_steer(args):
    from ..steering import groups as G
    from ..steering.loader import check_steerable, stats_for

    if args.find is not None or args.concept or args.concept_files:
        t = load_target(args.store, args.sae, device=args.device)
        return _find(args, t) if args.find is not None else _concept(args, t)
    steering, sampling = _configs(args)
    check_steerable(stats_for(args.store, args.sae), steering.features)     # before the model loads
    if args.save_group:
        rec = G.save_group(args.store, args.save_group, args.sae, steering, stats=stats_for(args.store, args.sae))
        return {"group": rec, "export": str(G.export_group(args.store, rec["id"]))}
    planned = sweep_spec(args, steering, sampling) if args.sweep and not args.auto else None  # before the load
    t = load_target(args.store, args.sae, device=args.device)
    common = (t.model, t.tokenizer, t.sae, t.hook_name)
    if args.auto:
        from ..steering.auto import feature_auto_sweep

        mx = stats_for(args.store, args.sae).get("max_activation")
        tokens = effect_tokens_for(args.store, t, args.sae, [f.index for f in steering.features])
        unit = float(mx[steering.features[0].index]) if mx is not None else None
        return feature_auto_sweep(*common, steering, unit, effect_tokens=tokens)
    if planned is not None:
        tokens = effect_tokens_for(args.store, t, args.sae, [f.index for f in steering.features])
        return run_sweep(t, planned, effect_tokens=tokens)
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


def _human_find(result: dict) -> str:
    lines = [f"features that write {result['concept']!r} (tokens {result['tokens'][:6]}), best first:",
             f"{'feature':>8}  {'push':>6}  {'output':>6}  {'max act':>7}  writes / label"]
    for r in result["rows"]:
        lines.append(f"{r['index']:>8}  {r['push']:>6.2f}  {_num(r['output_score']):>6}  "
                     f"{_num(r['max_activation'], '.2f'):>7}  {r['writes'][:5]} {r['label']}")
    return "\n".join(lines)


def _human_concept(result: dict) -> str:
    c = result["concept"]
    lines = [f"concept {c['name']!r}: {c['n_pairs']} pairs, norm {c['norm']:.2f}, SAE reconstructs "
             f"{c['reconstructed_share']:.0%}; features (index: Δ activation, share): "
             + ", ".join(f"{f['index']}: {f['delta']:.2f}, {f['share']:.3f}" for f in c["features"][:12]),
             f"steer with the {result['steer_with']} at multiplier {_num(result['multiplier'], 'g')}"
             + (f" ({result['suggestion']})" if result.get("suggestion") else "")]
    if "steered" in result:
        lines += [f"BASELINE {result['baseline']!r}", f"STEERED  {result['steered']!r}"]
    return "\n".join(lines)


def _human(result: dict) -> str:
    if "steer_with" in result:
        return _human_concept(result)
    if "group" in result:
        return f"saved group {result['group']['id']!r}; exported to {result['export']}"
    if "rows" in result and "strengths" not in result:
        return _human_find(result)
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
    p.add_argument("--find", metavar="WORDS", help="rank features by how strongly they write WORDS (or an index)")
    p.add_argument("--auto", action="store_true", help="suggest a strength by the app's automatic sweep")
    p.add_argument("--concept", metavar="NAME", help="built-in concept pair (e.g. yelling): vector + its features")
    p.add_argument("--concept-files", nargs=2, metavar=("CONCEPT", "CONTRAST"),
                   help="two paired prompt files (one example per line, same count)")
    p.add_argument("--as", dest="as_", choices=("vector", "features"), default="vector",
                   help="steer a concept as the raw vector or as its SAE features")
    p.add_argument("--concept-strength", type=float, default=None,
                   help="concept multiplier (default: the automatic sweep's suggestion)")
    p.add_argument("--group", metavar="ID", help="steer with a saved feature group (adds to --feature)")
    p.add_argument("--save-group", metavar="NAME", help="save the --feature set as a group and export it as JSON")
    p.set_defaults(func=cmd_steer, human=_human)
