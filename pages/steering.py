"""Steering tab: generate with SAE features amplified or suppressed, side by side with the unsteered baseline.

Pick an SAE, then *find* a feature by what it writes (a word: features ranked by measured push, output score and
top logit-lens tokens; label words rank label matches up; a number is an index). One click on a row puts the
feature into a free slot and a short automatic sweep (`steering/auto.py`) sets its strength, shown raw and in units
of the feature's max activation. Generate: both columns stream from the same seed, so what differs is the steering
alone; every run names its two activations (in the steered model at the hook; the unsteered model reading the
output). A strength sweep shows readable, expandable rows (effect, output perplexity, capability cost) and a chart.
The concept panel (`steering_concept.py`) and feature groups (`steering_groups.py`) sit below; sessions and prompt
sets are saved in the data directory. Handlers are plain functions of `(ctx, ...)` tested directly; the first
output is a status.
"""
from __future__ import annotations

import functools
from typing import Any

import gradio as gr

from mistudio_core import spec as front_door
from mistudio_core.platform.errors import MistudioError, ValidationError
from mistudio_core.steering import sessions as ss
from mistudio_core.steering.auto import feature_auto_sweep
from mistudio_core.steering.generate import SamplingConfig, compare_stream, run_prompt_set
from mistudio_core.steering.find import find_features, find_one, fmt_strength
from mistudio_core.steering.loader import (check_steerable, effect_tokens_for, feature_label, load_target,
                                           search_features, stats_for)
from mistudio_core.steering.methods import SteerFeature, SteeringConfig
from mistudio_core.steering.score import READ_LABEL, STEERED_LABEL
from mistudio_core.steering import sweep_spec
from mistudio_core.steering.sweep import parse_strengths

from .common import dropdown_update, failed, guarded, ok, on_show, progress_adapter, require_writable, table
from .context import AppContext
from . import steering_concept
from .steering_groups import empty_slot, slot_features, wire_groups
from .steering_layout import FIND_COLUMNS, N_SLOTS, layout
from .steering_lock import GENERATE_LOCK
from .steering_sweep import readings_md, suggestion_md, sweep_figure, sweep_html


def _configs(method, positions, normalize, max_new, temperature, top_p, seed, chat, slots):
    feats = slot_features(slots)
    if not feats:
        raise ValidationError("No feature selected. Find a feature (a word it writes, label words or an index) "
                              "and click its row, or type an index into a slot.")
    return (SteeringConfig(feats, method=method, normalize=bool(normalize), positions=positions),
            SamplingConfig(max_new_tokens=int(max_new), temperature=float(temperature), top_p=float(top_p),
                           seed=int(seed), chat=bool(chat)))


def _target(ctx: AppContext, sae_id, steering: SteeringConfig):
    """The loaded target, after refusing dead features (nothing is generated for them)."""
    if sae_id:
        check_steerable(stats_for(ctx.store, sae_id), steering.features)
    return load_target(ctx.store, sae_id)


def sae_list(ctx: AppContext, current: str | None) -> tuple[Any, Any, Any]:
    return (dropdown_update(ctx.store.list("saes"), current),
            gr.update(choices=[(s["name"], s["id"]) for s in ss.list_sessions(ctx.store)]),
            gr.update(choices=[(p["name"], p["id"]) for p in ss.list_prompt_sets(ctx.store)]))


def _find_rows(res: dict) -> list[dict]:
    """Find's table rows (display values)."""
    return [{"index": r["index"], "writes": ", ".join(repr(t) for t in r["writes"][:6]),
             "push": round(r["push"], 2), "label": (r["label"] or "") + (" ✓ label match" if r["label_match"] else ""),
             "output_score": "n/a" if r["output_score"] is None else round(r["output_score"], 3),
             "max_act": "n/a" if r["max_activation"] is None else round(r["max_activation"], 2)} for r in res["rows"]]


