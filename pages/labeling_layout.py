"""Widgets and event wiring of the Labeling tab (handlers live in `pages/labeling.py`). Every event has an
explicit `api_name` prefixed `labeling_`."""
from __future__ import annotations

import functools

import gradio as gr

from mistudio_core.labeling.client import PRESETS

from .common import choices, on_show, pick, table
from .context import AppContext


def _provider_block(h):
    gr.Markdown(h.provider_help(), elem_id="labeling-provider-help")
    with gr.Row():
        preset = gr.Dropdown(label="Preset", choices=list(PRESETS), value="OpenAI", scale=1)
        base_url = gr.Textbox(label="Base URL", value=PRESETS["OpenAI"][0], scale=2)
        model = gr.Textbox(label="Model", value=PRESETS["OpenAI"][1], scale=1)
    with gr.Row():
        api_key = gr.Textbox(label="API key (memory only; empty = $OPENAI_API_KEY or none)", type="password",
                             scale=2)
        price_in = gr.Number(label="$ / 1M prompt tokens", value=0.0, minimum=0, scale=1)
        price_out = gr.Number(label="$ / 1M completion tokens", value=0.0, minimum=0, scale=1)
        timeout = gr.Number(label="Timeout (s)", value=60, minimum=1, scale=1)
        json_mode = gr.Checkbox(label="JSON mode", value=False, scale=1)
    with gr.Row():
        test_btn = gr.Button("Test connection", scale=1)
        test_msg = gr.Markdown(elem_id="labeling-test-status")  # the answer next to its button
        models = gr.Markdown(elem_id="labeling-models")
    local_note = gr.Markdown(elem_id="labeling-local-models")
    return preset, base_url, model, api_key, price_in, price_out, timeout, json_mode, test_btn, test_msg, models, \
        local_note


def layout(ctx: AppContext, h) -> None:
    """Lay the tab out and wire it to `h`, the page's handler module (passed in, so this module never imports
    its page back)."""
    bind = functools.partial
    gr.Markdown("Name features with an LLM from their top and quantile examples (active tokens marked "
                "`<<like this>>`) and top logits. Each label is then **scored by detection**: the LLM sees the "
                "label and a shuffled mix of held-out activating and non-activating snippets and says which "
                "fire; then **by fuzzing**: it sees held-out snippets, half highlighted on the right tokens and "
                "half on others, and says which are right. Each accuracy is shown next to its chance level. Manual "
                "labels are never overwritten.")
    status = gr.Markdown(elem_id="labeling-status")
    with gr.Accordion("Provider", open=True):
        (preset, base_url, model, api_key, price_in, price_out, timeout, json_mode, test_btn, test_msg, models,
         local_note) = _provider_block(h)
    with gr.Accordion("Prompt template", open=False):
        system = gr.Textbox(label="System message", value=h.DEFAULT_SYSTEM, lines=3)
        template = gr.Textbox(label="User template ({index} {examples} {top_logits} {bottom_logits} {frequency} "
                                    "{max_activation})", value=h.DEFAULT_TEMPLATE, lines=12)
        with gr.Row():
            reset_btn = gr.Button("Reset to default")
            preview_index = gr.Number(label="Preview feature", value=0, precision=0, minimum=0)
            preview_btn = gr.Button("Preview prompt")
        preview = gr.Textbox(label="Prompt preview", lines=10, interactive=False)
    with gr.Row():
        sae_items = choices(ctx.store.list("saes"))
        sae = gr.Dropdown(label="SAE (with extracted features)", choices=sae_items, value=pick(sae_items, None),
                          scale=3)
        selection = gr.Radio(list(h.SELECTIONS), value="All live features", label="Which features", scale=2)
        indices = gr.Textbox(label="List (with 'Only the features listed')", placeholder="3, 17, 40-45", scale=1)
    with gr.Row():
        only_unlabeled = gr.Checkbox(label="Only unlabeled", value=True)
        score = gr.Checkbox(label="Score labels (detection)", value=True)
        fuzz = gr.Checkbox(label="Also fuzzing (are the right tokens highlighted?)", value=True)
        concurrency = gr.Slider(1, 32, value=4, step=1, label="Requests in flight")
        n_top = gr.Slider(1, 40, value=10, step=1, label="Top examples shown")
    with gr.Row():
        start_btn = gr.Button("Start labeling", variant="primary")
        cancel_btn = gr.Button("Cancel", variant="stop")
        resume_btn = gr.Button("Resume")
        start_msg = gr.Markdown(elem_id="labeling-start-status")  # Start/Cancel/Resume answers, beside them
        job_id = gr.Textbox(label="Job", interactive=False)
    job_md = gr.Markdown(elem_id="labeling-job")
    with gr.Row():
        labels_btn = gr.Button("Show labels")
        refresh_btn = gr.Button("Refresh SAEs and job")
    labels = gr.Dataframe(table([], h.LABEL_COLUMNS), label="Labels", interactive=False, max_height=400)
    with gr.Row():
        card_index = gr.Number(label="Feature", value=0, precision=0, minimum=0, scale=1)
        card_btn = gr.Button("Score card", scale=1)
    card = gr.HTML(elem_id="labeling-score-card")

    preset.input(h.apply_preset, [preset], [base_url, model], api_name="labeling_preset").then(
        h.preset_changed, [preset], [test_msg, models], api_name="labeling_preset_changed", api_visibility="private",
        show_progress="hidden")
    test_btn.click(bind(h.test_connection, ctx), [base_url, model, api_key, timeout], [test_msg, models],
                   api_name="labeling_test_connection")
    reset_btn.click(h.reset_template, None, [system, template], api_name="labeling_reset_template")
    preview_btn.click(bind(h.preview_prompt, ctx), [sae, preview_index, n_top, system, template], [status, preview],
                      api_name="labeling_preview_prompt")
    start_btn.click(bind(h.start_job, ctx), [sae, base_url, model, api_key, price_in, price_out, timeout, json_mode,
                                             selection, indices, only_unlabeled, score, concurrency, n_top, system,
                                             template, fuzz], [start_msg, job_id], api_name="labeling_start").then(
        bind(h.watch_job, ctx), [job_id], [job_md], api_name="labeling_watch_job").then(
        bind(h.labels_after_job, ctx), [sae, job_id], [status, labels], api_name="labeling_labels_after_job")
    cancel_btn.click(bind(h.cancel_job, ctx), [job_id], [start_msg, job_md], api_name="labeling_cancel")
    resume_btn.click(bind(h.resume_job, ctx), [job_id, api_key], [start_msg, job_md], api_name="labeling_resume").then(
        bind(h.watch_job, ctx), [job_id], [job_md], api_name="labeling_watch_resumed")
    labels_btn.click(bind(h.labels_table, ctx), [sae], [status, labels], api_name="labeling_labels")
    sae.input(bind(h.labels_table, ctx), [sae], [status, labels], api_name="labeling_select_sae")
    refresh_btn.click(bind(h.refresh, ctx), [sae, job_id], [sae, job_id, job_md], api_name="labeling_refresh_now")
    card_btn.click(bind(h.score_card, ctx), [sae, card_index], [status, card], api_name="labeling_score_card")
    on_show(ctx, bind(h.refresh, ctx), [sae, job_id], [sae, job_id, job_md], api_name="labeling_refresh")
    on_show(ctx, bind(h.local_models_note, ctx), None, [local_note], api_name="labeling_local_models")
