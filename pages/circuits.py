"""Circuits tab: attribution graphs over SAEs at several layers of one model (mistudio_core/circuits).

Pick SAEs (one per residual layer, e.g. those of `train --preset circuits`), a prompt and a target (the model's
top token by default), build the graph (a `circuit` job in the runner), read it (plotly: layers × positions),
click a node (or pick it from the list) to see its feature card and open it in the Features tab, ablate or scale
nodes (target before/after beside the graph's predicted change), pin them into a feature group, export as
circuit-tracer / Neuronpedia JSON or import one.
"""
from __future__ import annotations

import functools
import json
import time
from pathlib import Path
from typing import Any

import gradio as gr

from mistudio_core.circuits import exchange, groups, service
from mistudio_core.circuits.intervene import intervene_graph
from mistudio_core.platform.errors import ValidationError
from mistudio_core.platform.store import new_id, write_json_atomic

from .circuits_plot import CLICK_JS, figure
from .common import choices, guarded, ok, on_show, require_writable
from .context import AppContext


def sae_choices(ctx: AppContext) -> Any:
    """SAEs on the residual stream (the ones a graph can use), as `id — model · hook`."""
    items = [(f"{m['id']} — {m.get('model_id')} · {m.get('hook_name')}", m["id"]) for m in ctx.store.list("saes")
             if str(m.get("hook_name", "")).split(".hook_")[-1] in ("resid_pre", "resid_post")]
    return gr.update(choices=items)


def graph_choices(ctx: AppContext, current: str | None = None) -> Any:
    items = [(f"{g['id']} — {g['prompt'][:40]!r} → {g['target']!r}", g["id"]) for g in service.list_graphs(ctx.store)]
    ids = [v for _, v in items]
    return gr.update(choices=items, value=current if current in ids else (ids[0] if ids else None))


def _node_choices(graph: dict | None) -> Any:
    if not graph:
        return gr.update(choices=[], value=[])
    nodes = sorted(graph["nodes"], key=lambda n: -abs(n["effect"]))
    tokens = graph.get("tokens") or []
    items = [(f"{n['id']} {n['effect']:+.3f} {tokens[n['pos']]!r} {n.get('label', '')[:40]}".strip(), n["id"])
             for n in nodes]
    return gr.update(choices=items, value=[])


def _summary(graph: dict) -> str:
    t, st = graph["target"], graph.get("stats", {})
    minus = f" − `{t['minus']!r}`" if t.get("minus") else ""
    value = f" = {st['target_value']:.3f}" if st.get("target_value") is not None else ""
    share = f", {st['kept_effect_share']:.0%} of the effect" if st.get("kept_effect_share") is not None else ""
    took = f" in {graph['seconds']} s" if graph.get("seconds") is not None else ""
    return (f"**{graph.get('id')}**: `{graph['prompt'][:120]!r}` → `{t['token']!r}`{minus}{value} · "
            f"{len(graph['nodes'])} nodes, {len(graph['edges'])} edges{share}{took}")


@guarded(5)
def show_graph(ctx: AppContext, graph_id: str | None) -> tuple[str, Any, Any, str, str]:
    """(status, figure, node choices, summary, the node box emptied: its node belonged to the previous graph)."""
    if not graph_id:
        return "", figure(None), _node_choices(None), "", ""
    graph = service.load_graph(ctx.store, graph_id)
    return ok(f"Graph `{graph_id}`."), figure(graph), _node_choices(graph), _summary(graph), ""


@guarded(2)
def start_build(ctx: AppContext, sae_ids: list[str] | None, prompt: str, target: str, minus: str,
                node_share: float, max_nodes: float) -> tuple[str, str | None]:
    """Queue a `circuit` job (checked first, so a bad SAE set or target is one message, not a failed job)."""
    require_writable(ctx)
    from mistudio_core.spec import build

    spec = build("circuit", store=ctx.store, sae_ids=list(sae_ids or []), prompt=prompt or "",
                 target=(target or "").strip() or None, minus=(minus or "").strip() or None,
                 settings=dict(node_share=float(node_share or 0.8), max_nodes=int(max_nodes or 80)))
    if ctx.jobs is None:
        raise ValidationError("The job runner is not running in this app; use the CLI: python -m mistudio_core "
                              "circuit build PROMPT --sae ID ...")
    job_id = ctx.jobs.submit("circuit", spec, name="circuit")
    return ok(f"Circuit job `{job_id}` queued."), job_id


