"""The attribution graph as a plotly figure: positions (tokens) across, sites (embeddings, each SAE's layer, the
target) up; a node's size is its |effect|, its colour the sign (blue raises the target, red lowers it); edges in
three widths by |weight|. Several features at one (site, position) are spread side by side."""
from __future__ import annotations

import plotly.graph_objects as go

POS, NEG = "#2563eb", "#dc2626"
SYMBOLS = {"feature": "circle", "error": "square", "embedding": "diamond"}


def _layout_xy(graph: dict) -> dict[str, tuple[float, float]]:
    slots: dict[tuple[int, int], list[dict]] = {}
    for n in graph["nodes"]:
        slots.setdefault((n["site"], n["pos"]), []).append(n)
    xy = {}
    for (site, pos), nodes in slots.items():
        nodes.sort(key=lambda n: -abs(n["effect"]))
        width = min(0.8, 0.12 * (len(nodes) - 1))
        for i, n in enumerate(nodes):
            off = 0.0 if len(nodes) == 1 else -width / 2 + width * i / (len(nodes) - 1)
            xy[n["id"]] = (pos + off, float(site))
    last = len(graph.get("tokens") or []) - 1
    xy["T"] = (max(last, 0), float(len(graph["sites"]) + 1))
    return xy


def _edge_traces(graph: dict, xy: dict) -> list[go.Scatter]:
    edges = [e for e in graph["edges"] if e["source"] in xy and e["target"] in xy]
    if not edges:
        return []
    top = max(abs(e["weight"]) for e in edges) or 1.0
    traces = []
    for sign, colour in ((1, POS), (-1, NEG)):
        for lo, hi, width in ((0.0, 0.1, 0.6), (0.1, 0.4, 1.6), (0.4, 1.01, 3.2)):
            xs, ys = [], []
            for e in edges:
                share = abs(e["weight"]) / top
                if (e["weight"] >= 0) == (sign > 0) and lo <= share < hi:
                    (x0, y0), (x1, y1) = xy[e["source"]], xy[e["target"]]
                    xs += [x0, x1, None]
                    ys += [y0, y1, None]
            if xs:
                traces.append(go.Scatter(x=xs, y=ys, mode="lines", hoverinfo="skip", showlegend=False,
                                         line=dict(color=colour, width=width), opacity=0.45))
    return traces


def _hover(graph: dict, n: dict) -> str:
    tokens = graph.get("tokens") or []
    tok = tokens[n["pos"]] if n["pos"] < len(tokens) else "?"
    act = f"<br>activation {n['activation']:.3g}" if isinstance(n.get("activation"), (int, float)) else ""
    label = f"<br>{n['label'][:80]}" if n.get("label") else ""
    return f"<b>{n['id']}</b> ({n['kind']}) at {tok!r}<br>effect {n['effect']:+.4g}{act}{label}"


def figure(graph: dict | None) -> go.Figure:
    fig = go.Figure()
    if not graph:
        fig.update_layout(height=320, annotations=[dict(text="Build or open a graph", showarrow=False)])
        return fig
    xy = _layout_xy(graph)
    for tr in _edge_traces(graph, xy):
        fig.add_trace(tr)
    top = max((abs(n["effect"]) for n in graph["nodes"]), default=1.0) or 1.0
    for kind, symbol in SYMBOLS.items():
        nodes = [n for n in graph["nodes"] if n["kind"] == kind]
        if not nodes:
            continue
        fig.add_trace(go.Scatter(
            x=[xy[n["id"]][0] for n in nodes], y=[xy[n["id"]][1] for n in nodes], mode="markers", name=kind,
            marker=dict(symbol=symbol, size=[8 + 22 * abs(n["effect"]) / top for n in nodes],
                        color=[POS if n["effect"] >= 0 else NEG for n in nodes], line=dict(width=1, color="#111")),
            text=[_hover(graph, n) for n in nodes], hoverinfo="text", customdata=[n["id"] for n in nodes]))
    t = graph["target"]
    tx, ty = xy["T"]
    name = repr(t.get("token")) + (f" − {t['minus']!r}" if t.get("minus") else "")
    fig.add_trace(go.Scatter(x=[tx], y=[ty], mode="markers+text", name="target", text=[name],
                             textposition="top center", marker=dict(symbol="star", size=18, color="#f59e0b")))
    sites = ["tokens"] + [f"L{s['layer']} ({s['hook'].split('hook_')[-1]})" for s in graph["sites"]] + ["target"]
    tokens = graph.get("tokens") or []
    fig.update_layout(
        height=max(360, 70 * len(sites)), margin=dict(l=10, r=10, t=30, b=10), uirevision=graph.get("id"),
        xaxis=dict(tickmode="array", tickvals=list(range(len(tokens))), ticktext=[repr(t)[1:-1] for t in tokens],
                   tickangle=-40),
        yaxis=dict(tickmode="array", tickvals=list(range(len(sites))), ticktext=sites),
        legend=dict(orientation="h", y=-0.15))
    return fig


# Gradio's Plot has no click event, but plotly's own `plotly_click` fires on the plot's div (Gradio draws it with
# Plotly.react into one div it keeps). This script, run once when the page loads, hooks that div whenever it appears
# and turns a click on a node (its `customdata` is the node id) into the node box's value and its submit (Enter).
CLICK_JS = """() => {
  const hook = () => {
    const plot = document.querySelector('#circuits-plot .js-plotly-plot');
    if (!plot || !plot.on || plot.__mistudioClick) return;
    plot.__mistudioClick = true;
    plot.on('plotly_click', (ev) => {
      const point = ev && ev.points && ev.points[0];
      const box = document.querySelector('#circuits-node textarea, #circuits-node input');
      if (!point || point.customdata == null || !box) return;
      Object.getOwnPropertyDescriptor(Object.getPrototypeOf(box), 'value').set.call(box, String(point.customdata));
      box.dispatchEvent(new Event('input', {bubbles: true}));
      box.dispatchEvent(new KeyboardEvent('keypress', {key: 'Enter', bubbles: true}));
    });
  };
  new MutationObserver(hook).observe(document.body, {childList: true, subtree: true});
  hook();
}"""
