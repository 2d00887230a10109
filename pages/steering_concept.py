"""Steering tab, concept part: two prompt sets (e.g. shouted vs plain sentences) → a concept vector at the hook, the
SAE features that carry it, a sweep that suggests a strength, and generation with the raw vector or the features.

The math lives in `mistudio_core/steering/concept.py` and `auto.py`; this module lays out the panel, formats results
and wires events. The built-in "yelling" pair loads with one click.
"""
from __future__ import annotations

import functools

import gradio as gr

from mistudio_core.platform.errors import MistudioError, ValidationError
from mistudio_core.steering import concept as sc
from mistudio_core.steering.auto import auto_sweep
from mistudio_core.steering.find import writes
from mistudio_core.steering.generate import SamplingConfig, compare_stream
from mistudio_core.steering.loader import load_target, stats_for

from .common import failed, guarded, ok, progress_adapter, table
from .steering_layout import AS_FEATURES, CONCEPT_COLUMNS, EFFECT_NONE, N_SLOTS
from .steering_lock import GENERATE_LOCK
from .steering_sweep import readings_md, suggestion_md, sweep_html



@guarded(5)
def load_builtin(name) -> tuple:
    d = sc.load_builtin(name or "")
    return (ok(f"Loaded the built-in `{d['name']}` pair ({len(d['positive'])} examples each): {d['description']}"),
            "\n".join(d["positive"]), "\n".join(d["negative"]), "\n".join(d["prompts"]), d.get("effect", EFFECT_NONE))


@guarded(5)
def build(ctx, sae_id, pos, neg) -> tuple:
    """(status, summary, features table, concept state, checkbox choices)."""
    if not sae_id:
        raise ValidationError("No SAE selected. Pick one first.")
    positive, negative = sc.check_sets(pos, neg)          # refused before the model loads
    t = load_target(ctx.store, sae_id)

    with GENERATE_LOCK:
        cv = sc.concept_vector(t.model, t.tokenizer, t.sae, t.hook_name, positive, negative, "concept",
                               dead=stats_for(ctx.store, sae_id).get("dead"))
        wrote = writes(t.model, t.tokenizer, t.sae, [f["index"] for f in cv["writers"] + cv["features"]], 5)
    cv["sae_id"] = sae_id
    rows = [_row(f, "writes it", wrote) for f in cv["writers"]] + [_row(f, "carries it", wrote)
                                                                   for f in cv["features"]]
    summary = (f"Concept vector from {cv['n_pairs']} pairs: norm {cv['norm']:.2f}; the SAE's features reconstruct "
               f"{cv['reconstructed_share']:.0%} of it along its direction. First the {len(cv['writers'])} features "
               "whose own output effect reproduces the vector's (ticked: they steer together, each at its fitted "
               "strength × the multiplier), then the features that carry it (largest share first).")
    writers = [f["index"] for f in cv["writers"]]
    choices = list(dict.fromkeys(writers + [f["index"] for f in cv["features"]]))
    return (ok("Concept vector built."), summary, table(rows, CONCEPT_COLUMNS), cv,
            gr.update(choices=choices, value=writers or choices))   # the writers ticked, as the bench steers


def _row(f: dict, role: str, wrote: dict) -> dict:
    """One table row: a writer (push, fitted strength) or a carrier (Δ activation, share)."""
    r3 = lambda x: "" if x is None else round(x, 3)          # noqa: E731
    return {"role": role, "index": f["index"], "push": r3(f.get("push")), "strength": r3(f.get("strength")),
            "delta": r3(f.get("delta")), "share": "" if f.get("share") is None else round(f["share"], 4),
            "cosine": r3(f["cosine"]), "writes": ", ".join(map(repr, wrote[f["index"]]))}


def _config(cv, steer_as, feats, mult):
    if not cv:
        raise ValidationError("Build the concept vector first (two prompt sets → Build concept vector).")
    if steer_as == AS_FEATURES:
        return sc.as_features(cv, indices=[int(f) for f in feats or []], multiplier=mult)
    return sc.as_vector(cv, strength=mult)


