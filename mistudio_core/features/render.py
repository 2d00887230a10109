"""HTML and plotly views of feature results (no gradio: usable from a notebook as well as from the page).

Token highlighting: every token's background is orange with opacity 0.12 + 0.88 · act / scale for act > 0
(scale = the feature's max activation, so intensities compare across examples; the floor keeps weak but
non-zero activations visible), none at 0; the peak token is outlined; hovering shows the value.
"""
from __future__ import annotations

import html
import math

import plotly.graph_objects as go

_CSS = ("font-family:ui-monospace,monospace;font-size:0.85em;line-height:1.9;white-space:pre-wrap;"
        "word-break:break-word;margin:2px 0 8px 0")


def _tok(text: str) -> str:
    return html.escape(text).replace("\n", "↵") or "&nbsp;"


def example_html(ex: dict, scale: float) -> str:
    spans = []
    for j, (t, a) in enumerate(zip(ex["tokens"], ex["acts"])):
        alpha = 0.12 + 0.88 * max(0.0, min(1.0, a / scale)) if a > 0 and scale > 0 else 0.0
        border = "outline:2px solid #c2410c;" if j == ex["peak"] else ""
        spans.append(f'<span class="tok" style="background:rgba(249,115,22,{alpha:.2f});{border}border-radius:2px;'
                     f'color:#111" title="{html.escape(repr(t))}: {a:.3f}" data-act="{a:.4g}">{_tok(t)}</span>')
    return f'<div style="{_CSS}"><b>{ex["value"]:.3g}</b> · ctx {ex["context_id"]} │ {"".join(spans)}</div>'


def examples_html(examples: list[dict], scale: float, title: str = "") -> str:
    head = f"<h4>{html.escape(title)}</h4>" if title else ""
    body = "".join(example_html(e, scale) for e in examples) or "<p>No examples.</p>"
    return head + body


def quantiles_html(groups: list[dict], scale: float) -> str:
    return "".join(examples_html(g["examples"], scale, f"Activation quantile {g['quantile']} (random contexts "
                                 "outside the top examples)") for g in groups) or "<p>No quantile examples.</p>"


def prompt_html(result: dict, labels: dict | None = None) -> str:
    """The prompt with each token shaded by its strongest feature; hover lists the top features."""
    peak = max((f[0]["act"] for f in result["features"] if f), default=0.0)
    spans = []
    for j, (t, feats) in enumerate(zip(result["tokens"], result["features"])):
        a = feats[0]["act"] if feats else 0.0
        tip = "; ".join(f"#{f['index']} {(labels or {}).get(f['index'], '')} {f['act']:.2f}".replace("  ", " ")
                        for f in feats) or "no feature fires"
        alpha = a / peak if peak > 0 else 0.0
        spans.append(f'<span style="background:rgba(59,130,246,{alpha:.2f});border-radius:2px;color:#111" '
                     f'title="{html.escape(tip)}">{_tok(t)}</span>')
    return f'<div style="{_CSS}">{"".join(spans)}</div>'


def feature_histogram(hist: dict, index: int) -> go.Figure:
    """The feature's activation histogram on its log-spaced bins (x on a log axis)."""
    edges, counts = hist.get("edges") or [], hist.get("counts") or []
    mids = [math.sqrt(a * b) for a, b in zip(edges[:-1], edges[1:])]
    fig = go.Figure(go.Bar(x=mids, y=counts, width=[b - a for a, b in zip(edges[:-1], edges[1:])],
                           marker_line_width=0, marker_color="#f97316"))
    fig.update_layout(title=f"Feature {index}: activations where it fires", xaxis_title="activation",
                      yaxis_title="tokens", xaxis_type="log", height=300, bargap=0.02, template="plotly_white",
                      margin=dict(l=50, r=20, t=45, b=45))
    return fig


