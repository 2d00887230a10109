"""Strength sweep: the same prompt at several strengths (and seeds), each output measured two ways.

All strengths run as rows of one batch (row r sets every selected feature's strength to `strengths[r]`), plus
one unsteered baseline row, so a sweep costs about one generation per seed; every row shares the seed's random
draws. Each row reports (names and meaning in `score.py`):

- `steered_feature_mean`: activation in the steered model (at the hook), recorded while generating;
- `feature_mean` / `feature_max`: the unsteered model reading the output;
- `perplexity`: of the output under the unsteered model (geometric mean over seeds);
- `effect_share`: the share of generated tokens that are among the feature's top-activating tokens (`effect.py`),
  beside the baseline's share; `effect_expected`: the probability the row's model gave those tokens at each
  generated position, averaged (the same share without the sampling noise).

- `capability_ppl`: the capability cost, the perplexity of a fixed held-out text (`score.CAPABILITY_TEXT`) under the
  same steering, beside the unsteered model's;
- `text_effect`: with `text_effect=(name, fn)`, fn(generated text) → a number, averaged over seeds (e.g. the share of
  capital letters for a "yelling" concept).

The result also carries `suggested_strength`: the largest strength whose perplexity stays ≤ 1.5× the baseline's
(`effect.suggest_strength`). Several seeds make both the share and the suggestion less of a coin toss.
"""
from __future__ import annotations

import math
import time

import torch

from ..platform.errors import ValidationError
from .effect import key_mask, suggest_strength, token_share
from .generate import SamplingConfig, _eos_ids, decode, encode_prompt, iter_rows
from .methods import Steerer, SteerFeature, SteeringConfig, SteerVector
from .score import CAPABILITY_TEXT, score_continuation, steered_text_perplexity, strip_eos

__all__ = ["sweep", "check_sweep", "score_continuation", "parse_strengths", "MAX_PPL_RATIO"]
MAX_PPL_RATIO = 1.5


def _run_seed(model, tokenizer, sae, hook_name, prompt_ids, unit, strengths, sampling, eos, on_step, mask=None):
    """One seed: rows [baseline, *strengths] generated in one batch, then scored; returns one dict per row.
    With `mask` (the effect tokens over the vocabulary), each row also gets `effect_probs`: per generated token,
    the probability the row's model gave the effect tokens at that step."""
    scale = torch.tensor([0.0] + strengths)
    steerer = Steerer(unit, sae, rows=torch.tensor([False] + [True] * len(strengths)), row_scale=scale)
    rows, probs = None, []

    def record(logits):
        probs.append(torch.softmax(logits.float(), -1)[:, mask(logits.shape[-1]).to(logits.device)].sum(-1).cpu())

    for step, rows in enumerate(iter_rows(model, prompt_ids, len(scale), sampling, steerer, hook_name, eos,
                                          on_logits=record if mask is not None else None)):
        on_step(step)
    feats = [f.index for f in unit.features]
    means = steerer.steered_means()
    out = []
    for r in range(len(scale)):
        toks = strip_eos(rows[r], eos)
        sc = score_continuation(model, sae, hook_name, prompt_ids, toks, feats)
        out.append({"text": decode(tokenizer, rows[r], eos), "tokens": toks, "steered_feature_mean": means[r], **sc})
        if mask is not None:  # step i drew token i of every row that was still going
            out[-1]["effect_probs"] = [float(p[r]) for p in probs[:len(toks)]]
    return out


def _effect_mask(tokenizer, keys):
    """vocab size -> the effect tokens' mask over a vocabulary of that size (built once, at the first step: the
    logits say the model's vocabulary size, which can exceed the tokenizer's)."""
    built = {}

    def mask(vocab: int) -> torch.Tensor:
        if vocab not in built:
            built[vocab] = key_mask(tokenizer, keys, vocab)
        return built[vocab]

    return mask


def _mean(values):
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def _aggregate(per_seed: list[dict], feats: list[int], tokenizer, keys, text_effect=None) -> dict:
    """One row from the same row of every seed: text of the first seed, means over seeds, token-weighted share."""
    ppl = [r["perplexity"] for r in per_seed if r["perplexity"]]
    row = {"text": per_seed[0]["text"], "n_tokens": len(per_seed[0]["tokens"]),
           "perplexity": math.exp(sum(map(math.log, ppl)) / len(ppl)) if ppl else None,
           "feature_mean": {f: _mean(r["feature_mean"][f] for r in per_seed) for f in feats},
           "feature_max": {f: max((r["feature_max"][f] for r in per_seed if r["feature_max"][f] is not None),
                                  default=None) for f in feats},
           "steered_feature_mean": {f: _mean(r["steered_feature_mean"][f] for r in per_seed) for f in feats}}
    if keys is not None:
        hits, n = map(sum, zip(*(token_share(tokenizer, r["tokens"], keys) for r in per_seed)))
        row.update(effect_share=hits / n if n else None, effect_hits=hits, effect_tokens=n)
    probs = [p for r in per_seed for p in r.get("effect_probs", [])]
    if probs:
        row["effect_expected"] = sum(probs) / len(probs)
    if text_effect is not None:
        row["text_effect"] = _mean(text_effect[1](r["text"]) for r in per_seed)
    return row


