"""Steering tab layout: the components, returned by name; no handlers, no imports of the page (it wires them).

Kept apart from `pages/steering.py` so the page module holds the handlers and their wiring in one screen each.
"""
from __future__ import annotations

import gradio as gr

from mistudio_core.steering.methods import METHODS, POSITIONS
from mistudio_core.steering.score import READ_LABEL, STEERED_LABEL

N_SLOTS = 4


def _slot_row(k: int):
    with gr.Row():
        # A Textbox, not a Number: Gradio's Number shows and sends 0 when empty, which would read as feature 0.
        idx = gr.Textbox(label=f"feature {k + 1}", value="", placeholder="index", scale=1)
        # Wide enough for unit-norm decoders (Gemma Scope, or "unit-norm vector"), where useful strengths reach the
        # hundreds; on our SAEs (decoder rows at activation scale) 4-16 is typical, typed into the number box.
        strength = gr.Slider(-300, 300, value=0.0, step=0.5, label="strength (negative suppresses)", scale=4)
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
        c["query"] = gr.Textbox(label="find feature (label words or index)", scale=2,
                                placeholder="e.g. yelling, capital letters, or 123")
        c["hits"] = gr.Dropdown(label="matches (pick one to put it in a slot)", choices=[], scale=2)
        c["add"] = gr.Button("Add", scale=1)
    c["slots"] = [x for k in range(N_SLOTS) for x in _slot_row(k)]
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
        c["sweep_table"] = gr.Dataframe(label="outputs per strength", interactive=False, wrap=True,
                                        headers=["strength", STEERED_LABEL, READ_LABEL, "perplexity",
                                                 "effect share (feature's top tokens)", "output (first seed)"])


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
