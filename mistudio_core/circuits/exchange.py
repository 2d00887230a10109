"""Graphs in the JSON that circuit-tracer writes and Neuronpedia's graph viewer reads, both ways.

That format (circuit-tracer `frontend/graph_models.py`, schema_version 1): top level `metadata` (slug, scan,
transcoder_list, prompt_tokens, prompt, node_threshold, schema_version), `qParams` (pinnedIds, supernodes, linkType,
clickedId, sg_pos), `nodes` and `links` ({source, target, weight}). A node has node_id, feature, layer (a string),
ctx_idx, feature_type, jsNodeId, clerp, influence, activation, token_prob, is_target_logit. Ids:
feature `{layer}_{index}_{pos}`, error `{layer}_-1_{pos}`, token `E_{token_id}_{pos}`, logit
`{n_layers + 1}_{token_id}_{pos}`.

Mapping of ours (docs/CIRCUITS.md): a feature of the SAE at `blocks.L.hook_resid_*` is layer L with
feature_type "cross layer transcoder" (the viewer's only feature type; ours are residual SAE latents), an error node
"mlp reconstruction error", `influence` carries our effect (gradient × activation, in logit units), `clerp` the
label. `metadata.mistudio` keeps what the format has no field for (sites, target, settings), so our own exports
import back losslessly; a graph from elsewhere imports for viewing only (no SAEs to intervene with).
"""
from __future__ import annotations

import re

from ..platform.errors import ValidationError
from .graph import FORMAT, VERSION

MAX_NODES = 100_000
MAX_LINKS = 2_000_000


def _cantor(x: int, y: int) -> int:
    return (x + y) * (x + y + 1) // 2 + y


def to_neuronpedia(graph: dict, slug: str | None = None, n_layers: int | None = None) -> dict:
    """Our graph → circuit-tracer / Neuronpedia graph JSON."""
    layers = [s["layer"] for s in graph["sites"]]
    top = (n_layers or (max(layers) + 1 if layers else 1)) + 1
    t = graph["target"]
    last = len(graph["token_ids"]) - 1
    logit_id = f"{top}_{t['token_id']}_{last}"
    ids, nodes = {"T": logit_id}, []
    for n in graph["nodes"]:
        pos = n["pos"]
        if n["kind"] == "feature":
            layer = layers[n["site"] - 1]
            nid, js = f"{layer}_{n['feature']}_{pos}", f"{layer}_{n['feature']}-0"
            extra = dict(feature=_cantor(layer, n["feature"]), layer=str(layer), feature_type="cross layer transcoder",
                         clerp=n.get("label", ""), activation=n.get("activation"))
        elif n["kind"] == "error":
            layer = layers[n["site"] - 1]
            nid, js = f"{layer}_-1_{pos}", f"{layer}_-1-{pos}"
            extra = dict(feature=-1, layer=str(layer), feature_type="mlp reconstruction error", clerp="")
        else:
            tok = graph["token_ids"][pos]
            nid, js = f"E_{tok}_{pos}", f"E_{tok}-{pos}"
            extra = dict(feature=pos, layer="E", feature_type="embedding", clerp="")
        ids[n["id"]] = nid
        nodes.append(dict(node_id=nid, jsNodeId=js, ctx_idx=pos, influence=n["effect"], token_prob=0.0,
                          is_target_logit=False, run_idx=0, reverse_ctx_idx=0, **extra))
    minus = f' − "{t["minus"]}"' if t.get("minus_id") is not None else ""
    nodes.append(dict(node_id=logit_id, jsNodeId=f"L_{t['token_id']}-{last}", feature=t["token_id"], layer=str(top),
                      ctx_idx=last, feature_type="logit", token_prob=t.get("prob", 0.0), is_target_logit=True,
                      run_idx=0, reverse_ctx_idx=0, clerp=f'Output "{t["token"]}"{minus} (p={t.get("prob", 0):.3f})',
                      influence=None, activation=None))
    links = [dict(source=ids[e["source"]], target=ids[e["target"]], weight=e["weight"]) for e in graph["edges"]
             if e["source"] in ids and e["target"] in ids]
    keep = {k: graph.get(k) for k in ("sites", "target", "settings", "model_id", "token_ids", "stats", "id")}
    meta = dict(slug=slug or graph.get("id") or "mistudio-graph", scan=graph.get("model_id") or "",
                transcoder_list=[s["sae_id"] for s in graph["sites"]], prompt_tokens=graph["tokens"],
                prompt=graph["prompt"], node_threshold=graph.get("settings", {}).get("node_share"),
                schema_version=1, mistudio=dict(format=FORMAT, version=VERSION, **keep))
    return dict(metadata=meta, qParams=dict(pinnedIds=[], supernodes=[], linkType="both", clickedId="", sg_pos=""),
                nodes=nodes, links=links)