def watch_build(ctx: AppContext, job_id: str | None, poll_s: float = 1.0):
    """Status lines until the job ends, then the new graph's id (the watcher only reads the registry)."""
    if not job_id or ctx.jobs is None:
        return
    while True:
        rec = ctx.jobs.get(job_id)
        if rec.get("kind") != "circuit":
            yield f"⚠ Job `{job_id}` is a {rec.get('kind')} job, not a circuit job; build a graph above.", gr.skip()
            return
        phase = (rec.get("progress") or {}).get("metrics", {}).get("phase") or ""
        if rec["status"] not in ("queued", "running"):
            break
        yield f"Job `{job_id}`: **{rec['status']}** {phase}", gr.skip()
        time.sleep(poll_s)
    if rec["status"] == "done":
        gid = rec["result"]["graph_id"]
        yield ok(f"Graph `{gid}` built ({rec['result']['seconds']} s)."), graph_choices(ctx, gid)
    else:
        yield f"⚠ Job `{job_id}` {rec['status']}: {rec.get('error') or ''}", gr.skip()


def _need_graph(ctx: AppContext, graph_id: str | None) -> dict:
    if not graph_id:
        raise ValidationError("No graph open. Build one above or pick a saved one.")
    return service.load_graph(ctx.store, graph_id)


def _need_nodes(nodes: list[str] | None) -> list[str]:
    if not nodes:
        raise ValidationError("No node chosen. Pick one or more nodes from the list under the graph.")
    return list(nodes)


def _feature_node(graph: dict, node_ids: list[str]) -> dict:
    """The first of `node_ids` that is a feature node of `graph`."""
    known = {n["id"]: n for n in graph["nodes"]}
    if not any(i in known for i in node_ids):
        raise ValidationError(f"Node {node_ids[0]!r} is not in this graph. Click a node in the graph or pick one from "
                              "the list under it.")
    node = next((known[i] for i in node_ids if i in known and known[i]["kind"] == "feature"), None)
    if node is None:
        raise ValidationError("Error and token nodes have no feature page; choose a feature node (F...).")
    return node


@guarded(3)
def open_feature(ctx: AppContext, graph_id: str | None, nodes: list[str] | str | None) -> tuple[str, str, str]:
    """The feature card (label, numbers, top examples from its SAE's extraction results) of the first chosen
    feature node, and that node's id (the node box, which "Open in the Features tab" follows)."""
    graph = _need_graph(ctx, graph_id)
    ids = [nodes] if isinstance(nodes, str) else nodes or []  # the node box (one id) or the list (several)
    node = _feature_node(graph, _need_nodes([i.strip() for i in ids if i and i.strip()]))
    sae_id = graph["sites"][node["site"] - 1].get("sae_id")
    head = f"### Feature {node['feature']} of `{sae_id}` ({graph['sites'][node['site'] - 1]['hook']})"
    from mistudio_core.features.results import FeatureResults

    try:
        info = FeatureResults.load(ctx.store, sae_id).feature(node["feature"])
    except Exception as e:  # no extraction yet: say how to get one, keep the rest of the page
        return ok(f"Feature {node['feature']}."), f"{head}\n\n{e}", node["id"]
    rows = [f"- {info['label'] or '(no label)'} · fires on {info['frequency']:.2%} of tokens · max "
            f"{info['max_activation']:.3g}"]
    for ex in info["top_examples"][:6]:
        toks = ex["tokens"]
        peak = ex["peak"]
        text = "".join(toks[:peak]) + f"**[{toks[peak]}]**" + "".join(toks[peak + 1:])
        rows.append(f"- `{ex['value']:.2f}` {text.replace(chr(10), ' ')}")
    return ok(f"Feature {node['feature']}."), head + "\n\n" + "\n".join(rows), node["id"]


