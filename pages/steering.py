"""Steering tab: generate with SAE features amplified or suppressed, side by side with the unsteered baseline.

Pick an SAE, find features by label or index, set strengths (negative pushes away from a feature), then
generate: both columns stream from the same seed, so what differs is the steering alone. A strength sweep shows
the outputs at several strengths with a chart of the feature's activation and the output's perplexity under the
unsteered model. Sessions (prompt, features, strengths, outputs) and prompt sets (a batch template) are saved in
the data directory. Handlers are plain functions of `(ctx, ...)` tested directly; the first output is a status.
"""
from __future__ import annotations

import functools
import threading
from typing import Any

import gradio as gr
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from mistudio_core.errors import MistudioError, ValidationError
from mistudio_core.steering import sessions as ss
from mistudio_core.steering.generate import SamplingConfig, compare_stream, run_prompt_set
from mistudio_core.steering.loader import feature_label, load_target, search_features
from mistudio_core.steering.methods import METHODS, POSITIONS, SteerFeature, SteeringConfig
from mistudio_core.steering.sweep import parse_strengths, sweep

from .common import dropdown_update, failed, guarded, ok, on_show, progress_adapter, require_writable, table
from .context import AppContext

N_SLOTS = 4
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


@guarded(2)
def find(ctx: AppContext, sae_id: str | None, text: str) -> tuple[str, Any]:
    """Features whose label matches `text`, or the feature with that index."""
    if not sae_id:
        raise ValidationError("No SAE selected. Pick one first.")
    d_sae = ctx.store.manifest("saes", sae_id).get("d_sae")
    hits = search_features(ctx.store, sae_id, text, d_sae=d_sae)
    items = [(f"{h['index']} · {h['label'] or '(no label)'}", h["index"]) for h in hits]
    msg = f"{len(items)} feature(s) found." if items else "No feature matches; try another word or an index."
    return ok(msg), gr.update(choices=items, value=items[0][1] if items else None)


@guarded(1 + 2 * N_SLOTS)
def add(ctx: AppContext, sae_id: str | None, index, *slots) -> tuple:
    """Put feature `index` into the first empty slot (strength 4, a visible default)."""
    if index is None or index == "":
        raise ValidationError("Pick a feature from the search results first.")
    slots = list(slots)
    for k in range(N_SLOTS):
        if _empty(slots[2 * k]):
            slots[2 * k], slots[2 * k + 1] = str(int(index)), 4.0
            label = feature_label(ctx.store, sae_id, int(index)) if sae_id else ""
            return (ok(f"Added feature {index}{f' ({label})' if label else ''} to slot {k + 1}."), *slots)
    raise ValidationError(f"All {N_SLOTS} slots are in use. Clear one (empty its index) first.")


def generate(ctx: AppContext, sae_id, prompt, method, positions, normalize, max_new, temperature, top_p, seed,
             chat, *slots):
    """Stream (status, baseline, steered) as both columns grow."""
    try:
        steering, sampling = _configs(method, positions, normalize, max_new, temperature, top_p, seed, chat, slots)
        t = load_target(ctx.store, sae_id)
        with _LOCK:
            for st in compare_stream(t.model, t.tokenizer, t.sae, t.hook_name, prompt, steering, sampling):
                n = len(st["steered_tokens"])
                rate = n / st["seconds"] if st["seconds"] > 0 else 0.0
                status = (ok(f"done · {n} tokens · {rate:.1f} tokens/s (2 rows)") if st["done"] else
                          f"generating · {n} tokens · {rate:.1f} tokens/s (2 rows)")
                yield status, st["baseline"], st["steered"]
    except MistudioError as e:  # a generator cannot use `guarded`: report the problem as the status
        yield failed(str(e)), gr.skip(), gr.skip()