@guarded(4)
def sweep(ctx, cv, steer_as, feats, prompts, effect, progress=gr.Progress()) -> tuple:
    """(status, rows HTML, suggestion, suggested multiplier)."""
    steering = _config(cv, steer_as, feats, 1.0)
    prompts = [p.strip() for p in (prompts or "").splitlines() if p.strip()]
    if not prompts:
        raise ValidationError("The sweep prompt list is empty. Write one neutral prompt per line.")
    fn = sc.EFFECTS.get(effect)
    t = load_target(ctx.store, cv["sae_id"])

    with GENERATE_LOCK:
        res = auto_sweep(t.model, t.tokenizer, t.sae, t.hook_name, steering, list(sc.CONCEPT_MULTIPLES),
                         prompts=prompts, text_effect=(effect, fn) if fn else None, max_new_tokens=sc.CONCEPT_TOKENS,
                         max_ppl_ratio=sc.CONCEPT_MAX_PPL_RATIO, pick="effect", progress=progress_adapter(progress))
    best = res["suggested_strength"]
    return (ok(f"Swept {len(res['rows'])} multipliers × {len(prompts)} prompts × {res['seeds']} seeds."),
            sweep_html(res), suggestion_md(res), 1.0 if best is None else best)


def generate(ctx, cv, steer_as, feats, mult, prompt, method, positions, normalize, max_new, temperature, top_p, seed,
             chat):
    """Stream (status, baseline, steered, readings) with the concept (vector or features) at `mult`."""
    try:
        steering = _config(cv, steer_as, feats, float(mult if mult is not None else 1.0))
        steering.positions = positions
        sampling = SamplingConfig(max_new_tokens=int(max_new), temperature=float(temperature), top_p=float(top_p),
                                  seed=int(seed), chat=bool(chat))
        t = load_target(ctx.store, cv["sae_id"])

        with GENERATE_LOCK:
            for st in compare_stream(t.model, t.tokenizer, t.sae, t.hook_name, prompt, steering, sampling):
                yield (ok("done") if st["done"] else "generating…"), st["baseline"], st["steered"], readings_md(st)
    except MistudioError as e:
        yield failed(str(e)), gr.skip(), gr.skip(), gr.skip()


@guarded(1 + 2 * N_SLOTS)
def to_slots(cv, feats, mult, *slots) -> tuple:
    """The first ticked features into the slots at multiplier × Δ activation (the rest of the slots emptied)."""
    steering = _config(cv, AS_FEATURES, feats, float(mult if mult is not None else 1.0))
    out: list = ["", 0.0] * N_SLOTS
    for k, f in enumerate(steering.features[:N_SLOTS]):
        out[2 * k], out[2 * k + 1] = str(f.index), round(f.strength, 3)
    return (ok(f"{min(len(steering.features), N_SLOTS)} concept feature(s) in the slots."), *out)


def wire(ctx, c: dict, knobs: list) -> None:
    bind, status, slots = functools.partial, c["status"], c["slots"]
    c["c_load"].click(load_builtin, [c["c_builtin"]],
                      [status, c["c_pos"], c["c_neg"], c["c_prompts"], c["c_effect"]],
                      api_name="steering_concept_builtin")
    c["c_build"].click(bind(build, ctx), [c["sae"], c["c_pos"], c["c_neg"]],
                       [status, c["c_summary"], c["c_table"], c["c_state"], c["c_feats"]],
                       api_name="steering_concept_build")
    c["c_sweep"].click(bind(sweep, ctx), [c["c_state"], c["c_as"], c["c_feats"], c["c_prompts"],
                                                      c["c_effect"]],
                       [status, c["c_rows"], c["c_suggestion"], c["c_mult"]], api_name="steering_concept_sweep")
    c["c_generate"].click(bind(generate, ctx), [c["c_state"], c["c_as"], c["c_feats"], c["c_mult"], c["prompt"],
                                                *knobs], [status, c["baseline"], c["steered"], c["readings"]],
                          api_name="steering_concept_generate")
    c["c_to_slots"].click(to_slots, [c["c_state"], c["c_feats"], c["c_mult"], *slots],
                          [status, *slots], api_name="steering_concept_to_slots")
