"""The SAEs tab's evaluation panel: "Evaluate on…" (SAE + dataset + split → an "evaluate" job, watched until it
ends, cancellable) and a table comparing every SAE evaluated on the same dataset and split.

Handlers are plain functions of `(ctx, ...)`; `build(ctx, sae)` lays the panel out under the library and wires it
to the tab's SAE dropdown. Nothing here evaluates: the background runner executes the job.
"""
from __future__ import annotations

import asyncio
import functools
from typing import Any, AsyncIterator

import gradio as gr

from mistudio_core.platform.errors import ValidationError
from mistudio_core.sae import evals

from .common import cancel_job, fmt_metric, guarded, ok, require_writable, table
from .context import AppContext

SPLIT_CHOICES = [("held-out slice", "heldout"), ("training contexts", "train")]
COMPARE_COLUMNS = {"sae_id": "SAE", "model_id": "model", "hook_name": "hook point", "architecture": "architecture",
                   "d_sae": "width", "n_contexts": "contexts", "explained_variance": "EV", "fvu": "FVU",
                   "normalized_mse": "NMSE", "l0": "L0", "dead_fraction": "dead", "ce_clean": "CE clean",
                   "ce_spliced": "CE spliced", "ce_zero_ablated": "CE zero-abl.", "ce_loss_recovered": "CE rec.",
                   "kl_divergence": "KL"}
ACTIVE = ("queued", "running")
POLL_S = 1.0


def datasets_for(ctx: AppContext, sae_id: str | None, current: str | None) -> Any:
    """Datasets tokenized for the SAE's model (the only ones it can be evaluated on)."""
    model = ctx.store.manifest("saes", sae_id).get("model_id") if sae_id and ctx.store.exists("saes", sae_id) \
        else None
    ids = [d["id"] for d in ctx.store.list("datasets") if model in (d.get("tokenizations") or [])]
    return gr.update(choices=ids, value=current if current in ids else (ids[0] if ids else None))


@guarded(2)
def start(ctx: AppContext, sae_id: str | None, dataset_id: str | None, split: str, n_contexts: float) -> tuple:
    """Queue an "evaluate" job (inputs are checked first: model, width, enough contexts)."""
    from mistudio_core.sae.eval_job import submit_eval

    require_writable(ctx)
    if not sae_id or not dataset_id:
        raise ValidationError("Pick an SAE and a dataset to evaluate it on.")
    spec = {"sae_id": sae_id, "dataset_id": dataset_id, "split": split or "heldout", "n_contexts": int(n_contexts)}
    job_id = submit_eval(ctx.jobs, spec)
    return ok(f"Queued evaluation `{job_id}`."), job_id


def job_status(ctx: AppContext, job_id: str | None) -> str:
    """One Markdown line: the evaluation's state, progress, and its headline numbers when done."""
    if not job_id:
        return ""
    r = ctx.jobs.get(job_id)
    s, p = r["spec"], r.get("progress") or {}
    where = f"`{s['sae_id']}` on {evals.source_label({'dataset_id': s['dataset_id'], 'split': s['split']})}"
    if r["status"] == "done":
        m = (r.get("result") or {}).get("metrics") or {}
        ce = f", CE loss recovered **{fmt_metric(m['ce_loss_recovered'])}**" if "ce_loss_recovered" in m else ""
        return ok(f"{where}: explained variance **{fmt_metric(m.get('explained_variance'))}**{ce}, L0 "
                  f"{fmt_metric(m.get('l0'))} ({r['result']['n_contexts']} contexts).")
    if r["status"] == "failed":
        return f"⚠ Evaluation of {where} failed: {r.get('error')}"
    step = f" — {p.get('step', 0)}/{p.get('total') or s['n_contexts']} contexts" if r["status"] == "running" else ""
    return f"Evaluation of {where}: **{r['status']}**{step}. {r.get('message') or ''}"