@guarded(5)
def _goto_feature(ctx: AppContext, graph_id: str | None, node: str | None, nodes: list[str] | None) -> tuple:
    graph = _need_graph(ctx, graph_id)
    target = _feature_node(graph, [node] if (node or "").strip() else _need_nodes(nodes))
    sae_id = graph["sites"][target["site"] - 1].get("sae_id")
    saes = ctx.store.list("saes")
    if not sae_id or sae_id not in {m["id"] for m in saes}:
        raise ValidationError(f"This graph's SAE {sae_id or '(none)'} is not in the library (an imported graph is for "
                              "viewing), so its feature has no page here.")
    return (ok(f"Feature {target['feature']} of `{sae_id}` in the Features tab."), gr.Tabs(selected="features"),
            gr.update(choices=choices(saes), value=sae_id), target["feature"], True)


def goto_feature(ctx: AppContext, graph_id: str | None, node: str | None, nodes: list[str] | None) -> tuple:
    """(status, the Features tab selected, its SAE dropdown, its feature index, whether to open it there): the
    node box's feature, else the first chosen one. On a refusal only the status changes and `went` is False."""
    out = _goto_feature(ctx, graph_id, node, nodes)
    return out if out[-1] is True else (*out[:-1], False)


@guarded(2)
def ablate(ctx: AppContext, graph_id: str | None, nodes: list[str] | None, scale: float) -> tuple[str, str]:
    graph = _need_graph(ctx, graph_id)
    res = intervene_graph(ctx.store, graph, _need_nodes(nodes), float(scale if scale is not None else 0.0))
    pred = "—" if res["predicted_change"] is None else f"{res['predicted_change']:+.3f}"
    table = ("| target before | after | change | graph's predicted change |\n|---|---|---|---|\n"
             f"| {res['before']:.3f} | {res['after']:.3f} | {res['change']:+.3f} | {pred} |")
    return ok(f"Scaled {len(res['nodes'])} node(s) by {res['scale']:g}."), table


@guarded(1)
def pin(ctx: AppContext, graph_id: str | None, nodes: list[str] | None, name: str) -> str:
    require_writable(ctx)
    grp = groups.pin(ctx.store, _need_graph(ctx, graph_id), _need_nodes(nodes), name)
    return ok(f"Group `{grp['name']}` has {len(grp['features'])} feature(s).")


@guarded(2)
def export(ctx: AppContext, graph_id: str | None) -> tuple[str, str | None]:
    graph = _need_graph(ctx, graph_id)
    out = ctx.store.home / "exports" / f"{graph['id']}.graph.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out, exchange.to_neuronpedia(graph))
    return ok("Exported as circuit-tracer / Neuronpedia graph JSON."), str(out)