@guarded(2)
def find(ctx: AppContext, sae_id: str | None, text: str) -> tuple[str, Any]:
    """Features that write `text` (decoder–unembedding alignment, measured push, output score), label matches
    ranked up; a number is that feature. One table row per feature: what it writes, push, output score, label."""
    if not sae_id:
        raise ValidationError("No SAE selected. Pick one first.")
    text = (text or "").strip()
    d_sae = ctx.store.manifest("saes", sae_id).get("d_sae")
    hits = search_features(ctx.store, sae_id, text, d_sae=d_sae)   # an index, or label matches
    t = load_target(ctx.store, sae_id)
    stats = stats_for(ctx.store, sae_id)
    labels = {h["index"]: h["label"] for h in hits}
    with GENERATE_LOCK:
        if text.isdigit():
            res = find_one(t.model, t.tokenizer, t.sae, t.hook_name, int(text), stats, labels)
        else:
            res = find_features(t.model, t.tokenizer, t.sae, t.hook_name, text, stats,
                                label_hits=[h["index"] for h in hits], labels=labels)
    rows = _find_rows(res)
    msg = (f"{len(rows)} feature(s) found (best: feature {rows[0]['index']}); click a row to put it in a slot."
           if rows else "No live feature writes or is labelled with that; try another word or an index.")
    return ok(msg), table(rows, FIND_COLUMNS)


def pick_row(hits, evt: gr.SelectData) -> str:
    """A click on Find's table → that row's feature index (the next event puts it in a slot)."""
    row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
    return str(hits.iloc[int(row), 0])


def _default_strength(stats: dict, index: int) -> float:
    """Before the automatic sweep answers: half the feature's max activation (the middle of the sweep's small
    strengths), or 4 where the SAE was not extracted."""
    mx = stats.get("max_activation")
    return round(0.5 * float(mx[index]), 3) if mx is not None and index < len(mx) and mx[index] > 0 else 4.0


@guarded(1 + 2 * N_SLOTS)
def add(ctx: AppContext, sae_id: str | None, index, *slots) -> tuple:
    """Put feature `index` into the first empty slot (a dead feature is refused)."""
    if index is None or str(index).strip() == "":
        raise ValidationError("Pick a feature from the search results first.")
    slots = list(slots)
    index = int(str(index).strip())
    stats = stats_for(ctx.store, sae_id) if sae_id else {}
    check_steerable(stats, [SteerFeature(index, 0.0)])
    held = [k for k in range(N_SLOTS) if not empty_slot(slots[2 * k]) and str(slots[2 * k]).strip() == str(index)]
    if held:  # a second click on the same row must not fill a second slot
        return (ok(f"Feature {index} is already in slot {held[0] + 1}."), *slots)
    for k in range(N_SLOTS):
        if empty_slot(slots[2 * k]):
            slots[2 * k], slots[2 * k + 1] = str(index), _default_strength(stats, index)
            label = feature_label(ctx.store, sae_id, index) if sae_id else ""
            return (ok(f"Added feature {index}{f' ({label})' if label else ''} to slot {k + 1}."), *slots)
    raise ValidationError(f"All {N_SLOTS} slots are in use. Clear one (empty its index) first.")


