"""Steering tab layout: the components, returned by name; no handlers, no imports of the page (it wires them).

Kept apart from `pages/steering.py` so the page module holds the handlers and their wiring in one screen each.
"""
from __future__ import annotations

import gradio as gr

from mistudio_core.steering import concept as sc
from mistudio_core.steering.auto import AUTO_PROMPTS, feature_sweep_text
from mistudio_core.steering.methods import METHODS, POSITIONS

N_SLOTS = 4
AS_VECTOR, AS_FEATURES = "raw vector", "selected features"
EFFECT_NONE = "none"
CONCEPT_COLUMNS = {"role": "role", "index": "feature", "push": "push (share of the vector's output effect)",
                   "strength": "strength at multiplier 1", "delta": "Δ activation (concept − contrast)",
                   "share": "share of the vector", "cosine": "cosine(W_dec, vector)",
                   "writes": "writes (top logit-lens tokens)"}
FIND_COLUMNS = {"index": "feature", "writes": "writes (top logit-lens tokens)", "push": "push (nats)",
                "output_score": "output score", "max_act": "max act", "label": "label"}


def _slot_row(k: int):
    with gr.Row():
        # A Textbox, not a Number: Gradio's Number shows and sends 0 when empty, which would read as feature 0.
        idx = gr.Textbox(label=f"feature {k + 1}", value="", placeholder="index", scale=1)
        # Wide enough for unit-norm decoders (Gemma Scope, or "unit-norm vector"), where useful strengths reach the
        # hundreds; on our SAEs (decoder rows at activation scale) 4-16 is typical, typed into the number box.
        strength = gr.Slider(-300, 300, value=0.0, step=0.01, label="strength (negative suppresses)", scale=4)
    return idx, strength


def layout() -> dict:
    """Lay out the tab; returns its components by name (wired in `_wire`)."""
    gr.Markdown("Steer generation with SAE features (Neuronpedia semantics): **additive** h += c·W_dec[f]; "
                "**orthogonal** h → (I−P)h + c·Ph; **projection cap** caps h's component along W_dec[f] at c; "
                "**clamp** sets the feature's activation to c in feature space (0 ablates it); **clamp_exact** scales "
                "that change so the SAE re-reads exactly c (trained SAEs' encoders read back only part of a "
                "decoder step). Baseline and steered share the seed, so the difference is the steering alone.")
    c = {"status": gr.Markdown(elem_id="steering-status")}
    with gr.Row():
        c["sae"] = gr.Dropdown(label="SAE", choices=[], scale=2)
        c["query"] = gr.Textbox(label="find feature (label words or index)", scale=3,
                                placeholder="a word it should write (war, light), label words (yelling) or an index")
        c["picked"] = gr.Textbox(label="picked feature", scale=1, interactive=False, elem_id="steering-picked")
    c["hits"] = gr.Dataframe(label="matches, best writers first — click a row to put it in a free slot (its "
                                   "strength comes from a short automatic sweep)", interactive=False, wrap=True,
                             elem_id="steering-find-results", headers=list(FIND_COLUMNS.values()))
    gr.Markdown(f"Automatic sweep behind a click: {feature_sweep_text()}.", elem_id="steering-auto-note")
    c["slots"] = [x for k in range(N_SLOTS) for x in _slot_row(k)]
    c["units"] = gr.Markdown(elem_id="steering-units")
    with gr.Accordion("method and sampling", open=False):
        with gr.Row():
            c["method"] = gr.Dropdown(list(METHODS), value="additive", label="method")
            c["positions"] = gr.Dropdown(list(POSITIONS), value="all", label="positions")
            c["normalize"] = gr.Checkbox(label="unit-norm vector", value=False)
            c["chat"] = gr.Checkbox(label="chat template", value=False)
        with gr.Row():
            c["max_new"] = gr.Slider(1, 256, value=48, step=1, label="max new tokens")
            c["temperature"] = gr.Slider(0, 2, value=0.7, step=0.05, label="temperature (0 = greedy)")
            c["top_p"] = gr.Slider(0.05, 1, value=0.9, step=0.05, label="top-p")
            c["seed"] = gr.Number(value=0, precision=0, label="seed")
    c["prompt"] = gr.Textbox(label="prompt", lines=2, value="The weather today is")
    c["generate"] = gr.Button("Generate baseline and steered", variant="primary")
    with gr.Row():
        c["baseline"] = gr.Textbox(label="baseline (unsteered)", lines=6, interactive=False)
        c["steered"] = gr.Textbox(label="steered", lines=6, interactive=False)
    c["readings"] = gr.Markdown(elem_id="steering-readings")
    _sweep_layout(c)
    _concept_layout(c)
    _groups_layout(c)
    _sessions_layout(c)
    return c


