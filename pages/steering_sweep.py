"""Steering tab, strength sweep part: the chart, the table and the suggested strength (UI formatting only).

The two activations are always labelled apart (see `mistudio_core/steering/score.py`): "activation in the steered
model (at the hook)" shows the intervention; "unsteered model reading the output" shows whether the text came to
carry the feature. The effect share (generated tokens among the feature's top tokens) is drawn against the
unsteered baseline's share, and the suggested strength is the largest whose perplexity stays ≤ 1.5× the baseline's.
"""
from __future__ import annotations

import html

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from mistudio_core.steering.score import CAPABILITY_LABEL, READ_LABEL, STEERED_LABEL
from mistudio_core.steering.sweep import MAX_PPL_RATIO



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


# One grid for the header and every row: fixed widths for the numbers, the rest for the output; headers wrap
# between words only (a narrow Dataframe column broke them letter by letter).
_GRID = "display:grid;grid-template-columns:6.5em 6em 8em 9em 9em minmax(12em,1fr);gap:0 .8em;align-items:baseline"
_HEAD = ("strength", "× max act", "effect", "output ppl (× base)", "capability ppl (× base)", "output (first prompt, "
         "first seed) — click a row for all")


def _ratio(x, base):
    if x is None:
        return "n/a"
    return f"{x:.1f}" + (f" ({x / base:.2g}×)" if base else "")


def _effect(r: dict, result: dict) -> str:
    if result.get("text_effect_name") and r.get("text_effect") is not None:
        return f"{r['text_effect']:.0%} {html.escape(result['text_effect_name'])}"
    if r.get("effect_share") is not None:
        exp = r.get("effect_expected")
        return f"{r['effect_share']:.3f}" + (f" · p {exp:.4f}" if exp is not None else "")
    return "–"


def _row_html(name: str, r: dict, result: dict, unit, base: dict, suggested) -> str:
    texts = r.get("texts") or [r.get("text", "")]
    mult = "" if not unit or not isinstance(name, (int, float)) else f"{name / unit:.2g}×"
    label = f"{name:g}" if isinstance(name, (int, float)) else name
    mark = " ◀ suggested" if suggested is not None and name == suggested else ""
    first = html.escape((texts[0] or "").replace("\n", " ⏎ "))
    summary = (f"<summary style='{_GRID};cursor:pointer'><b>{label}{mark}</b><span>{mult}</span>"
               f"<span>{_effect(r, result)}</span><span>{_ratio(r.get('perplexity'), base.get('perplexity'))}</span>"
               f"<span>{_ratio(r.get('capability_ppl'), base.get('capability_ppl'))}</span>"
               f"<span style='white-space:nowrap;overflow:hidden;text-overflow:ellipsis'>{first}</span></summary>")
    prompts = result.get("prompts") or [result.get("prompt", "")]
    body = "".join(f"<p style='margin:.3em 0 .3em 1em;white-space:pre-wrap'><i>{html.escape(p)}</i> → "
                   f"{html.escape(t or '')}</p>" for p, t in zip(prompts, texts))
    acts = ", ".join(f"feature {f}: {STEERED_LABEL} {_r(v)} · {READ_LABEL} {_r(r['feature_mean'].get(f))}"
                     for f, v in (r.get("steered_feature_mean") or {}).items())
    return f"<details style='border-top:1px solid #ddd;padding:.2em 0'>{summary}{body}<small>{acts}</small></details>"


def sweep_html(result: dict, unit: float | None = None) -> str:
    """The sweep as readable rows: strength (raw and × the feature's max activation `unit`), effect, output
    perplexity and capability cost (each × the unsteered baseline's), the output; a click expands a row to every
    prompt's full output and both activations."""
    base, best = result["baseline"], result.get("suggested_strength")
    head = "".join(f"<b style='word-break:normal;overflow-wrap:normal'>{h}</b>" for h in _HEAD)
    rows = [_row_html("baseline (unsteered)", base, result, unit, base, None)]
    rows += [_row_html(r["strength"], r, result, unit, base, best) for r in result["rows"]]
    return (f"<div id='steering-sweep-rows' style='font-size:.9em'><div style='{_GRID}'>{head}</div>"
            f"{''.join(rows)}<p><small>{CAPABILITY_LABEL}. Perplexities are the unsteered model's.</small></p></div>")


def suggestion_md(result: dict) -> str:
    """The suggested strength, why, and the unsteered baseline it is measured against."""
    base, f0 = result["baseline"], (result["features"] or [None])[0]
    s = result.get("suggested_strength")
    head = (f"**Suggested strength: {s:g}** — {result['suggestion']}." if s is not None
            else f"**No suggested strength** — {result['suggestion']}.")
    ppl = "n/a" if base.get("perplexity") is None else f"{base['perplexity']:.2f}"
    lines = [head, f"Unsteered baseline ({result['seeds']} seed(s)): perplexity {ppl}"]
    if result.get("text_effect_name") and base.get("text_effect") is not None:
        lines[-1] += f", {result['text_effect_name']} {base['text_effect']:.1%}"
    if result.get("effect_source") and f0 is not None:
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
