"""Training tab: a form for a new training (presets, user templates, validation with time/memory estimates),
a table of all training jobs, and a live card for one job (status, ETA, warnings, metric charts) streamed from
the job registry by an async generator, so a page reload or a second viewer re-attaches to the same job.

Nothing here trains: Start queues a "train" job that the background runner executes.
"""
from __future__ import annotations

import asyncio
import functools
import json
import math
import tempfile
from typing import Any, AsyncIterator

import gradio as gr

from mistudio_core.platform.errors import MistudioError, ValidationError
from mistudio_core.sae.evals import headline_lines
from mistudio_core.sae.plan import training_warnings
from mistudio_core.sae.presets import BUILTIN_HOOK, PRESETS
from mistudio_core.sae.train_config import TrainConfig
from mistudio_core.sae.train_spec import TRAIN_FIELDS, resolve
from mistudio_core.spec import build as build_spec, estimate
from mistudio_core.sae.templates import import_template, list_templates, save_template

from mistudio_core.data.defaults import BUILTIN_MODEL_ID
from mistudio_core.model.hooks import with_transcoder_inputs

from .common import fmt_metric, guarded, ok, on_show, require_writable, scrub, table
from .context import AppContext
from .training_charts import compare_figure, metrics_figure
from .training_form import APPLIED, NO_PRESET, INPUTS, given_from_values, values_from_spec

ACTIVE = ("queued", "running")
JOB_COLUMNS = {"id": "job", "status": "status", "progress": "progress", "eta": "ETA", "queue": "queue",
               "loss": "loss", "l0": "L0 (train batch)", "explained_variance": "EV (train batch)",
               "dead_fraction": "dead (train batch)"}
POLL_S = 1.0
MAX_POINTS = 500


def form_spec(ctx: AppContext, dataset: str, model: str, hooks, name: str | None, values: list) -> dict:
    """The "train" spec the form describes, built by the one front door the CLI and the API use."""
    preset, given = given_from_values(list(values))
    given.update(dataset_id=dataset or None, model_id=model or None, hook_names=list(hooks or []) or None,
                 name=(name or "").strip() or None)
    return build_spec("train", preset=preset, store=ctx.store, **given)


def _estimate_text(plan) -> str:
    return plan.summary() + "".join(f"\n\n⚠ {a}" for a in plan.advice)


@guarded(1)
def check(ctx: AppContext, dataset: str, model: str, hooks: list[str], *values) -> str:
    spec = form_spec(ctx, dataset, model, hooks, None, values)
    return ok("Ready to train: " + _estimate_text(estimate("train", spec, ctx.store)))


@guarded(2)
def start(ctx: AppContext, dataset: str, model: str, hooks: list[str], name: str, *values) -> tuple[str, Any]:
    require_writable(ctx)
    spec = form_spec(ctx, dataset, model, hooks, name, values)
    plan = estimate("train", spec, ctx.store)  # the same call Validate made: the same numbers
    job_id = ctx.jobs.submit("train", spec, name=spec["name"])
    ctx.jobs.update(job_id, estimate={"seconds": round(plan.seconds, 1), "summary": plan.summary()})
    return ok(f"Queued `{job_id}`. {plan.summary()}"), gr.update(choices=_job_ids(ctx), value=job_id)


def eval_choices(ctx: AppContext, model: str | None, dataset: str | None) -> Any:
    return gr.update(choices=[d["id"] for d in ctx.store.list("datasets")
                              if model in (d.get("tokenizations") or []) and d["id"] != dataset])


def _job_ids(ctx: AppContext) -> list[str]:
    return [r["id"] for r in ctx.jobs.list("train")] if ctx.jobs else []


def _eta(r: dict) -> str:
    eta = (r.get("progress") or {}).get("eta_s")
    return "" if eta is None or r["status"] != "running" else f"{eta / 60:.1f} min" if eta > 90 else f"{eta:.0f} s"


