"""Steering tab: generate with SAE features amplified or suppressed, side by side with the unsteered baseline.

Pick an SAE, find features by label or index, set strengths (negative pushes away from a feature), then
generate: both columns stream from the same seed, so what differs is the steering alone. Every run names its two
activations: the activation in the steered model (at the hook) and the unsteered model reading the output. A
strength sweep (over seeds) charts both, the perplexity and the effect share (generated tokens among the feature's
top tokens) against the unsteered baseline, and suggests a strength (largest with perplexity ≤ 1.5× baseline).
Sessions (prompt, features, strengths, outputs) and prompt sets (a batch template) are saved in the data directory. Handlers are plain functions of `(ctx, ...)` tested directly; the first output is a status.
"""
from __future__ import annotations

import functools
import threading
from typing import Any

import gradio as gr

from mistudio_core.errors import MistudioError, ValidationError
from mistudio_core.steering import sessions as ss
from mistudio_core.steering.generate import SamplingConfig, compare_stream, run_prompt_set
from mistudio_core.steering.loader import effect_tokens_for, feature_label, load_target, search_features
from mistudio_core.steering.methods import SteerFeature, SteeringConfig
from mistudio_core.steering.score import READ_LABEL, STEERED_LABEL
from mistudio_core.steering.sweep import parse_strengths, sweep

from .common import dropdown_update, failed, guarded, ok, on_show, progress_adapter, require_writable, table
from .context import AppContext
from .steering_layout import N_SLOTS, layout
from .steering_sweep import readings_md, suggestion_md, sweep_figure, sweep_table

# Steering hooks sit on the shared, cached model: one steered generation at a time keeps a second request's
# forward passes from running through the first one's hook.
_LOCK = threading.Lock()


def _empty(index) -> bool:
    return index is None or str(index).strip() == ""


def _features(slots: tuple) -> list[SteerFeature]:
    """(index, strength) × N_SLOTS → the features of the filled slots (an empty index box is an unused slot)."""
    feats = []
    for k in range(0, len(slots), 2):
        index, strength = slots[k], slots[k + 1]
        if _empty(index):
            continue
        try:
            feats.append(SteerFeature(int(str(index).strip()), float(strength or 0.0)))
        except ValueError:
            raise ValidationError(f"Feature slot {k // 2 + 1} holds {str(index)!r}, not a feature index. Type a "
                                  "whole number such as 123, or empty the box to leave the slot unused.") from None
    return feats


def _configs(method, positions, normalize, max_new, temperature, top_p, seed, chat, slots):
    feats = _features(slots)
    if not feats:
        raise ValidationError("No feature selected. Search a feature by label or index and press 'Add', or type "
                              "an index into a slot.")
    return (SteeringConfig(feats, method=method, normalize=bool(normalize), positions=positions),
            SamplingConfig(max_new_tokens=int(max_new), temperature=float(temperature), top_p=float(top_p),
                           seed=int(seed), chat=bool(chat)))


def sae_list(ctx: AppContext, current: str | None) -> tuple[Any, Any, Any]:
    return (dropdown_update(ctx.store.list("saes"), current),
            gr.update(choices=[(s["name"], s["id"]) for s in ss.list_sessions(ctx.store)]),
            gr.update(choices=[(p["name"], p["id"]) for p in ss.list_prompt_sets(ctx.store)]))


def _hit_label(hit: dict) -> str:
    """'12 · shouting in capitals [neuronpedia]': index, label and where the label came from."""
    source = f" [{hit['source']}]" if hit.get("source") else ""
    return f"{hit['index']} · {hit['label'] or '(no label)'}{source}"


@guarded(2)
def find(ctx: AppContext, sae_id: str | None, text: str) -> tuple[str, Any]:
    """Features whose label matches `text`, or the feature with that index."""
    if not sae_id:
        raise ValidationError("No SAE selected. Pick one first.")
    d_sae = ctx.store.manifest("saes", sae_id).get("d_sae")
    hits = search_features(ctx.store, sae_id, text, d_sae=d_sae)
    items = [(_hit_label(h), h["index"]) for h in hits]
    msg = (f"{len(items)} feature(s) found; pick one to put it in a slot." if items
           else "No feature matches; try another word or an index.")
    return ok(msg), gr.update(choices=items, value=items[0][1] if items else None)


