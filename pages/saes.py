"""SAEs tab: the library of trained and imported SAEs with their headline metrics, a detail view (SAELens config
and training record as JSON) and delete. Import/export come later (interop).

Handlers are plain functions of `(ctx, ...)`; each returns a status Markdown first (see `common.guarded`).
"""
from __future__ import annotations

import functools
from typing import Any

import gradio as gr

from mistudio_core.platform.errors import ValidationError
from mistudio_core.sae import evals
from mistudio_core.platform.store import read_json

from .common import (artifact_dropdown, dropdown_update, fmt_count, fmt_metric, fmt_time, guarded, ok, on_show,
                     require_writable, table, then_quietly)
from .context import AppContext
from . import saes_bench, saes_eval

BASE_COLUMNS = {"id": "id", "model_id": "model", "hook_name": "hook point", "architecture": "architecture",
                "width": "width"}
TAIL_COLUMNS = {"dataset_id": "trained on", "source": "source", "created": "created"}
# Headline metrics get one column per source ("EV (sotu held-out)"): a number never loses where it comes from.
HEADLINE = (("explained_variance", "EV"), ("ce_loss_recovered", "CE rec."), ("l0", "L0"), ("dead_fraction", "dead"))
TRAIN_BATCH = (("explained_variance", "EV"),)
# Files in `saes/<id>/` shown in the detail view besides the manifest, in this order, when present.
RECORD_FILES = ("record.json", "training_record.json", "provenance.json", "metrics.json")


def _source(m: dict) -> str | None:
    """The label of the manifest's headline metrics, None when it has none."""
    if m.get("metrics_source"):
        return evals.source_label(m["metrics_source"])
    return evals.source_label(None) if m.get("metrics") else None


def columns(manifests: list[dict]) -> dict[str, str]:
    """Library columns for these SAEs: fixed ones, then headline metrics per source, then train-batch numbers."""
    labels = list(dict.fromkeys(s for s in map(_source, manifests) if s))
    cols = dict(BASE_COLUMNS)
    cols.update({f"{key}@{label}": f"{short} ({label})" for label in labels for key, short in HEADLINE})
    if any(m.get("train_batch_metrics") for m in manifests):
        cols.update({f"{key}@train batch": f"{short} (train batch)" for key, short in TRAIN_BATCH})
    return cols | TAIL_COLUMNS


def _row(m: dict) -> dict:
    k = f" (k={m['k']})" if m.get("k") else ""
    row = {**m, "architecture": f"{m.get('architecture', '?')}{k}", "width": fmt_count(m.get("d_sae")),
           "created": fmt_time(m.get("created"))}
    label = _source(m)
    row.update({f"{key}@{label}": fmt_metric((m.get("metrics") or {}).get(key)) for key, _ in HEADLINE})
    row.update({f"{key}@train batch": fmt_metric((m.get("train_batch_metrics") or {}).get(key))
                for key, _ in TRAIN_BATCH})
    return row


def library(ctx: AppContext) -> Any:
    saes = ctx.store.list("saes")
    return table([_row(m) for m in saes], columns(saes))


# Relative column widths (unlisted keys: metric columns, 1.0). Left to itself the table sizes columns by content and
# scrolls sideways: the metrics fell off the right edge and long job-derived ids pushed everything else out.
# Ids and model names break at their hyphens; a hook name has no break point, so its column holds
# "blocks.8.hook_resid_post" on one line.
WIDTH_WEIGHTS = {"id": 2.0, "model_id": 1.4, "hook_name": 3.1, "architecture": 1.6, "width": 0.9, "dataset_id": 0.9,
                 "source": 1.2, "created": 1.3}
# A smaller font in this one table: up to 17 columns (two metric sources) must share the page's width.
LIBRARY_CSS = ("<style>#saes-library th, #saes-library td, #saes-library th *, #saes-library td * "
               "{ font-size: 12px !important; }</style>")


def column_widths(cols: dict[str, str]) -> list[str]:
    """Percent widths for these columns (summing to 100%): the whole table fits the page, text wraps in its cell."""
    weights = [WIDTH_WEIGHTS.get(k, 1.0) for k in cols]
    return [f"{100 * w / sum(weights):.2f}%" for w in weights]


def library_update(ctx: AppContext) -> Any:
    """The library table as docs/API.md promises it (`{"headers", "data"}`)."""
    saes = ctx.store.list("saes")
    return table([_row(m) for m in saes], columns(saes))


def fit_columns(ctx: AppContext) -> Any:
    """Column widths for the table's current columns (their number depends on the metric sources). A separate,
    undocumented step after each refresh: a gr.update(column_widths=…) returned by `saes_list` itself would reach
    API callers as {"__type__": "update", …} instead of the documented table."""
    return gr.update(column_widths=column_widths(columns(ctx.store.list("saes"))))


EMPTY = "No SAEs yet: train one in the **Training** tab and it appears here."


def refresh(ctx: AppContext, sae_id: str | None) -> tuple[Any, Any, Any]:
    """Library table, SAE choices, and a hint in the detail area while the library is empty."""
    saes = ctx.store.list("saes")
    return library_update(ctx), dropdown_update(saes, sae_id), gr.skip() if saes else EMPTY


def show_selected(ctx: AppContext, sae_id: str | None) -> tuple:
    """Details of the current selection after a refresh (the status line is left alone)."""
    return (gr.skip(), *detail(ctx, sae_id)[1:]) if sae_id else (gr.skip(),) * 4