@guarded(2)
def import_graph(ctx: AppContext, file: str | None) -> tuple[str, Any]:
    require_writable(ctx)
    if not file:
        raise ValidationError("No file chosen. Upload a graph JSON exported from Neuronpedia or circuit-tracer.")
    try:
        data = json.loads(Path(file).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValidationError(f"The file is not JSON ({e}). Upload a graph JSON file.") from e
    graph = exchange.from_neuronpedia(data)
    graph["id"] = new_id("imported")
    write_json_atomic(service.graphs_dir(ctx.store, create=True) / f"{graph['id']}.json", graph)
    return ok(f"Imported `{graph['id']}` ({len(graph['nodes'])} nodes) for viewing."), graph_choices(ctx, graph["id"])


def build(ctx: AppContext) -> None:
    bind = functools.partial
    gr.Markdown("Which features, at which layers, make the model say this token: gradient × activation through "
                "the model with attention patterns and norms frozen, SAE errors kept as nodes (docs/CIRCUITS.md).")
    status = gr.Markdown(elem_id="circuits-status")
    with gr.Row():
        saes = gr.Dropdown(label="SAEs (one per residual layer, same model)", multiselect=True, choices=[],
                           allow_custom_value=True, scale=3, elem_id="circuits-saes")
        prompt = gr.Textbox(label="Prompt", value="The capital of France is", scale=3)
    with gr.Row():
        target = gr.Textbox(label="Target token (empty: the model's top token; #id for an id)", scale=2)
        minus = gr.Textbox(label="Minus token (optional; 'runner-up')", scale=2)
        share = gr.Slider(0.05, 1.0, value=0.8, step=0.05, label="Keep nodes carrying this share", scale=2)
        max_nodes = gr.Number(label="Max nodes", value=80, precision=0, minimum=1, maximum=2000, scale=1)
        build_btn = gr.Button("Build graph", variant="primary", scale=1)
    job_id = gr.State(None)
    with gr.Row():
        graph_dd = gr.Dropdown(label="Graph", choices=[], allow_custom_value=True, scale=4, elem_id="circuits-graph")
        refresh = gr.Button("Refresh", scale=1)
    summary = gr.Markdown(elem_id="circuits-summary")
    plot = gr.Plot(label="Attribution graph", elem_id="circuits-plot")
    link, tabs = ctx.shared.get("features_link"), ctx.shared.get("tabs")
    with gr.Row():
        node_box = gr.Textbox(label="Node (click one in the graph, or type its id and press Enter)", scale=3,
                              elem_id="circuits-node")
        goto_btn = gr.Button("Open in the Features tab", scale=1, visible=bool(link and tabs))
    nodes = gr.Dropdown(label="Nodes (largest effect first)", multiselect=True, choices=[], elem_id="circuits-nodes")
    with gr.Row():
        open_btn = gr.Button("Open feature", scale=1)
        scale = gr.Number(label="Scale (0 ablates)", value=0.0, scale=1)
        ablate_btn = gr.Button("Ablate / scale and re-run", scale=1)
        group = gr.Textbox(label="Feature group", value="circuit", scale=1)
        pin_btn = gr.Button("Pin to group", scale=1)
    result = gr.Markdown(elem_id="circuits-result")
    feature_md = gr.Markdown(elem_id="circuits-feature")
    with gr.Accordion("Exchange (circuit-tracer / Neuronpedia graph JSON)", open=False):
        with gr.Row():
            export_btn = gr.Button("Export graph")
            export_file = gr.File(label="Exported graph", interactive=False)
            import_file = gr.File(label="Import a graph JSON", file_types=[".json"], type="filepath")
    on_show(ctx, lambda: (sae_choices(ctx), graph_choices(ctx)), [], [saes, graph_dd], api_name="circuits_lists")
    refresh.click(lambda g: (sae_choices(ctx), graph_choices(ctx, g)), [graph_dd], [saes, graph_dd],
                  api_name="circuits_refresh")
    build_btn.click(bind(start_build, ctx), [saes, prompt, target, minus, share, max_nodes], [status, job_id],
                    api_name="circuits_build").then(bind(watch_build, ctx), [job_id], [status, graph_dd],
                                                    api_name="circuits_watch")
    graph_dd.change(bind(show_graph, ctx), [graph_dd], [status, plot, nodes, summary, node_box],
                    api_name="circuits_show")
    open_btn.click(bind(open_feature, ctx), [graph_dd, nodes], [status, feature_md, node_box],
                   api_name="circuits_feature")
    node_box.submit(bind(open_feature, ctx), [graph_dd, node_box], [status, feature_md, node_box],
                    api_name="circuits_node")
    if "demo" in ctx.shared:  # the plot's clicks → the node box (circuits_plot.CLICK_JS)
        ctx.shared["demo"].load(None, None, None, js=CLICK_JS)
    if link and tabs:
        went = gr.State(False)
        goto_btn.click(bind(goto_feature, ctx), [graph_dd, node_box, nodes], [status, tabs, link["sae"],
                       link["index"], went], api_name="circuits_goto_feature").then(
            lambda go, sae: link["overview"](sae) if go else tuple(gr.skip() for _ in link["overview_outputs"]),
            [went, link["sae"]], link["overview_outputs"], api_name="circuits_features_overview",
            api_visibility="undocumented").then(
            lambda go, *args: link["open"](*args) if go else tuple(gr.skip() for _ in link["outputs"]),
            [went, *link["inputs"]], link["outputs"], api_name="circuits_open_in_features",
            api_visibility="undocumented")
    ablate_btn.click(bind(ablate, ctx), [graph_dd, nodes, scale], [status, result], api_name="circuits_ablate")
    pin_btn.click(bind(pin, ctx), [graph_dd, nodes, group], [status], api_name="circuits_pin")
    export_btn.click(bind(export, ctx), [graph_dd], [status, export_file], api_name="circuits_export")
    import_file.upload(bind(import_graph, ctx), [import_file], [status, graph_dd], api_name="circuits_import")