@guarded(1 + 2 * N_SLOTS)
def add(ctx: AppContext, sae_id: str | None, index, *slots) -> tuple:
    """Put feature `index` into the first empty slot (strength 4, a visible default)."""
    if index is None or index == "":
        raise ValidationError("Pick a feature from the search results first.")
    slots = list(slots)
    index = int(index)
    held = [k for k in range(N_SLOTS) if not _empty(slots[2 * k]) and str(slots[2 * k]).strip() == str(index)]
    if held:  # picking a match adds it, so a later 'Add' of the same feature must not fill a second slot
        return (ok(f"Feature {index} is already in slot {held[0] + 1}."), *slots)
    for k in range(N_SLOTS):
        if _empty(slots[2 * k]):
            slots[2 * k], slots[2 * k + 1] = str(index), 4.0
            label = feature_label(ctx.store, sae_id, index) if sae_id else ""
            return (ok(f"Added feature {index}{f' ({label})' if label else ''} to slot {k + 1}."), *slots)
    raise ValidationError(f"All {N_SLOTS} slots are in use. Clear one (empty its index) first.")


def generate(ctx: AppContext, sae_id, prompt, method, positions, normalize, max_new, temperature, top_p, seed,
             chat, *slots):
    """Stream (status, baseline, steered, readings) as both columns grow; the readings (both activations, named,
    and perplexities) come with the last update."""
    try:
        steering, sampling = _configs(method, positions, normalize, max_new, temperature, top_p, seed, chat, slots)
        t = load_target(ctx.store, sae_id)
        with _LOCK:
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
    t = load_target(ctx.store, sae_id)
    with _LOCK:
        tokens = effect_tokens_for(ctx.store, t, sae_id, [f.index for f in steering.features])
        res = sweep(t.model, t.tokenizer, t.sae, t.hook_name, prompt, steering, parse_strengths(strengths),
                    sampling, progress=progress_adapter(progress), seeds=int(seeds or 1), effect_tokens=tokens)
    best = res["suggested_strength"]
    return (ok(f"Swept {len(res['rows'])} strengths × {res['seeds']} seed(s) in {res['seconds']:.1f} s."),
            sweep_table(res), sweep_figure(res), suggestion_md(res), "" if best is None else f"{best:g}")


@guarded(1 + 2 * N_SLOTS)
def use_suggested(ctx: AppContext, suggested, *slots) -> tuple:
    """Set every filled slot's strength to the sweep's suggested strength."""
    if _empty(suggested):
        raise ValidationError("No suggested strength yet. Run a sweep with strength 0 and a few larger strengths "
                              "first.")
    value, slots = float(suggested), list(slots)
    filled = [k for k in range(N_SLOTS) if not _empty(slots[2 * k])]
    if not filled:
        raise ValidationError("No feature in the slots. Add a feature first.")
    for k in filled:
        slots[2 * k + 1] = value
    return (ok(f"Strength {value:g} set on {len(filled)} feature slot(s)."), *slots)


@guarded(2)
def run_batch(ctx: AppContext, sae_id, prompts_text, method, positions, normalize, max_new, temperature, top_p,
              seed, chat, *slots, progress=gr.Progress()) -> tuple:
    steering, sampling = _configs(method, positions, normalize, max_new, temperature, top_p, seed, chat, slots)
    t = load_target(ctx.store, sae_id)
    with _LOCK:
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
    c["add"].click(bind(add, ctx), [sae, c["hits"], *slots], [status, *slots], api_name="steering_add_feature")
    # `input` fires on the user's pick only (not when `find` fills the list), so a pick fills a slot at once.
    c["hits"].input(bind(add, ctx), [sae, c["hits"], *slots], [status, *slots], api_name="steering_pick_feature")
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
    on_show(ctx, bind(sae_list, ctx), [sae], [sae, c["session"], c["prompt_set"]], api_name="steering_list")


def build(ctx: AppContext) -> None:
    _wire(ctx, layout())


if __name__ == "__main__":  # a quick look at this page alone
    from mistudio_core.store import Store

    with gr.Blocks() as demo:
        build(AppContext(store=Store()))
    demo.launch()
