"""Layout and event wiring of the Features tab; the handlers live in `pages/features.py`."""
from __future__ import annotations

import functools

import gradio as gr
import pandas as pd

from mistudio_core.features.extract import ExtractConfig
from mistudio_core.features.token_filters import FILTERS

from .common import on_show
from .context import AppContext

TABLE_COLUMNS = ["index", "label", "frequency", "mean_activation", "max_activation", "dead", "dense", "input_score",
                 "output_score", "writes"]


def _extract_panel():
    with gr.Accordion("Extract features", open=False):
        gr.Markdown("One pass over the dataset: per feature, the top examples, statistics, an activation "
                    "histogram and quantile examples. Runs as a background job; you can leave the page.")
        with gr.Row():
            n_tokens = gr.Number(label="Tokens", value=ExtractConfig().n_tokens, precision=0, minimum=1)
            top_k = gr.Number(label="Top examples per feature", value=ExtractConfig().top_k, precision=0, minimum=1,
                              maximum=1000)
            threshold = gr.Number(label="Firing threshold", value=0.0, minimum=0)
        filters = gr.CheckboxGroup(list(FILTERS), value=["special"], label="Token filters (never count as firing)")
        start = gr.Button("Start extraction", variant="primary")
        job_status = gr.Markdown(elem_id="features-job")
    return n_tokens, top_k, threshold, filters, start, job_status


def _table_panel(h):
    with gr.Row():
        label_q = gr.Textbox(label="Search labels (words; Enter)", placeholder="e.g. yelling, capital letters",
                             scale=2, elem_id="features-label-search")
        token_q = gr.Textbox(label="Fires on token", placeholder="e.g. ' Congress'", scale=2)
        sort = gr.Dropdown(list(h.SORTS), value="frequency", label="Sort by", scale=1)
        show = gr.Dropdown(list(h.SHOW), value="all", label="Show", scale=1)
    with gr.Row():
        min_out = gr.Number(label="Min output score (writes its tokens when added; 0 = any)", value=0, minimum=0,
                            maximum=1, scale=1, elem_id="features-min-output")
        min_in = gr.Number(label="Min input score (fires on the tokens it writes; 0 = any)", value=0, minimum=0,
                           maximum=1, scale=1, elem_id="features-min-input")
        page = gr.Number(label="Page", value=1, precision=0, minimum=1, scale=1)
        page_size = gr.Dropdown([25, 50, 100, 200], value=50, label="Rows per page", scale=1)
        page_info = gr.Markdown(scale=3, elem_id="features-page-info")
    table = gr.Dataframe(pd.DataFrame(columns=TABLE_COLUMNS), label="Features (click a row to open it)",
                         interactive=False, max_height=420, elem_id="features-table")
    return label_q, token_q, sort, show, page, page_size, page_info, table, min_out, min_in


def _feature_panel():
    with gr.Row():
        index = gr.Number(label="Feature", value=0, precision=0, minimum=0, scale=1)
        open_btn = gr.Button("Open feature", scale=1)
        skip_start = gr.Checkbox(label="Hide examples at a context's start (BOS, position 0, first token after "
                                       "BOS)", value=False, scale=2, elem_id="features-skip-start")
        label = gr.Textbox(label="Label", scale=3)
        save = gr.Button("Save label", scale=1)
    summary = gr.Markdown(elem_id="features-summary")
    score_card = gr.HTML(elem_id="features-score-card")
    with gr.Row():
        hist = gr.Plot(label="Activation histogram", scale=3)
        top_logits = gr.Dataframe(pd.DataFrame(columns=["token", "logit"]), label="Top logits (pushes up)",
                                  interactive=False, scale=1)
        bottom_logits = gr.Dataframe(pd.DataFrame(columns=["token", "logit"]), label="Bottom logits (pushes down)",
                                     interactive=False, scale=1)
    with gr.Row():
        logit_hist = gr.Plot(label="Logit effects over the vocabulary", scale=3, elem_id="features-logit-hist")
        neighbours = gr.Dataframe(pd.DataFrame(columns=["feature", "cosine", "label"]), interactive=False, scale=2,
                                  label="Nearest features (decoder cosine; click to open)",
                                  elem_id="features-neighbours")
    examples = gr.HTML(elem_id="features-examples")
    with gr.Accordion("Quantile examples", open=False):
        quantiles = gr.HTML()
    return (index, open_btn, skip_start, label, save, summary, hist, top_logits, bottom_logits, examples, quantiles,
            neighbours, logit_hist, score_card)