async def watch(ctx: AppContext, job_id: str | None, current: str | None) -> AsyncIterator[tuple]:
    """Follow one evaluation until it ends; yields (status, comparison choices) on each poll."""
    while True:
        active = bool(job_id) and ctx.jobs.get(job_id)["status"] in ACTIVE  # read first: the last yield is final
        yield job_status(ctx, job_id), compare_choices(ctx, current)
        if not active:
            return
        await asyncio.sleep(POLL_S)


@guarded(1)
def cancel(ctx: AppContext, job_id: str | None) -> str:
    return cancel_job(ctx, job_id, "evaluation")


def compare_choices(ctx: AppContext, current: str | None) -> Any:
    """Every (dataset, split) some SAE was evaluated on, labelled like the library columns."""
    items = [(evals.source_label({"dataset_id": d, "split": s}), evals.eval_key(d, s))
             for d, s in evals.evaluations(ctx.store)]
    keys = [k for _, k in items]
    return gr.update(choices=items, value=current if current in keys else (keys[0] if keys else None))


def compare(ctx: AppContext, key: str | None) -> Any:
    """SAEs side by side on one evaluation, best CE loss recovered (then EV) first."""
    if not key or "__" not in key:
        return table([], COMPARE_COLUMNS)
    dataset_id, split = key.rsplit("__", 1)
    rows = evals.comparison(ctx.store, dataset_id, split)
    rows.sort(key=lambda r: (-(r.get("ce_loss_recovered") or -1e9), -(r.get("explained_variance") or -1e9)))
    shown = [{k: fmt_metric(v) if isinstance(v, float) else v for k, v in r.items()} for r in rows]
    return table(shown, COMPARE_COLUMNS)


def build(ctx: AppContext, sae: gr.Dropdown) -> tuple[gr.Dropdown, Any]:
    """The panel, under the library; `sae` is the tab's SAE selection. Returns the comparison's dropdown (the tab
    refreshes it with the library) and the event that ends an evaluation (the tab refreshes the library then)."""
    bind = functools.partial
    with gr.Accordion("Evaluate on… (any SAE, any dataset tokenized for its model)", open=True):
        with gr.Row():
            dataset = gr.Dropdown(label="dataset", choices=[], allow_custom_value=True, scale=2)
            split = gr.Radio(SPLIT_CHOICES, value="heldout", label="split", scale=2)
            n = gr.Number(value=64, precision=0, minimum=1, label="contexts", scale=1)
        with gr.Row():
            go_btn = gr.Button("Evaluate", variant="primary", scale=1)
            cancel_btn = gr.Button("Cancel evaluation", scale=1)
            job = gr.Textbox(label="evaluation job", interactive=False, scale=2)
        status = gr.Markdown(elem_id="saes-eval-status")
    with gr.Accordion("Compare SAEs on the same evaluation", open=True):
        which = gr.Dropdown(label="evaluation (dataset, split)", choices=[], allow_custom_value=True)
        cmp_table = gr.Dataframe(table([], COMPARE_COLUMNS), label="SAEs on this evaluation", interactive=False,
                                 elem_id="saes-compare", max_height=320)

    started = go_btn.click(bind(start, ctx), [sae, dataset, split, n], [status, job], api_name="saes_eval_start")
    watched = started.then(bind(watch, ctx), [job, which], [status, which], api_name="saes_eval_watch",
                           concurrency_limit=None, show_progress="hidden")
    done = watched.then(bind(compare, ctx), [which], cmp_table, api_name="saes_compare_after_eval",
                        api_visibility="undocumented")
    cancel_btn.click(bind(cancel, ctx), [job], [status], api_name="saes_eval_cancel")
    sae.change(bind(datasets_for, ctx), [sae, dataset], dataset, api_name="saes_eval_datasets",
               show_progress="hidden")
    which.focus(bind(compare_choices, ctx), [which], which, api_name="saes_compare_choices",
                api_visibility="undocumented")
    which.change(bind(compare, ctx), [which], cmp_table, api_name="saes_compare", show_progress="hidden")
    return which, done