def _require(cond: bool, what: str) -> None:
    if not cond:
        raise ValidationError(f"Not a circuit-tracer / Neuronpedia graph: {what}. Export the graph JSON from "
                              "Neuronpedia's graph page or circuit-tracer's create_graph_files, then import it.")


def from_neuronpedia(data) -> dict:
    """circuit-tracer / Neuronpedia graph JSON → our graph (for viewing; interventions need our own metadata)."""
    _require(isinstance(data, dict), "the top level is not an object")
    nodes, links, meta = data.get("nodes"), data.get("links"), data.get("metadata") or {}
    _require(isinstance(nodes, list) and isinstance(links, list), "it has no `nodes` and `links` lists")
    _require(len(nodes) <= MAX_NODES and len(links) <= MAX_LINKS, f"more than {MAX_NODES:,} nodes or "
             f"{MAX_LINKS:,} links")
    _require(isinstance(meta, dict), "`metadata` is not an object")
    ours = meta.get("mistudio") if isinstance(meta.get("mistudio"), dict) else {}
    layer_names = sorted({str(n.get("layer")) for n in nodes if isinstance(n, dict)
                          and n.get("feature_type") not in ("embedding", "logit")}, key=_layer_key)
    site_of = {name: i + 1 for i, name in enumerate(layer_names)}
    ids, out = {}, []
    for n in nodes:
        _require(isinstance(n, dict) and isinstance(n.get("node_id"), str), "a node without a string node_id")
        kind = _kind(n)
        pos = int(n.get("ctx_idx") or 0)
        if kind == "logit":
            ids[n["node_id"]] = "T"
            continue
        site = 0 if kind == "embedding" else site_of[str(n.get("layer"))]
        feat = _feature_index(n) if kind == "feature" else -1
        nid = {"feature": f"F{site}.{feat}@{pos}", "error": f"R{site}@{pos}", "embedding": f"E@{pos}"}[kind]
        ids[n["node_id"]] = nid
        out.append(dict(id=nid, kind=kind, site=site, pos=pos, feature=feat, activation=n.get("activation"),
                        effect=float(n.get("influence") or 0.0), label=str(n.get("clerp") or "")))
    edges = []
    for e in links:
        _require(isinstance(e, dict) and "source" in e and "target" in e, "a link without source/target")
        if e["source"] in ids and e["target"] in ids:
            edges.append(dict(source=ids[e["source"]], target=ids[e["target"]], weight=float(e.get("weight") or 0)))
    tokens = [str(t) for t in meta.get("prompt_tokens") or []]
    logit = next((n for n in nodes if _kind(n) == "logit" and n.get("is_target_logit")), None) or \
        next((n for n in nodes if _kind(n) == "logit"), {})
    sites = ours.get("sites") or [dict(hook=f"layer {name}", sae_id="", layer=_layer_key(name)[1])
                                  for name in layer_names]
    target = ours.get("target") or dict(token_id=logit.get("feature"), token=logit.get("clerp", ""), minus_id=None)
    return dict(format=FORMAT, version=VERSION, source="imported", prompt=str(meta.get("prompt") or ""),
                tokens=tokens, token_ids=ours.get("token_ids") or [], model_id=ours.get("model_id") or
                meta.get("scan"), target=target, sites=sites, settings=ours.get("settings") or {},
                nodes=out, edges=edges, stats=dict(kept_nodes=len(out), kept_edges=len(edges)))


def _kind(n: dict) -> str:
    t = str(n.get("feature_type", ""))
    if t in ("embedding", "logit"):
        return t
    return "error" if "error" in t else "feature"


def _feature_index(n: dict) -> int:
    m = re.match(r"^[^_]+_(\d+)_\d+$", n["node_id"])
    return int(m.group(1)) if m else int(n.get("feature") or 0)


def _layer_key(name: str):
    return (0, int(name)) if str(name).lstrip("-").isdigit() else (1, str(name))