def sweep_figure(result: dict) -> go.Figure:
    """Feature activation and perplexity vs strength (two y axes)."""
    xs = [r["strength"] for r in result["rows"]]
    f0 = result["features"][0]
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(go.Scatter(x=xs, y=[r["feature_mean"][f0] for r in result["rows"]], mode="lines+markers",
                             name=f"feature {f0} mean activation"), secondary_y=False)
    fig.add_trace(go.Scatter(x=xs, y=[r["perplexity"] for r in result["rows"]], mode="lines+markers",
                             name="perplexity (unsteered model)"), secondary_y=True)
    fig.update_layout(height=300, margin=dict(l=50, r=50, t=30, b=40), template="plotly_white",
                      legend=dict(orientation="h", y=1.15), xaxis_title="strength")
    fig.update_yaxes(title_text="activation", secondary_y=False)
    fig.update_yaxes(title_text="perplexity", type="log", secondary_y=True)
    return fig


@guarded(3)
def run_sweep(ctx: AppContext, sae_id, prompt, strengths, method, positions, normalize, max_new, temperature,
              top_p, seed, chat, *slots, progress=gr.Progress()) -> tuple:
    steering, sampling = _configs(method, positions, normalize, max_new, temperature, top_p, seed, chat, slots)
    t = load_target(ctx.store, sae_id)
    with _LOCK:
        res = sweep(t.model, t.tokenizer, t.sae, t.hook_name, prompt, steering, parse_strengths(strengths),
                    sampling, progress=progress_adapter(progress))
    f0 = res["features"][0]
    rows = [{"strength": r["strength"], "ppl": None if r["perplexity"] is None else round(r["perplexity"], 2),
             "act": None if r["feature_mean"][f0] is None else round(r["feature_mean"][f0], 3), "text": r["text"]}
            for r in res["rows"]]
    df = table(rows, {"strength": "strength", "act": f"feature {f0} activation", "ppl": "perplexity",
                      "text": "output"})
    return ok(f"Swept {len(rows)} strengths in {res['seconds']:.1f} s."), df, sweep_figure(res)


@guarded(2)
def run_batch(ctx: AppContext, sae_id, prompts_text, method, positions, normalize, max_new, temperature, top_p,
              seed, chat, *slots, progress=gr.Progress()) -> tuple:
    steering, sampling = _configs(method, positions, normalize, max_new, temperature, top_p, seed, chat, slots)
    t = load_target(ctx.store, sae_id)
    with _LOCK:
        res = run_prompt_set(t.model, t.tokenizer, t.sae, t.hook_name, (prompts_text or "").splitlines(),
                             steering, sampling, progress=progress_adapter(progress))
    return ok(f"Ran {len(res)} prompts."), table(res, {"prompt": "prompt", "baseline": "baseline",
                                                       "steered": "steered"})


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


def _slot_row(k: int):
    with gr.Row():
        # A Textbox, not a Number: Gradio's Number shows and sends 0 when empty, which would read as feature 0.
        idx = gr.Textbox(label=f"feature {k + 1}", value="", placeholder="index", scale=1)
        # Wide enough for unit-norm decoders (Gemma Scope, or "unit-norm vector"), where useful strengths reach the
        # hundreds; on our SAEs (decoder rows at activation scale) 4-16 is typical, typed into the number box.
        strength = gr.Slider(-300, 300, value=0.0, step=0.5, label="strength (negative suppresses)", scale=4)
    return idx, strength