def frequency_histogram(freqs: list[float], dense_threshold: float, n_tokens: int) -> go.Figure:
    """Dataset-wide histogram of log10 firing frequency; dead features (never fired) are a separate bar and
    the dense threshold a vertical line."""
    floor = math.log10(1.0 / max(n_tokens, 1))
    logs = [math.log10(f) for f in freqs if f > 0]
    n_dead = sum(1 for f in freqs if f == 0)
    fig = go.Figure(go.Histogram(x=logs, nbinsx=60, name="alive", marker_color="#3b82f6"))
    if n_dead:
        fig.add_bar(x=[floor - 0.5], y=[n_dead], width=0.4, name=f"dead ({n_dead})", marker_color="#9ca3af")
    fig.add_vline(x=math.log10(dense_threshold), line_dash="dash", line_color="#dc2626",
                  annotation_text=f"dense > {dense_threshold:g}")
    fig.update_layout(title="Feature density: how often each feature fires", xaxis_title="log10(fraction of tokens)",
                      yaxis_title="features", yaxis_type="log", height=300, template="plotly_white",
                      margin=dict(l=50, r=20, t=45, b=45), barmode="overlay")
    return fig


def logit_histogram(hist: dict, index: int) -> go.Figure:
    """How the feature's decoder direction moves *every* vocabulary logit (the top/bottom lists are its tails)."""
    edges, counts = hist.get("edges") or [], hist.get("counts") or []
    mids = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:])]
    fig = go.Figure(go.Bar(x=mids, y=counts, width=[b - a for a, b in zip(edges[:-1], edges[1:])],
                           marker_line_width=0, marker_color="#8b5cf6"))
    fig.update_layout(title=f"Feature {index}: effect on every output logit", xaxis_title="logit change per unit "
                      "activation (W_dec[f]·W_U)", yaxis_title="vocabulary tokens", yaxis_type="log", height=300,
                      bargap=0.02, template="plotly_white", margin=dict(l=50, r=20, t=45, b=45))
    return fig


_TD = ' style="padding:2px 10px;text-align:left;white-space:nowrap"'


def score_card_html(entry: dict | None) -> str:
    """A label's score card: each scorer's accuracy beside its chance level, as bars."""
    if not entry:
        return "<p>No label yet.</p>"
    rows = []
    for name, score in (("detection", entry.get("score")), ("fuzzing", entry.get("fuzzing"))):
        if not score:
            rows.append(f"<tr><td{_TD}>{name}</td><td{_TD} colspan=4>not scored</td></tr>")
            continue
        acc, chance = float(score.get("accuracy") or 0), float(score.get("chance") or 0)
        bar = (f'<div style="position:relative;width:160px;height:12px;background:#e5e7eb;border-radius:3px">'
               f'<div style="width:{acc * 100:.0f}%;height:12px;background:#22c55e;border-radius:3px"></div>'
               f'<div style="position:absolute;left:{chance * 100:.0f}%;top:-2px;width:2px;height:16px;'
               f'background:#111" title="chance {chance:.0%}"></div></div>')
        rows.append(f"<tr><td{_TD}>{name}</td><td{_TD}>{acc:.0%}</td><td{_TD}>{chance:.0%}</td><td{_TD}>{bar}</td>"
                    f"<td{_TD}>balanced {float(score.get('balanced_accuracy') or 0):.0%} · n {score.get('n', 0)}"
                    + (f" · AUC {score['auc']:.2f}" if score.get("auc") is not None else "") + "</td></tr>")
    head = (f"<b>{html.escape(entry.get('label', ''))}</b> <small>({html.escape(entry.get('source', ''))}"
            f"{', ' + html.escape(str(entry.get('model'))) if entry.get('model') else ''})</small>")
    desc = f"<div>{html.escape(entry.get('description') or '')}</div>" if entry.get("description") else ""
    heads = "".join(f"<th{_TD}>{h}</th>" for h in ("scorer", "accuracy", "chance", "accuracy vs chance (|)", ""))
    return (f'<div class="score-card" style="font-size:0.9em">{head}{desc}<table style="width:auto;'
            f'border-collapse:collapse;margin-top:4px"><tr>{heads}</tr>{"".join(rows)}</table></div>')