@guarded(4 + 2 * N_SLOTS)
def auto_strength(ctx: AppContext, sae_id, index, *slots, progress=gr.Progress()) -> tuple:
    """The short automatic sweep for the picked feature (small strengths first, `steering/auto.py`); its slot gets
    the suggested strength. (status, sweep rows HTML, suggestion, suggested strength, *slots)."""
    if empty_slot(index) or not sae_id:
        raise ValidationError("Pick a feature (click a row of Find's results) first.")
    index, slots = int(str(index).strip()), list(slots)
    if not any(str(slots[2 * k]).strip() == str(index) for k in range(N_SLOTS)):
        return (gr.skip(),) * (4 + 2 * N_SLOTS)      # not in a slot (all were full: Add said so)
    stats = stats_for(ctx.store, sae_id)
    check_steerable(stats, [SteerFeature(index, 0.0)])
    mx = stats.get("max_activation")
    unit = float(mx[index]) if mx is not None else None
    t = load_target(ctx.store, sae_id)
    with GENERATE_LOCK:
        tokens = effect_tokens_for(ctx.store, t, sae_id, [index])
        res = feature_auto_sweep(t.model, t.tokenizer, t.sae, t.hook_name,
                                 SteeringConfig([SteerFeature(index, 1.0)]), unit, effect_tokens=tokens,
                                 progress=progress_adapter(progress))
    best = res["suggested_strength"]
    held = [k for k in range(N_SLOTS) if str(slots[2 * k]).strip() == str(index)]
    if best is not None:
        slots[2 * held[0] + 1] = best
    msg = (f"Feature {index}: suggested strength {fmt_strength(best, unit)} from an automatic sweep "
           f"({len(res['prompts'])} prompts × {res['seeds']} seeds)." if best is not None else
           f"Feature {index}: the automatic sweep found no strength that keeps the text fluent; it stays at "
           f"{slots[2 * held[0] + 1]}.")
    return (ok(msg), sweep_html(res, unit), suggestion_md(res), "" if best is None else f"{best:g}", *slots)


def units_md(ctx: AppContext, sae_id, *slots) -> str:
    """Each filled slot's strength raw and in units of its feature's max activation."""
    stats = stats_for(ctx.store, sae_id) if sae_id else {}
    mx = stats.get("max_activation")
    parts = []
    for k in range(N_SLOTS):
        idx = str(slots[2 * k] or "").strip()
        if idx.isdigit():
            i = int(idx)
            unit = float(mx[i]) if mx is not None and i < len(mx) else None
            parts.append(f"slot {k + 1}: feature {i} at {fmt_strength(float(slots[2 * k + 1] or 0), unit)}")
    return " · ".join(parts)


def generate(ctx: AppContext, sae_id, prompt, method, positions, normalize, max_new, temperature, top_p, seed,
             chat, *slots):
    """Stream (status, baseline, steered, readings) as both columns grow; the readings (both activations, named,
    and perplexities) come with the last update."""
    try:
        steering, sampling = _configs(method, positions, normalize, max_new, temperature, top_p, seed, chat, slots)
        t = _target(ctx, sae_id, steering)
        with GENERATE_LOCK:
            for st in compare_stream(t.model, t.tokenizer, t.sae, t.hook_name, prompt, steering, sampling):
                n = len(st["steered_tokens"])
                rate = n / st["seconds"] if st["seconds"] > 0 else 0.0
                status = (ok(f"done · {n} tokens · {rate:.1f} tokens/s (2 rows)") if st["done"] else
                          f"generating · {n} tokens · {rate:.1f} tokens/s (2 rows)")
                yield status, st["baseline"], st["steered"], readings_md(st)
    except MistudioError as e:  # a generator cannot use `guarded`: report the problem as the status
        yield failed(str(e)), gr.skip(), gr.skip(), gr.skip()


@guarded(5)
def run_sweep(ctx: AppContext, sae_id, prompt, strengths, seeds, method, positions, normalize, max_new,
              temperature, top_p, seed, chat, *slots, progress=gr.Progress()) -> tuple:
    """(status, table, chart, suggestion Markdown, suggested strength as text ('' when none))."""
    steering, sampling = _configs(method, positions, normalize, max_new, temperature, top_p, seed, chat, slots)
    spec = front_door.build("sweep", store=ctx.store, sae_id=sae_id, prompt=prompt,  # checked before a model loads
                            strengths=parse_strengths(strengths), seeds=int(seeds or 1), steering=steering.to_dict(),
                            sampling=sampling.to_dict())
    t = load_target(ctx.store, sae_id)
    with GENERATE_LOCK:
        tokens = effect_tokens_for(ctx.store, t, sae_id, [f.index for f in steering.features])
        res = sweep_spec.run(t, spec, progress=progress_adapter(progress), effect_tokens=tokens)
    best, mx = res["suggested_strength"], stats_for(ctx.store, sae_id).get("max_activation")
    unit = float(mx[steering.features[0].index]) if mx is not None else None
    return (ok(f"Swept {len(res['rows'])} strengths × {res['seeds']} seed(s) in {res['seconds']:.1f} s."),
            sweep_html(res, unit), sweep_figure(res), suggestion_md(res), "" if best is None else f"{best:g}")