def _need(sae_id: str | None) -> None:
    if not sae_id:
        raise ValidationError("No SAE selected. Train one in the Training tab, then pick it here.")


def _json_file(folder, name: str) -> dict | None:
    path = folder / name
    return read_json(path) if path.is_file() else None


@guarded(4)
def detail(ctx: AppContext, sae_id: str | None) -> tuple[str, str, dict, dict]:
    """Headline, the SAELens `cfg.json`, and the training record (provenance, metrics, settings)."""
    _need(sae_id)
    manifest = ctx.store.manifest("saes", sae_id)
    folder = ctx.store.path("saes", sae_id)
    cfg = _json_file(folder, "cfg.json") or {}
    record: dict = {"manifest": manifest}
    for name in RECORD_FILES:
        data = _json_file(folder, name)
        if data is not None:
            record[name.removesuffix(".json")] = data
    stored = evals.list_evals(ctx.store, sae_id)
    if stored:  # every stored evaluation, with provenance and formulas
        record["evals"] = {evals.source_label(r): r for r in stored}
    row, metrics = _row(manifest), manifest.get("metrics") or {}
    numbers = ", ".join(f"{short} {fmt_metric(metrics[key])}" for key, short in HEADLINE if key in metrics)
    head = (f"### {manifest.get('name') or sae_id}\n"
            f"`{row.get('hook_name')}` of **{row.get('model_id')}** · {row['architecture']} · width "
            f"{row['width']} (d_in {manifest.get('d_in')}) · {manifest.get('source', '?')}, {row['created']}\n\n"
            + (f"{numbers} — on {_source(manifest)}" if numbers else "Not evaluated yet: use **Evaluate on…**."))
    return ok(f"Details of `{sae_id}`."), head, cfg, record


@guarded(3)
def delete(ctx: AppContext, sae_id: str | None) -> tuple[str, Any, Any]:
    """Remove the SAE with its feature results and labels."""
    require_writable(ctx)
    _need(sae_id)
    ctx.store.manifest("saes", sae_id)  # NotFoundError listing known ids
    ctx.store.delete("saes", sae_id)
    return ok(f"Deleted SAE `{sae_id}`."), library_update(ctx), dropdown_update(ctx.store.list("saes"), None)


def build(ctx: AppContext) -> None:
    bind = functools.partial
    gr.Markdown("Every SAE trained here or imported. Each number's column says where it was measured: "
                "\"sotu held-out\" = the held-out slice of that dataset's tokenization (never trained on), "
                "\"train batch\" = the last training batch. **EV** = 1 − Σ‖x−x̂‖² / Σ‖x−x̄‖²; **CE rec.** = "
                "(CE zero-ablated − CE spliced) / (CE zero-ablated − CE clean); **L0** = mean active latents per "
                "token; **dead** = latents that never fire on the evaluated tokens.")
    status = gr.Markdown(elem_id="saes-status")
    # wrap: long job-derived ids and "(sotu held-out)" headers break over lines instead of pushing columns off the
    # right edge (a sideways-scrolling table hid the metrics and cut ids off).
    gr.HTML("", head=LIBRARY_CSS, padding=False)  # a style for the document head; shows nothing itself
    lib = gr.Dataframe(table([], columns([])), label="SAE library", elem_id="saes-library", interactive=False,
                       max_height=480, wrap=True, column_widths=column_widths(columns([])))
    with gr.Row():
        sae = artifact_dropdown("SAE", scale=3)
        detail_btn = gr.Button("Show details", scale=1)
        delete_btn = gr.Button("Delete SAE", variant="stop", scale=1)
    head = gr.Markdown(elem_id="saes-detail")
    with gr.Row():
        cfg = gr.JSON(label="Config (cfg.json, SAELens format)")
        record = gr.JSON(label="Training record")

    detail_btn.click(bind(detail, ctx), [sae], [status, head, cfg, record], api_name="saes_detail")
    sae.input(bind(detail, ctx), [sae], [status, head, cfg, record], api_name="saes_detail_on_select",
              api_visibility="undocumented")
    deleted = delete_btn.click(bind(delete, ctx), [sae], [status, lib, sae], api_name="saes_delete")
    then_quietly(deleted, bind(fit_columns, ctx), [], [lib], "saes_fit_after_delete")
    which, evaluated = saes_eval.build(ctx, sae)
    after_eval = evaluated.then(bind(refresh, ctx), [sae], [lib, sae, head], api_name="saes_list_after_eval",
                                api_visibility="undocumented", show_progress="hidden")
    then_quietly(after_eval, bind(fit_columns, ctx), [], [lib], "saes_fit_after_eval")
    shown = on_show(ctx, bind(refresh, ctx), [sae], [lib, sae, head], api_name="saes_list")
    then_quietly(shown, bind(fit_columns, ctx), [], [lib], "saes_fit_after_list")
    then_quietly(shown, bind(show_selected, ctx), [sae], [status, head, cfg, record], "saes_detail_after_list")
    then_quietly(shown, bind(saes_eval.compare_choices, ctx), [which], [which], "saes_compare_choices_after_list")
    suites = saes_bench.build(ctx, sae)  # the Benchmark view: suite runs, Pareto plots, comparison table
    then_quietly(shown, bind(saes_bench.suite_choices, ctx), [suites], [suites], "saes_bench_choices_after_list")


if __name__ == "__main__":  # a quick look at this page alone
    from mistudio_core.platform.store import Store

    with gr.Blocks() as demo:
        build(AppContext(store=Store()))
    demo.launch()
