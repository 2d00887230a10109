"""The short automatic sweep behind every suggested strength (Find's one click, the concept panel, the CLI, the bench).

A feature's strengths are multiples of its max activation (`FEATURE_MULTIPLES`), starting *small*: on the built-in
model's layer 8 the features that write tokens break the text already at 2× their max activation (issue 25: the
old grid, 2× and up, suggested nothing for 9 of 10 of them), so the grid walks up from 1/8×, finely where the
edge usually lies. A concept's strengths are multiples of its vector (`concept.CONCEPT_MULTIPLES`).

Each strength runs on the same few neutral prompts (`AUTO_PROMPTS`) and seeds; per strength the perplexity is the
geometric mean over prompts (each already a geometric mean over seeds), the effect shares are pooled and the
text effect averaged. The suggestion is `effect.suggest_strength`'s walk from 0 outwards (largest strength whose
perplexity stays ≤ the limit, stopping at the first that does not); with `pick="effect"` (concepts, whose effect
saturates) the weakest strength of that walk with ≥ `EFFECT_KNEE` of its largest effect gain is taken instead.

A feature's walk keeps a margin (`feature_auto_sweep`): its limit is `FEATURE_SUGGEST_RATIO` × the baseline's, under
the 1.5× a user is promised. A few prompts and seeds estimate the perplexity with noise, and a suggestion that sits
right at the limit lands above it on other prompts and seeds about half of the time (issue 25, measured: three of
the ten best-writing features at 1.52–1.67× on fresh seeds); the margin, the longer outputs and the extra seed make
the suggestion hold on text the sweep never saw.
"""
from __future__ import annotations

import math
from fractions import Fraction

from .effect import suggest_strength
from .generate import SamplingConfig
from .sweep import MAX_PPL_RATIO, sweep

FEATURE_MULTIPLES = (0.125, 0.25, 0.375, 0.5, 0.75, 1.0, 1.5, 2.0, 4.0)
AUTO_PROMPTS = ("From my experience,", "The report says that", "In my opinion, the most important thing is")
AUTO_SEEDS = 3
AUTO_TOKENS = 32
FEATURE_SUGGEST_RATIO = 1.3  # a feature's suggestion: perplexity ≤ this × baseline on the sweep (margin: module doc)
EFFECT_KNEE = 0.8       # pick="effect": the weakest strength with this share of the largest effect gain


def feature_strengths(max_activation: float | None, multiples=FEATURE_MULTIPLES) -> list[float]:
    """The auto sweep's strengths for one feature (raw units); without a max activation the multiples themselves."""
    unit = max_activation if max_activation and max_activation > 0 else 1.0
    return [round(m * unit, 4) for m in multiples]


def _geo(values):
    vals = [v for v in values if v]
    return math.exp(sum(map(math.log, vals)) / len(vals)) if vals else None


def _mean(values):
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def _merge(parts: list[dict]) -> dict:
    """One row from the same row of several prompts' sweeps (module doc)."""
    row = {"perplexity": _geo(p["perplexity"] for p in parts), "texts": [p["text"] for p in parts],
           "text": parts[0]["text"], "n_tokens": sum(p["n_tokens"] for p in parts),
           "capability_ppl": parts[0].get("capability_ppl"),
           "effect_expected": _mean(p.get("effect_expected") for p in parts),
           "text_effect": _mean(p.get("text_effect") for p in parts)}
    for key in ("steered_feature_mean", "feature_mean"):
        feats = parts[0][key].keys()
        row[key] = {f: _mean(p[key][f] for p in parts) for f in feats}
    if "effect_hits" in parts[0]:
        hits, n = sum(p["effect_hits"] for p in parts), sum(p["effect_tokens"] for p in parts)
        row.update(effect_hits=hits, effect_tokens=n, effect_share=hits / n if n else None)
    return row


def _effect(r: dict):
    return r.get("text_effect") if r.get("text_effect") is not None else r.get("effect_expected")


def _pick_effect(rows, baseline, max_ratio):
    """The weakest strength, among those `suggest_strength`'s walk keeps, whose effect gain over the baseline is ≥
    `EFFECT_KNEE` × the largest gain there (None when it keeps none). A saturating effect (capital letters reach
    ~100%) gains nothing from the last steps but perplexity: measured on the built-in model, the yelling vector at
    the strongest fluent multiplier (0.875) gave 98% capitals at 2.6× on the sweep's seeds and 3.7× on fresh ones."""
    best, why = suggest_strength(rows, baseline["perplexity"], max_ratio)
    if best is None:
        return best, why
    side = 1 if best > 0 else -1
    kept = sorted((r for r in rows if 0 < r["strength"] * side <= abs(best) and _effect(r) is not None),
                  key=lambda r: abs(r["strength"]))
    if not kept:                            # nothing measures the effect: the largest fluent strength
        return best, why
    base = _effect(baseline) or 0.0
    top = max(_effect(r) - base for r in kept)
    pick = next(r for r in kept if _effect(r) - base >= EFFECT_KNEE * top)
    return pick["strength"], (f"weakest strength with ≥ {EFFECT_KNEE:.0%} of the largest effect gain among those "
                              f"whose perplexity stays ≤ {max_ratio:g}× the baseline's ({baseline['perplexity']:.1f} → "
                              f"limit {max_ratio * baseline['perplexity']:.1f})")