@guarded(1 + 2 * N_SLOTS)
def use_suggested(ctx: AppContext, suggested, *slots) -> tuple:
    """Set every filled slot's strength to the sweep's suggested strength."""
    if empty_slot(suggested):
        raise ValidationError("No suggested strength yet. Run a sweep with strength 0 and a few larger strengths "
                              "first.")
    value, slots = float(suggested), list(slots)
    filled = [k for k in range(N_SLOTS) if not empty_slot(slots[2 * k])]
    if not filled:
        raise ValidationError("No feature in the slots. Add a feature first.")
    for k in filled:
        slots[2 * k + 1] = value
    return (ok(f"Strength {value:g} set on {len(filled)} feature slot(s)."), *slots)


@guarded(2)
def run_batch(ctx: AppContext, sae_id, prompts_text, method, positions, normalize, max_new, temperature, top_p,
              seed, chat, *slots, progress=gr.Progress()) -> tuple:
    steering, sampling = _configs(method, positions, normalize, max_new, temperature, top_p, seed, chat, slots)
    t = _target(ctx, sae_id, steering)
    with GENERATE_LOCK:
        res = run_prompt_set(t.model, t.tokenizer, t.sae, t.hook_name, (prompts_text or "").splitlines(),
                             steering, sampling, progress=progress_adapter(progress))
    f0 = steering.features[0].index
    rows = [{**r, "at_hook": _round(r["steered_feature_mean"].get(f0)), "read": _round(r["feature_mean"].get(f0))}
            for r in res]
    return ok(f"Ran {len(res)} prompts."), table(rows, {
        "prompt": "prompt", "baseline": "baseline", "steered": "steered",
        "at_hook": f"feature {f0}: {STEERED_LABEL}", "read": f"feature {f0}: {READ_LABEL}"})


def _round(x):
    return None if x is None else round(x, 3)


@guarded(2)
def save_session(ctx: AppContext, name, sae_id, prompt, baseline, steered, method, positions, normalize, max_new,
                 temperature, top_p, seed, chat, *slots) -> tuple:
    require_writable(ctx)
    steering, sampling = _configs(method, positions, normalize, max_new, temperature, top_p, seed, chat, slots)
    rec = ss.save_session(ctx.store, name, {"sae_id": sae_id, "prompt": prompt, "steering": steering.to_dict(),
                                            "sampling": sampling.to_dict(),
                                            "outputs": {"baseline": baseline, "steered": steered}})
    return ok(f"Saved session `{rec['name']}`."), gr.update(
        choices=[(s["name"], s["id"]) for s in ss.list_sessions(ctx.store)], value=rec["id"])


@guarded(13 + 2 * N_SLOTS)
def load_session(ctx: AppContext, session_id) -> tuple:
    """Restore SAE, prompt, method, sampling, feature slots and the saved outputs."""
    if not session_id:
        raise ValidationError("Pick a saved session first.")
    rec = ss.load_session(ctx.store, session_id)
    st, sa = SteeringConfig.from_dict(rec["steering"]), SamplingConfig.from_dict(rec.get("sampling") or {})
    slots: list = ["", 0.0] * N_SLOTS
    for k, f in enumerate(st.features[:N_SLOTS]):
        slots[2 * k], slots[2 * k + 1] = str(f.index), f.strength
    out = rec.get("outputs") or {}
    return (ok(f"Loaded session `{rec['name']}`."), rec["sae_id"], rec["prompt"], st.method, st.positions,
            st.normalize, sa.max_new_tokens, sa.temperature, sa.top_p, sa.seed, sa.chat,
            out.get("baseline", ""), out.get("steered", ""), *slots)