def _sweep_layout(c: dict) -> None:
    with gr.Accordion("strength sweep", open=False):
        with gr.Row():
            c["strengths"] = gr.Textbox(label="strengths ('-8, 0, 4, 8' or '0:16:4'); each feature set to each value",
                                        value="0, 2, 4, 8, 16, 32", scale=4)
            c["seeds"] = gr.Number(value=2, precision=0, minimum=1, maximum=32, label="seeds (averaged)", scale=1)
            c["sweep"] = gr.Button("Run sweep", scale=1)
        c["suggestion"] = gr.Markdown(elem_id="steering-suggestion")
        with gr.Row():
            c["suggested"] = gr.Textbox(label="suggested strength", interactive=False, scale=1)
            c["use_suggested"] = gr.Button("Use suggested strength", scale=1)
        c["sweep_plot"] = gr.Plot(label="feature activation, perplexity and effect share vs strength")
        c["sweep_table"] = gr.HTML(elem_id="steering-sweep-table")


def _concept_layout(c: dict) -> None:
    with gr.Accordion("concept from examples (e.g. yelling)", open=False):
        gr.Markdown("Two paired prompt sets: line i of the contrast is line i of the concept without it. Their mean "
                    "difference at the hook is the concept vector; the table lists the SAE features that carry it. "
                    "Steer with the raw vector or with the ticked features (each at multiplier × its Δ activation). "
                    f"Sweep: {sc.concept_sweep_text()}.")
        with gr.Row():
            c["c_builtin"] = gr.Dropdown(sc.builtin_names(), value="yelling", label="built-in pair", scale=2)
            c["c_load"] = gr.Button("Load built-in", scale=1)
            c["c_effect"] = gr.Dropdown([EFFECT_NONE, *sc.EFFECTS], value=EFFECT_NONE, label="effect to measure",
                                        scale=2)
        with gr.Row():
            c["c_pos"] = gr.Textbox(label="concept examples (one per line)", lines=5)
            c["c_neg"] = gr.Textbox(label="contrast examples (the same, without the concept)", lines=5)
        c["c_build"] = gr.Button("Build concept vector")
        c["c_summary"] = gr.Markdown(elem_id="steering-concept-summary")
        c["c_table"] = gr.Dataframe(interactive=False, wrap=True, headers=list(CONCEPT_COLUMNS.values()),
                                    label="features that write the concept (measured), then those that carry it")
        c["c_state"] = gr.State(None)
        with gr.Row():
            c["c_as"] = gr.Radio([AS_VECTOR, AS_FEATURES], value=AS_VECTOR, label="steer with", scale=1)
            c["c_feats"] = gr.CheckboxGroup(choices=[], label="features to steer with", scale=3)
        c["c_prompts"] = gr.Textbox(label="sweep prompts (one per line)", lines=3, value="\n".join(AUTO_PROMPTS))
        with gr.Row():
            c["c_sweep"] = gr.Button("Sweep concept strength", scale=1)
            c["c_mult"] = gr.Number(value=1.0, label="multiplier (1 = the mean difference itself)", scale=1)
            c["c_generate"] = gr.Button("Generate with concept", variant="primary", scale=1)
            c["c_to_slots"] = gr.Button("Put ticked features in slots", scale=1)
        c["c_suggestion"] = gr.Markdown(elem_id="steering-concept-suggestion")
        c["c_rows"] = gr.HTML(elem_id="steering-concept-sweep")


def _groups_layout(c: dict) -> None:
    with gr.Accordion("feature groups", open=False):
        gr.Markdown("A group is a named set of features with their strengths (the filled slots): save it, load it "
                    "back into the slots to steer with all of them together, **Generate with group** (every "
                    "feature, however many; the prompt and sampling above), or export it as JSON.")
        with gr.Row():
            c["group_name"] = gr.Textbox(label="group name", scale=2)
            c["save_group"] = gr.Button("Save slots as group", scale=1)
            c["group"] = gr.Dropdown(label="saved groups (this SAE)", choices=[], scale=2)
            c["load_group"] = gr.Button("Load into slots", scale=1, elem_id="steering-load-group")
            c["export_group"] = gr.Button("Export JSON", scale=1)
            c["group_generate"] = gr.Button("Generate with group", scale=1)
        c["group_file"] = gr.File(label="exported group", interactive=False)


def _sessions_layout(c: dict) -> None:
    with gr.Accordion("sessions and prompt sets", open=False):
        with gr.Row():
            c["session_name"] = gr.Textbox(label="session name", scale=2)
            c["save"] = gr.Button("Save session", scale=1)
            c["session"] = gr.Dropdown(label="saved sessions", choices=[], scale=2)
            c["load"] = gr.Button("Load", scale=1, elem_id="steering-load-session")
        c["prompts"] = gr.Textbox(label="prompt set (one prompt per line)", lines=4)
        with gr.Row():
            c["set_name"] = gr.Textbox(label="prompt set name", scale=2)
            c["save_set"] = gr.Button("Save prompt set", scale=1)
            c["prompt_set"] = gr.Dropdown(label="saved prompt sets", choices=[], scale=2)
            c["load_set"] = gr.Button("Load", scale=1, elem_id="steering-load-prompt-set")
        c["batch"] = gr.Button("Run prompt set (baseline vs steered)")
        c["batch_table"] = gr.Dataframe(label="batch results", interactive=False, wrap=True,
                                        headers=["prompt", "baseline", "steered"])