def build(ctx: AppContext) -> None:
    bind = functools.partial
    gr.Markdown("Steer generation with SAE features (Neuronpedia semantics): **additive** h += c·W_dec[f]; "
                "**orthogonal** h → (I−P)h + c·Ph; **projection cap** caps h's component along W_dec[f] at c; "
                "**clamp** sets the feature's activation to c in feature space (0 ablates it); **clamp_exact** scales "
                "that change so the SAE re-reads exactly c (trained SAEs' encoders read back only part of a "
                "decoder step). Baseline and steered "
                "share the seed, so the difference is the steering alone.")
    status = gr.Markdown(elem_id="steering-status")
    with gr.Row():
        sae = gr.Dropdown(label="SAE", choices=[], scale=2)
        query = gr.Textbox(label="find feature (label words or index)", scale=2)
        hits = gr.Dropdown(label="matches", choices=[], scale=2)
        add_btn = gr.Button("Add", scale=1)
    slots = []
    for k in range(N_SLOTS):
        slots.extend(_slot_row(k))
    with gr.Accordion("method and sampling", open=False):
        with gr.Row():
            method = gr.Dropdown(list(METHODS), value="additive", label="method")
            positions = gr.Dropdown(list(POSITIONS), value="all", label="positions")
            normalize = gr.Checkbox(label="unit-norm vector", value=False)
            chat = gr.Checkbox(label="chat template", value=False)
        with gr.Row():
            max_new = gr.Slider(1, 256, value=48, step=1, label="max new tokens")
            temperature = gr.Slider(0, 2, value=0.7, step=0.05, label="temperature (0 = greedy)")
            top_p = gr.Slider(0.05, 1, value=0.9, step=0.05, label="top-p")
            seed = gr.Number(value=0, precision=0, label="seed")
    prompt = gr.Textbox(label="prompt", lines=2, value="The weather today is")
    gen_btn = gr.Button("Generate baseline and steered", variant="primary")
    with gr.Row():
        baseline = gr.Textbox(label="baseline (unsteered)", lines=6, interactive=False)
        steered = gr.Textbox(label="steered", lines=6, interactive=False)
    with gr.Accordion("strength sweep", open=False):
        with gr.Row():
            strengths = gr.Textbox(label="strengths ('-8, 0, 4, 8' or '0:16:4'); each feature set to each value",
                                   value="-8, 0, 4, 8, 16, 32", scale=4)
            sweep_btn = gr.Button("Run sweep", scale=1)
        sweep_plot = gr.Plot(label="feature activation and perplexity vs strength")
        sweep_table = gr.Dataframe(label="outputs per strength", interactive=False, wrap=True,
                                   headers=["strength", "feature activation", "perplexity", "output"])
    with gr.Accordion("sessions and prompt sets", open=False):
        with gr.Row():
            session_name = gr.Textbox(label="session name", scale=2)
            save_btn = gr.Button("Save session", scale=1)
            session = gr.Dropdown(label="saved sessions", choices=[], scale=2)
            load_btn = gr.Button("Load", scale=1, elem_id="steering-load-session")
        prompts = gr.Textbox(label="prompt set (one prompt per line)", lines=4)
        with gr.Row():
            set_name = gr.Textbox(label="prompt set name", scale=2)
            save_set_btn = gr.Button("Save prompt set", scale=1)
            prompt_set = gr.Dropdown(label="saved prompt sets", choices=[], scale=2)
            load_set_btn = gr.Button("Load", scale=1, elem_id="steering-load-prompt-set")
        batch_btn = gr.Button("Run prompt set (baseline vs steered)")
        batch_table = gr.Dataframe(label="batch results", interactive=False, wrap=True,
                                   headers=["prompt", "baseline", "steered"])

    knobs = [method, positions, normalize, max_new, temperature, top_p, seed, chat]
    query.submit(bind(find, ctx), [sae, query], [status, hits], api_name="steering_find")
    add_btn.click(bind(add, ctx), [sae, hits, *slots], [status, *slots], api_name="steering_add_feature")
    gen_btn.click(bind(generate, ctx), [sae, prompt, *knobs, *slots], [status, baseline, steered],
                  api_name="steering_generate")
    sweep_btn.click(bind(run_sweep, ctx), [sae, prompt, strengths, *knobs, *slots],
                    [status, sweep_table, sweep_plot], api_name="steering_sweep")
    batch_btn.click(bind(run_batch, ctx), [sae, prompts, *knobs, *slots], [status, batch_table],
                    api_name="steering_run_prompt_set")
    save_btn.click(bind(save_session, ctx), [session_name, sae, prompt, baseline, steered, *knobs, *slots],
                   [status, session], api_name="steering_save_session")
    load_btn.click(bind(load_session, ctx), [session],
                   [status, sae, prompt, *knobs, baseline, steered, *slots], api_name="steering_load_session")
    save_set_btn.click(bind(save_prompt_set, ctx), [set_name, prompts], [status, prompt_set],
                       api_name="steering_save_prompt_set")
    load_set_btn.click(bind(load_prompt_set, ctx), [prompt_set], [status, prompts],
                       api_name="steering_load_prompt_set")
    on_show(ctx, bind(sae_list, ctx), [sae], [sae, session, prompt_set], api_name="steering_list")


if __name__ == "__main__":  # a quick look at this page alone
    from mistudio_core.store import Store

    with gr.Blocks() as demo:
        build(AppContext(store=Store()))
    demo.launch()