def jobs_table(ctx: AppContext) -> Any:
    rows = []
    for r in reversed(ctx.jobs.list("train") if ctx.jobs else []):
        p, m = r.get("progress") or {}, r.get("metrics") or {}
        frac = p.get("fraction")
        rows.append({"id": r["id"], "status": r["status"] + (" (stale)" if r.get("stale") else ""),
                     "progress": "" if frac is None else f"{frac:.0%}", "eta": _eta(r),
                     "queue": r.get("queue_position") or "",
                     **{k: fmt_metric(m.get(k)) for k in ("loss", "l0", "explained_variance", "dead_fraction")}})
    return table(rows, JOB_COLUMNS)


def card(ctx: AppContext, job_id: str | None) -> tuple[str, Any]:
    """Markdown status (progress, ETA, warnings, error, resulting SAEs) and the metric charts of one job."""
    if not job_id or not ctx.jobs:
        return "No training selected. Start one above, or pick a job.", metrics_figure([], "none")
    r = ctx.jobs.get(job_id)
    history = ctx.jobs.metrics_history(job_id, max_points=MAX_POINTS)
    p = r.get("progress") or {}
    lines = [f"### {r['name']} · `{r['status']}`", _progress_line(r, p, history),
             f"**Now:** {r.get('message') or '—'}"]
    if r.get("estimate"):
        lines.append(f"Estimated at Start (as Validate said): {r['estimate']['summary']}")
    if r.get("queue_position"):
        lines.append(f"Waiting in the queue at position {r['queue_position']}.")
    train = r["spec"].get("train") or {}
    train = TrainConfig.flatten(train[0] if isinstance(train, list) else train)
    d_sae = train.get("d_sae")
    lines += [f"⚠ {w}" for w in training_warnings(history, d_sae)]
    if r.get("error"):
        lines.append(f"✗ {r['error']}")
    if (r.get("result") or {}).get("sae_ids"):
        lines.append("✓ In the SAE library: " + ", ".join(f"`{s}`" for s in r["result"]["sae_ids"]))
        lines += headline_lines(ctx.store, r["result"]["sae_ids"])  # held-out CE loss recovered, with its dataset
    return "\n\n".join(lines), metrics_figure(history, job_id, train.get("architecture"), train.get("k"))


def _progress_line(r: dict, p: dict, history: list[dict]) -> str:
    """'step s / n · epoch · ETA', or what the job does before its first step (loading, capturing)."""
    if not p.get("total"):
        return "preparing (before the first training step)" if r["status"] == "running" else "not started yet"
    return f"step {p.get('step', 0)} / {p['total']}{_epoch(history, p)} · ETA {_eta(r) or '—'}"


def _epoch(history: list[dict], progress: dict) -> str:
    """' · epoch e/E' from the latest row's `epoch` (passes over the data so far) and the planned steps."""
    last = history[-1] if history else {}
    done, step, total = last.get("epoch"), last.get("step"), progress.get("total")
    if not done or not step or not total:
        return ""
    planned = math.ceil(done * total / step - 1e-9)
    return f" · epoch {min(int(done) + 1, planned)}/{planned}"


async def watch(ctx: AppContext, job_id: str | None) -> AsyncIterator[tuple]:
    """Stream the table and the card until no training is queued or running (then one last update)."""
    while True:
        jobs = ctx.jobs.list("train") if ctx.jobs else []
        # Whether any job is active is read before the card: a job that ends between the two reads gets one more
        # pass, so the last card shown is always the final one (e.g. "cancelled").
        active = any(r["status"] in ACTIVE for r in jobs)
        if not job_id:  # a running job, else the most recent one (after a restart the last training is shown)
            running = [r["id"] for r in jobs if r["status"] in ACTIVE]
            job_id = running[-1] if running else (jobs[-1]["id"] if jobs else None)
        md, fig = card(ctx, job_id)
        yield jobs_table(ctx), md, fig, gr.update(choices=_job_ids(ctx), value=job_id)
        if not active:
            return
        await asyncio.sleep(POLL_S)