@guarded(2)
def save_prompt_set(ctx: AppContext, name, prompts_text) -> tuple:
    require_writable(ctx)
    rec = ss.save_prompt_set(ctx.store, name, prompts_text or "")
    return ok(f"Saved prompt set `{rec['name']}` ({len(rec['prompts'])} prompts)."), gr.update(
        choices=[(p["name"], p["id"]) for p in ss.list_prompt_sets(ctx.store)], value=rec["id"])


@guarded(2)
def load_prompt_set(ctx: AppContext, set_id) -> tuple:
    if not set_id:
        raise ValidationError("Pick a saved prompt set first.")
    rec = ss.load_prompt_set(ctx.store, set_id)
    return ok(f"Loaded prompt set `{rec['name']}`."), "\n".join(rec["prompts"])


def _wire(ctx: AppContext, c: dict) -> None:
    bind = functools.partial
    knobs = [c[k] for k in ("method", "positions", "normalize", "max_new", "temperature", "top_p", "seed", "chat")]
    slots, status, sae = c["slots"], c["status"], c["sae"]
    c["query"].submit(bind(find, ctx), [sae, c["query"]], [status, c["hits"]], api_name="steering_find")
    # One click on a row: its index → a free slot → the automatic sweep sets that slot's strength.
    picked = c["hits"].select(pick_row, [c["hits"]], [c["picked"]], api_name="steering_pick_feature")
    added = picked.then(bind(add, ctx), [sae, c["picked"], *slots], [status, *slots], api_name="steering_add_feature")
    added.success(bind(auto_strength, ctx), [sae, c["picked"], *slots],
                  [status, c["sweep_table"], c["suggestion"], c["suggested"], *slots],
                  api_name="steering_auto_strength")
    for k, comp in enumerate(slots):
        comp.change(bind(units_md, ctx), [sae, *slots], [c["units"]], api_name=f"steering_units_{k}",
                    api_visibility="undocumented", show_progress="hidden")
    c["generate"].click(bind(generate, ctx), [sae, c["prompt"], *knobs, *slots],
                        [status, c["baseline"], c["steered"], c["readings"]], api_name="steering_generate")
    c["sweep"].click(bind(run_sweep, ctx), [sae, c["prompt"], c["strengths"], c["seeds"], *knobs, *slots],
                     [status, c["sweep_table"], c["sweep_plot"], c["suggestion"], c["suggested"]],
                     api_name="steering_sweep")
    c["use_suggested"].click(bind(use_suggested, ctx), [c["suggested"], *slots], [status, *slots],
                             api_name="steering_use_suggested")
    c["batch"].click(bind(run_batch, ctx), [sae, c["prompts"], *knobs, *slots], [status, c["batch_table"]],
                     api_name="steering_run_prompt_set")
    c["save"].click(bind(save_session, ctx), [c["session_name"], sae, c["prompt"], c["baseline"], c["steered"],
                                              *knobs, *slots], [status, c["session"]], api_name="steering_save_session")
    c["load"].click(bind(load_session, ctx), [c["session"]],
                    [status, sae, c["prompt"], *knobs, c["baseline"], c["steered"], *slots],
                    api_name="steering_load_session")
    c["save_set"].click(bind(save_prompt_set, ctx), [c["set_name"], c["prompts"]], [status, c["prompt_set"]],
                        api_name="steering_save_prompt_set")
    c["load_set"].click(bind(load_prompt_set, ctx), [c["prompt_set"]], [status, c["prompts"]],
                        api_name="steering_load_prompt_set")
    wire_groups(ctx, c)
    on_show(ctx, bind(sae_list, ctx), [sae], [sae, c["session"], c["prompt_set"]], api_name="steering_list")


def build(ctx: AppContext) -> None:
    c = layout()
    _wire(ctx, c)
    knobs = [c[k] for k in ("method", "positions", "normalize", "max_new", "temperature", "top_p", "seed", "chat")]
    steering_concept.wire(ctx, c, knobs)


if __name__ == "__main__":  # a quick look at this page alone
    from mistudio_core.platform.store import Store

    with gr.Blocks() as demo:
        build(AppContext(store=Store()))
    demo.launch()
