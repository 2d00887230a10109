"""Steering tab, strength sweep part: the chart, the table and the suggested strength (UI formatting only).

The two activations are always labelled apart (see `mistudio_core/steering/score.py`): "activation in the steered
model (at the hook)" shows the intervention; "unsteered model reading the output" shows whether the text came to
carry the feature. The effect share (generated tokens among the feature's top tokens) is drawn against the
unsteered baseline's share, and the suggested strength is the largest whose perplexity stays ≤ 1.5× the baseline's.
"""
from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from mistudio_core.steering.score import READ_LABEL, STEERED_LABEL
from mistudio_core.steering.sweep import MAX_PPL_RATIO

from .common import table


def _r(x, nd=3):
    return None if x is None else round(x, nd)


def sweep_figure(result: dict) -> go.Figure:
    """Top: both activations and perplexity (log, right axis) vs strength, the perplexity limit and the suggested
    strength marked. Bottom: the effect share, steered vs the unsteered baseline."""
    rows, f0, base = result["rows"], result["features"][0], result["baseline"]
    xs = [r["strength"] for r in rows]
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.65, 0.35], vertical_spacing=0.08,
                        specs=[[{"secondary_y": True}], [{}]])
    fig.add_trace(go.Scatter(x=xs, y=[r["steered_feature_mean"][f0] for r in rows], mode="lines+markers",
                             name=f"feature {f0}: {STEERED_LABEL}"), row=1, col=1, secondary_y=False)
    fig.add_trace(go.Scatter(x=xs, y=[r["feature_mean"][f0] for r in rows], mode="lines+markers",
                             name=f"feature {f0}: {READ_LABEL}"), row=1, col=1, secondary_y=False)
    fig.add_trace(go.Scatter(x=xs, y=[r["perplexity"] for r in rows], mode="lines+markers", line=dict(dash="dot"),
                             name="perplexity (unsteered model)"), row=1, col=1, secondary_y=True)
    if base.get("perplexity"):
        limit = MAX_PPL_RATIO * base["perplexity"]
        fig.add_trace(go.Scatter(x=[min(xs), max(xs)], y=[limit, limit], mode="lines", line=dict(dash="dash"),
                                 name=f"perplexity limit ({MAX_PPL_RATIO:g}× baseline)"), row=1, col=1,
                      secondary_y=True)
    if result.get("suggested_strength") is not None:
        fig.add_vline(x=result["suggested_strength"], line_dash="dash", line_color="green",
                      annotation_text="suggested", row=1, col=1)
    if result.get("effect_source"):
        fig.add_trace(go.Bar(x=xs, y=[r.get("effect_share") for r in rows], name="effect share (steered)"),
                      row=2, col=1)
        fig.add_trace(go.Scatter(x=[min(xs), max(xs)], y=[base.get("effect_share")] * 2, mode="lines",
                                 line=dict(dash="dash"), name="effect share (unsteered baseline)"), row=2, col=1)
        if base.get("effect_expected") is not None:
            fig.add_trace(go.Scatter(x=xs, y=[r.get("effect_expected") for r in rows], mode="lines+markers",
                                     name="expected share (model's probability, steered)"), row=2, col=1)
            fig.add_trace(go.Scatter(x=[min(xs), max(xs)], y=[base["effect_expected"]] * 2, mode="lines",
                                     line=dict(dash="dot"), name="expected share (unsteered baseline)"), row=2, col=1)
    fig.update_layout(height=520, margin=dict(l=50, r=50, t=120, b=40), template="plotly_white",
                      legend=dict(orientation="h", y=1.2))
    fig.update_xaxes(title_text="strength", row=2, col=1)
    fig.update_yaxes(title_text="feature activation", row=1, col=1, secondary_y=False)
    fig.update_yaxes(title_text="perplexity", type="log", row=1, col=1, secondary_y=True)
    fig.update_yaxes(title_text="share of tokens", row=2, col=1)
    return fig


SWEEP_COLUMNS = {"strength": "strength", "steered": STEERED_LABEL, "read": READ_LABEL, "ppl": "perplexity",
                 "effect": "effect share (feature's top tokens)",
                 "expected": "expected share (model's probability of them)", "text": "output (first seed)"}


def sweep_table(result: dict):
    """One row per strength: both activations (named), perplexity, effect share, the first seed's text."""
    f0 = result["features"][0]
    rows = [{"strength": r["strength"], "steered": _r(r["steered_feature_mean"][f0]),
             "read": _r(r["feature_mean"][f0]), "ppl": _r(r["perplexity"], 2), "effect": _r(r.get("effect_share")),
             "expected": _r(r.get("effect_expected"), 5), "text": r["text"]} for r in result["rows"]]
    return table(rows, SWEEP_COLUMNS)


def suggestion_md(result: dict) -> str:
    """The suggested strength, why, and the unsteered baseline it is measured against."""
    base, f0 = result["baseline"], result["features"][0]
    s = result.get("suggested_strength")
    head = (f"**Suggested strength: {s:g}** — {result['suggestion']}." if s is not None
            else f"**No suggested strength** — {result['suggestion']}.")
    ppl = "n/a" if base.get("perplexity") is None else f"{base['perplexity']:.2f}"
    lines = [head, f"Unsteered baseline ({result['seeds']} seed(s)): perplexity {ppl}"]
    if result.get("effect_source"):
        toks = ", ".join(repr(t) for t in (result["effect_token_list"] or {}).get(f0, [])[:10])
        share = base.get("effect_share")
        lines[-1] += f", effect share {'n/a' if share is None else f'{share:.3f}'}"
        if base.get("effect_expected") is not None:
            lines[-1] += f", expected share {base['effect_expected']:.5f}"
        lines.append(f"Effect share = share of generated tokens among feature {f0}'s top tokens, from "
                     f"*{result['effect_source']}*: {toks}. Expected share = the probability the model gave "
                     "those tokens at each generated position (the same share without the sampling noise).")
    return "  \n".join(lines)


def readings_md(state: dict) -> str:
    """A single run's two activations, named, with both perplexities."""
    if "steered_feature_mean" not in state:
        return ""

    def num(x):
        return "n/a" if x is None else f"{x:.3f}"

    out = []
    for f, v in state["steered_feature_mean"].items():
        out.append(f"feature {f}: {STEERED_LABEL} **{num(v)}** · {READ_LABEL}: steered output "
                   f"**{num(state['feature_mean'].get(f))}**, baseline output "
                   f"{num(state['baseline_feature_mean'].get(f))}")
    out.append(f"perplexity (unsteered model): steered {num(state['perplexity'])}, baseline "
               f"{num(state['baseline_perplexity'])}")
    return "  \n".join(out)