def layout(ctx: AppContext, h) -> None:
    """Lay the tab out and wire it to `h`, the page's handler module (passed in, so this module never imports
    its page back)."""
    bind = functools.partial
    status = gr.Markdown(elem_id="features-status")
    with gr.Row():
        sae = gr.Dropdown(label="SAE", choices=[], scale=2)
        dataset = gr.Dropdown(label="Dataset (tokenized for the SAE's model)", choices=[], scale=2)
        refresh_btn = gr.Button("Refresh", scale=1)
        load_btn = gr.Button("Load features", variant="primary", scale=1)
    n_tokens, top_k, threshold, filters, start, job_status = _extract_panel()
    job_id = gr.State(None)
    overview_md = gr.Markdown(elem_id="features-overview")
    freq_plot = gr.Plot(label="Feature density (log10 firing frequency of every feature)",
                        elem_id="features-density")
    label_q, token_q, sort, show, page, page_size, page_info, table, min_out, min_in = _table_panel(h)
    with gr.Row():
        export_fmt = gr.Radio(["CSV", "JSON"], value="CSV", label="Export format", scale=1)
        export_tbl = gr.Button("Export feature table", scale=1)
        export_one = gr.Button("Export this feature's examples", scale=1)
        export_msg = gr.Markdown(elem_id="features-export-status")
        export_file = gr.File(label="Download", scale=2, visible=False)  # shown once there is a file
    (index, open_btn, skip_start, label, save, summary, hist, top_logits, bottom_logits, examples, quantiles,
     neighbours, logit_hist, score_card) = _feature_panel()
    with gr.Accordion("Prompt: which features fire on my text?", open=False):
        prompt = gr.Textbox(label="Text", lines=2, placeholder="The Congress shall have power to lay and collect taxes")
        prompt_btn = gr.Button("Analyze")
        prompt_view = gr.HTML(elem_id="features-prompt")
        prompt_table = gr.Dataframe(label="Strongest features (click one to open it)", interactive=False)

    feature_out = [status, summary, examples, quantiles, hist, top_logits, bottom_logits, label, neighbours,
                   logit_hist, score_card]
    feature_in = [sae, index, skip_start]
    overview_out = [status, overview_md, freq_plot, table, page_info]
    table_in = [sae, label_q, token_q, sort, show, page, page_size, min_out, min_in]
    table_out = [status, table, page_info]
    refresh_btn.click(bind(h.refresh, ctx), [sae, dataset], [sae, dataset], api_name="features_refresh")
    sae.input(bind(h.refresh, ctx), [sae, dataset], [sae, dataset], api_name="features_select_sae").then(
        bind(h.overview, ctx), [sae], overview_out, api_name="features_load_on_select")
    load_btn.click(bind(h.overview, ctx), [sae], overview_out, api_name="features_load")
    start.click(bind(h.start_extraction, ctx), [sae, dataset, n_tokens, top_k, threshold, filters],
                [job_status, job_id], api_name="features_extract").then(
        bind(h.watch_job, ctx), [job_id], [job_status], api_name="features_watch_job").then(
        bind(h.overview, ctx), [sae], overview_out, api_name="features_load_after_job")
    gr.on([label_q.submit, token_q.submit, sort.input, show.input, page.submit, page_size.input, min_out.submit,
           min_in.submit],
          bind(h.feature_table, ctx), table_in, table_out, api_name="features_table")
    table.select(h._selected_index_table, [table], [index], api_name="features_table_select").then(
        bind(h.open_feature, ctx), feature_in, feature_out, api_name="features_open_selected")
    open_btn.click(bind(h.open_feature, ctx), feature_in, feature_out, api_name="features_open")
    index.submit(bind(h.open_feature, ctx), feature_in, feature_out, api_name="features_open_submit")
    save.click(bind(h.save_label, ctx), [sae, index, label], [status], api_name="features_save_label")
    export_tbl.click(bind(h.export_table, ctx), [sae, export_fmt], [export_msg, export_file],
                     api_name="features_export_table")
    export_one.click(bind(h.export_feature, ctx), [sae, index, export_fmt], [export_msg, export_file],
                     api_name="features_export_feature")
    prompt_btn.click(bind(h.analyze_prompt, ctx), [sae, prompt], [status, prompt_view, prompt_table],
                     api_name="features_prompt")
    prompt_table.select(h._selected_index_prompt, [prompt_table], [index], api_name="features_prompt_select").then(
        bind(h.open_feature, ctx), feature_in, feature_out, api_name="features_open_from_prompt")
    neighbours.select(h._selected_index_neighbour, [neighbours], [index], api_name="features_neighbour_select").then(
        bind(h.open_feature, ctx), feature_in, feature_out, api_name="features_open_neighbour")
    skip_start.input(bind(h.open_feature, ctx), feature_in, feature_out, api_name="features_skip_start")
    on_show(ctx, bind(h.refresh, ctx), [sae, dataset], [sae, dataset], api_name="features_list")
    sae.change(bind(h.latest_job, ctx), [sae], [job_status, job_id], api_name="features_latest_job").then(
        bind(h.watch_job, ctx), [job_id], [job_status], api_name="features_rewatch_job")
    # Another page opens a feature here (Circuits' "Open in the Features tab"): it sets `sae` (with its choices) and
    # `index`, selects this tab, then runs `open` on `inputs` → `outputs` and `overview` on `[sae]` → `overview_outputs`
    # (a programmatic value set fires no `sae.input`, so the table would still show the previous SAE).
    ctx.shared["features_link"] = dict(sae=sae, index=index, open=bind(h.open_feature, ctx), inputs=feature_in,
                                       outputs=feature_out, overview=bind(h.overview, ctx),
                                       overview_outputs=overview_out)
