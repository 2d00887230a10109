"""Plotly figures for training jobs: one job's live metrics and a comparison of several jobs on one metric.
`uirevision` is the job id, so a user's zoom survives the once-a-second updates."""
from __future__ import annotations

import math

import plotly.graph_objects as go
from plotly.subplots import make_subplots

METRICS = {"loss": "loss", "mse": "MSE", "l0": "L0", "explained_variance": "explained variance",
           "dead_fraction": "dead fraction"}
# The live chart's panels: (key, title, y-axis label). The second panel is what the loss adds to the MSE — AuxK for
# TopK, the L1 penalty for standard — since for TopK without dead latents "loss" and "MSE" are the same curve.
PANELS = [("mse", "reconstruction MSE", "Σ‖x−x̂‖² / token"), ("penalty", "loss − MSE", "AuxK or λ·L1"),
          ("l0", "L0", "active latents / token"), ("explained_variance", "EV (train batch)", "1 − FVU"),
          ("dead_fraction", "dead fraction", "share of latents")]


def _penalty(row: dict):
    loss, mse = row.get("loss"), row.get("mse")
    return None if loss is None or mse is None else max(loss - mse, 0.0)


def metrics_figure(history: list[dict], job_id: str, architecture: str | None = None, k: int | None = None
                   ) -> go.Figure:
    """Five panels by step (markers, so a single point shows). For TopK the L0 panel says L0 is fixed at k."""
    titles = [t for _, t, _ in PANELS]
    if architecture in ("topk", "batchtopk") and k:
        titles[2] = f"L0 (fixed at k={k})" if architecture == "topk" else f"L0 (batch average k={k})"
        titles[1] = "AuxK loss (dead latents)"
    elif architecture == "standard":
        titles[1] = "λ·L1 penalty"
    fig = make_subplots(rows=1, cols=len(PANELS), subplot_titles=titles, horizontal_spacing=0.06)
    steps = [r.get("step") for r in history]
    for col, (key, title, ylabel) in enumerate(PANELS, start=1):
        ys = [_penalty(r) if key == "penalty" else r.get(key) for r in history]
        fig.add_trace(go.Scatter(x=steps, y=ys, mode="lines+markers", marker=dict(size=4), name=title,
                                 showlegend=False), row=1, col=col)
        fig.update_xaxes(title_text="step", row=1, col=col)
        fig.update_yaxes(title_text=ylabel, row=1, col=col)
    fig.update_yaxes(type="log", row=1, col=1, **log_ticks([r.get("mse") for r in history]))
    fig.update_layout(height=300, margin=dict(l=50, r=10, t=40, b=40), template="plotly_white",
                      uirevision=job_id)
    return fig


def log_ticks(values: list) -> dict:
    """Tick values 1-2-5 × 10^n across the data: Plotly's own ticks on a log axis spanning about a decade are bare
    digits ("2 3 4 … 100 8 9") that read as garbage. {} (Plotly's default) when fewer than two fall inside."""
    pos = [v for v in values if isinstance(v, (int, float)) and v > 0 and math.isfinite(v)]
    if not pos:
        return {}
    lo, hi = min(pos), max(pos)
    mantissas = (1, 2, 5) if hi / lo < 1e3 else (1,)
    ticks = [m * 10.0 ** e for e in range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1)
             for m in mantissas]
    inside = [t for t in ticks if lo <= t <= hi]
    if len(inside) < 2:  # a narrow range: Plotly's own ticks are full numbers there
        return {}
    return {"tickvals": inside, "ticktext": [f"{t:g}" for t in inside]}


def compare_figure(histories: dict[str, list[dict]], metric: str) -> go.Figure:
    fig = go.Figure()
    for name, rows in histories.items():
        fig.add_trace(go.Scatter(x=[r.get("step") for r in rows], y=[r.get(metric) for r in rows],
                                 mode="lines+markers", marker=dict(size=4), name=name))
    fig.update_layout(title=f"{METRICS.get(metric, metric)} by step", xaxis_title="step",
                      yaxis_title=METRICS.get(metric, metric), height=320,
                      template="plotly_white", uirevision="compare", margin=dict(l=50, r=20, t=50, b=40))
    return fig