def auto_sweep(model, tokenizer, sae, hook_name: str, steering, strengths: list[float], prompts=AUTO_PROMPTS,
               seeds: int = AUTO_SEEDS, max_new_tokens: int = AUTO_TOKENS, effect_tokens: dict | None = None,
               text_effect=None, max_ppl_ratio: float = MAX_PPL_RATIO, pick: str = "largest",
               positions: str | None = None, progress=None, suggest_ratio: float | None = None) -> dict:
    """`sweep` over several prompts, merged (module doc): `{rows: [{strength, perplexity, texts, text,
    capability_ppl, effect_*, text_effect, ...}], baseline, suggested_strength, suggestion, prompts, seeds,
    features, strengths, effect_source, effect_token_list, text_effect_name, max_ppl_ratio, seconds}`.
    `suggest_ratio` (≤ `max_ppl_ratio`) is the suggestion's own limit, a margin under the one the rows are shown
    against (default: the same)."""
    suggest_ratio = max_ppl_ratio if suggest_ratio is None else min(suggest_ratio, max_ppl_ratio)
    sampling = SamplingConfig(max_new_tokens=max_new_tokens, temperature=0.7, top_p=0.9, seed=0, stop_at_eos=False)
    if positions:
        steering.positions = positions
    per_prompt = []
    for k, prompt in enumerate(prompts):
        def prog(frac, msg, k=k):
            if progress:
                progress((k + frac) / len(prompts), f"prompt {k + 1}/{len(prompts)}, {msg}")
        per_prompt.append(sweep(model, tokenizer, sae, hook_name, prompt, steering, strengths, sampling,
                                progress=prog, seeds=seeds, effect_tokens=effect_tokens,
                                max_ppl_ratio=max_ppl_ratio, capability=k == 0, text_effect=text_effect))
    first = per_prompt[0]
    rows = [{"strength": s, **_merge([p["rows"][i] for p in per_prompt])} for i, s in enumerate(first["strengths"])]
    baseline = _merge([p["baseline"] for p in per_prompt])
    if pick == "effect":
        best, why = _pick_effect(rows, baseline, suggest_ratio)
    else:
        best, why = suggest_strength(rows, baseline["perplexity"], suggest_ratio)
    if suggest_ratio < max_ppl_ratio:
        why += f"; a margin under the {max_ppl_ratio:g}× limit, so that it holds on other prompts and seeds"
    return {**{k: first[k] for k in ("features", "strengths", "seeds", "method", "effect_source",
                                     "effect_token_list", "text_effect_name")},
            "prompt": " | ".join(prompts), "prompts": list(prompts), "rows": rows, "baseline": baseline,
            "suggested_strength": best, "suggestion": why, "max_ppl_ratio": max_ppl_ratio,
            "seconds": sum(p["seconds"] for p in per_prompt)}


def feature_auto_sweep(model, tokenizer, sae, hook_name: str, steering, max_activation: float | None,
                       effect_tokens: dict | None = None, progress=None, **options) -> dict:
    """The suggested strength of a feature (or of features swept together, in units of the first one's max
    activation): `auto_sweep` over `feature_strengths`, with the margin of `FEATURE_SUGGEST_RATIO` (module doc);
    `options` go to `auto_sweep` (prompts, seeds, max_new_tokens). What Find's one click, the CLI's `--auto` and
    bench/steer_effect.py run."""
    return auto_sweep(model, tokenizer, sae, hook_name, steering, feature_strengths(max_activation),
                      effect_tokens=effect_tokens, progress=progress,
                      **{"suggest_ratio": FEATURE_SUGGEST_RATIO, **options})


def _fmt_multiple(m: float) -> str:
    frac = Fraction(m).limit_denominator(16)
    return f"{frac.numerator}/{frac.denominator}" if m < 1 and abs(float(frac) - m) < 1e-9 else f"{m:g}"


def feature_sweep_text() -> str:
    """The automatic feature sweep in one sentence, from the constants (shown in the tab; docs/WORKSHOP.md quotes it
    and a test checks that it still does)."""
    return (f"strengths {', '.join(_fmt_multiple(m) + '×' for m in FEATURE_MULTIPLES)} the feature's max activation "
            f"on {len(AUTO_PROMPTS)} neutral prompts × {AUTO_SEEDS} seeds × {AUTO_TOKENS} tokens; suggested: the "
            f"largest strength whose perplexity stays ≤ {FEATURE_SUGGEST_RATIO:g}× the unsteered baseline's there, a "
            f"margin under the {MAX_PPL_RATIO:g}× limit so that it holds on other prompts and seeds")