def unit_config(steering: SteeringConfig) -> SteeringConfig:
    """`steering` with every strength 1: the sweep's rows scale it (row r multiplies every strength by r's)."""
    return SteeringConfig(features=[SteerFeature(f.index, 1.0) for f in steering.features], method=steering.method,
                          normalize=steering.normalize, positions=steering.positions,
                          vectors=[SteerVector(v.name, v.values, 1.0) for v in steering.vectors])


def check_sweep(steering: SteeringConfig, strengths, seeds) -> list[float]:
    """The sweep's own limits (the "sweep" spec checks them too, before a model loads); returns the strengths as
    floats."""
    if not steering.features and not steering.vectors:
        raise ValidationError("Add at least one feature (or a concept vector) to sweep its strength.")
    strengths = [float(s) for s in strengths]
    if not 1 <= len(strengths) <= 16:
        raise ValidationError(f"Give between 1 and 16 strengths (got {len(strengths)}).")
    if not 1 <= int(seeds) <= 32:
        raise ValidationError(f"seeds={seeds} must be between 1 and 32.")
    return strengths


def sweep(model, tokenizer, sae, hook_name: str, prompt: str, steering: SteeringConfig, strengths: list[float],
          sampling: SamplingConfig, progress=None, seeds: int = 1, effect_tokens: dict | None = None,
          max_ppl_ratio: float = MAX_PPL_RATIO, capability: bool = True, text_effect=None) -> dict:
    """Generate at each strength for `seeds` seeds (sampling.seed, +1, ...) and score every output; returns
    `{prompt, method, features, strengths, seeds, rows: [{strength, text, n_tokens, perplexity, feature_mean,
    feature_max, steered_feature_mean, [effect_share, effect_hits, effect_tokens, effect_expected]}],
    baseline: {same, unsteered}, suggested_strength, suggestion, effect_source, effect_token_list, seconds}`.
    `effect_tokens` is `effect.effect_tokens(...)`; without it there is no effect share. `capability` adds
    `capability_ppl` to every row and the baseline; `text_effect` = (name, fn(text) → float) adds `text_effect`
    (result: `text_effect_name`)."""
    strengths = check_sweep(steering, strengths, seeds)
    unit = unit_config(steering)
    prompt_ids = encode_prompt(tokenizer, prompt, sampling.chat)
    eos = _eos_ids(tokenizer, model)
    mask = _effect_mask(tokenizer, effect_tokens["keys"]) if effect_tokens else None
    t0, n_steps = time.perf_counter(), int(seeds) * sampling.max_new_tokens
    per_seed = []
    for k in range(int(seeds)):
        s = SamplingConfig.from_dict({**sampling.to_dict(), "seed": sampling.seed + k})

        def on_step(step, k=k):
            if progress:
                progress((k * sampling.max_new_tokens + step + 1) / n_steps, f"seed {k + 1}/{seeds}: "
                                                                             f"token {step + 1}")
        per_seed.append(_run_seed(model, tokenizer, sae, hook_name, prompt_ids, unit, strengths, s, eos, on_step,
                                  mask))
    feats = [f.index for f in steering.features]
    keys = effect_tokens["keys"] if effect_tokens else None
    rows = [_aggregate([seed_rows[r] for seed_rows in per_seed], feats, tokenizer, keys, text_effect)
            for r in range(len(strengths) + 1)]
    if capability:
        cap_ids = list(tokenizer(CAPABILITY_TEXT)["input_ids"])
        for row, ppl in zip(rows, steered_text_perplexity(model, sae, hook_name, unit, cap_ids, [0.0] + strengths)):
            row["capability_ppl"] = ppl
    baseline, rows = rows[0], [{"strength": s, **r} for s, r in zip(strengths, rows[1:])]
    suggested, why = suggest_strength(rows, baseline["perplexity"], max_ppl_ratio)
    return {"prompt": prompt, "method": steering.method, "features": feats, "strengths": strengths,
            "seeds": int(seeds), "rows": rows, "baseline": baseline, "suggested_strength": suggested,
            "suggestion": why, "effect_source": effect_tokens["source"] if effect_tokens else None,
            "effect_token_list": effect_tokens["tokens"] if effect_tokens else None,
            "text_effect_name": text_effect[0] if text_effect else None, "seconds": time.perf_counter() - t0}


def parse_strengths(text: str) -> list[float]:
    """'-4, 0, 2, 4' or '0:8:2' (start:stop:step, stop included) → list of floats."""
    text = (text or "").strip()
    try:
        if ":" in text:
            a, b, c = (float(x) for x in text.split(":"))
            if c <= 0 or (b - a) / c > 64:
                raise ValueError
            n = int(math.floor((b - a) / c + 1e-9)) + 1
            return [round(a + i * c, 6) for i in range(n)]
        return [float(x) for x in text.replace(";", ",").split(",") if x.strip()]
    except ValueError:
        raise ValidationError(f"Cannot read strengths {text!r}: write a list like '-4, 0, 4, 8' or a range "
                              "'start:stop:step' like '0:10:2'.") from None