@guarded(1)
def act(ctx: AppContext, action: str, job_id: str | None) -> str:
    require_writable(ctx)
    if not job_id:
        raise ValidationError("No job selected.")
    if action == "delete":
        ctx.jobs.delete(job_id)
        return ok(f"Deleted job `{job_id}` (SAEs it added to the library stay).")
    record = getattr(ctx.jobs, action)(job_id)
    return ok(f"Job `{job_id}` is now {record['status']}.")


def compare(ctx: AppContext, job_ids: list[str], metric: str) -> Any:
    return compare_figure({j: ctx.jobs.metrics_history(j, max_points=MAX_POINTS) for j in job_ids or []}, metric)


def recipe_choices(ctx: AppContext) -> list:
    """The preset dropdown's choices: none (the form's fields alone), the presets, then saved templates."""
    return [NO_PRESET, *PRESETS, *list_templates(ctx.store)]


def _train_settings(ctx: AppContext, values: list) -> dict:
    """The whole TrainConfig the form describes (its preset or template, then the form's fields)."""
    preset, given = given_from_values(list(values))
    return resolve(preset, ctx.store, **{k: v for k, v in given.items() if k in TRAIN_FIELDS})["train"]


@guarded(2)
def template_save(ctx: AppContext, name: str, *values) -> tuple[str, Any]:
    require_writable(ctx)
    slug = save_template(ctx.store, name, _train_settings(ctx, values))
    return ok(f"Saved template `{slug}`."), gr.update(choices=recipe_choices(ctx), value=slug)


def template_apply(ctx: AppContext, name: str) -> list:
    """The APPLIED inputs' values for a preset (its whole partial spec) or a saved template (train settings
    only: the cache and job fields stay as they are)."""
    try:
        partial = resolve(name or None, ctx.store)
    except MistudioError as e:  # e.g. a template deleted in another tab: say so where the user looks
        raise gr.Error(scrub(str(e))) from e
    values = dict(zip(INPUTS, values_from_spec(partial)))
    keep = name in PRESETS or not name
    return [values[k] if keep or k in TRAIN_FIELDS else gr.skip() for k in APPLIED]


@guarded(2)
def template_export(ctx: AppContext, name: str, *values) -> tuple[str, str]:
    data = {"name": name or "template", "train": _train_settings(ctx, values)}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False, prefix="mistudio-template-") as f:
        json.dump(data, f, indent=2)
    return ok("Template exported."), f.name


@guarded(2)
def template_import(ctx: AppContext, file: str | None) -> tuple[str, Any]:
    require_writable(ctx)
    if not file:
        raise ValidationError("No file uploaded. Drop an exported template (.json) on the box.")
    with open(file, encoding="utf-8") as f:
        slug = import_template(ctx.store, f.read())
    return ok(f"Imported template `{slug}`."), gr.update(choices=recipe_choices(ctx), value=slug)


def choices(ctx: AppContext, dataset: str | None, model: str | None) -> tuple[Any, Any, Any, Any]:
    models = [m["id"] for m in ctx.store.list("models")]
    model = model if model in models else (models[0] if models else None)
    tokenized = [d["id"] for d in ctx.store.list("datasets") if model in (d.get("tokenizations") or [])]
    dataset = dataset if dataset in tokenized else (tokenized[0] if tokenized else None)
    return (gr.update(choices=tokenized, value=dataset), gr.update(choices=models, value=model), hooks_for(ctx, model),
            gr.update(choices=recipe_choices(ctx)))


def hooks_for(ctx: AppContext, model: str | None) -> Any:
    hooks = with_transcoder_inputs(ctx.store.manifest("models", model).get("hook_points", [])) if model else []
    default = [h for h in hooks if h.endswith(".hook_resid_post")]
    pick = default[len(default) // 4] if default else None  # an early-middle residual layer: a classic first SAE
    if model == BUILTIN_MODEL_ID and BUILTIN_HOOK in hooks:
        pick = BUILTIN_HOOK  # the tutorial's hook, the one the presets were tuned at
    return gr.update(choices=hooks, value=[pick] if pick else [])


def build(ctx: AppContext) -> None:
    from .training_layout import layout

    bind = functools.partial
    from .training_cache import build_cache_panel, refresh

    ui = layout(ctx)
    inputs = [ui[k] for k in INPUTS]  # the whole spec the form shows, in the API's argument order
    checked = ui["check_btn"].click(bind(check, ctx), [ui["dataset"], ui["model"], ui["hooks"], *inputs],
                                    ui["status"], api_name="training_validate")
    # Start cancels a Validate still running, so its late answer cannot overwrite "Queued".
    started = ui["start_btn"].click(bind(start, ctx), [ui["dataset"], ui["model"], ui["hooks"], ui["name"], *inputs],
                                    [ui["status"], ui["job"]], api_name="training_start", cancels=[checked])
    ui["eval_datasets"].focus(bind(eval_choices, ctx), [ui["model"], ui["dataset"]], ui["eval_datasets"],
                              api_name="training_eval_choices", api_visibility="undocumented")
    cache_ui = build_cache_panel(ctx)
    on_show(ctx, bind(refresh, ctx), [], [cache_ui["caches"], cache_ui["cache_key"]], api_name="training_caches_show",
            api_visibility="undocumented")
    outs = [ui["jobs"], ui["card"], ui["chart"], ui["job"]]
    started.then(bind(watch, ctx), [ui["job"]], outs, api_name="training_watch_started", concurrency_limit=None,
                 show_progress="hidden")
    ui["job"].input(bind(watch, ctx), [ui["job"]], outs, api_name="training_watch", concurrency_limit=None,
                    show_progress="hidden")
    for action in ("cancel", "resume", "delete"):
        ev = ui[f"{action}_btn"].click(bind(act, ctx, action), [ui["job"]], ui["status"], api_name=f"training_{action}")
        ev.then(bind(watch, ctx), [ui["job"]], outs, concurrency_limit=None, show_progress="hidden",
                api_visibility="undocumented", api_name=f"training_watch_after_{action}")
    ui["compare_btn"].click(bind(compare, ctx), [ui["compare_jobs"], ui["compare_metric"]], ui["compare_chart"],
                            api_name="training_compare")
    ui["model"].input(bind(hooks_for, ctx), [ui["model"]], ui["hooks"], api_name="training_hooks")
    ui["template"].input(bind(template_apply, ctx), [ui["template"]], [ui[k] for k in APPLIED],
                         api_name="training_template_apply")
    ui["save_tpl_btn"].click(bind(template_save, ctx), [ui["tpl_name"], *inputs], [ui["status"], ui["template"]],
                             api_name="training_template_save")
    ui["export_tpl_btn"].click(bind(template_export, ctx), [ui["tpl_name"], *inputs], [ui["status"], ui["tpl_file"]],
                               api_name="training_template_export")
    ui["import_tpl_btn"].click(bind(template_import, ctx), [ui["tpl_file"]], [ui["status"], ui["template"]],
                               api_name="training_template_import")
    on_show(ctx, bind(choices, ctx), [ui["dataset"], ui["model"]], [ui["dataset"], ui["model"], ui["hooks"],
                                                                   ui["template"]], api_name="training_choices")
    if "demo" in ctx.shared:  # re-attach to running jobs on every page load
        ctx.shared["demo"].load(bind(watch, ctx), [ui["job"]], outs, api_name="training_attach",
                                concurrency_limit=None, show_progress="hidden")
    ui["compare_jobs"].focus(lambda: gr.update(choices=_job_ids(ctx)), None, ui["compare_jobs"],
                             api_name="training_compare_choices", api_visibility="undocumented")
