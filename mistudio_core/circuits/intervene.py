"""Interventions on graph nodes: scale (0 = ablate) features, error nodes or token embeddings and re-run the model.

A feature is changed in feature space, as steering's suppression does: at its site the codes are recomputed from the
(possibly already changed) residual, the chosen codes multiplied by `scale`, and only the decoder's difference is
added back, so the SAE's error is not injected. An error node is scaled in place (h += (scale − 1)·err at its
position), a token embedding likewise. Several nodes at several sites change together in one forward pass.
The graph's prediction of the change is linear: (scale − 1) · Σ effect of the chosen nodes.
"""
from __future__ import annotations

import contextlib
import re

import torch

from ..model import hooks
from ..platform.errors import ValidationError
from ..platform.store import shown
from .attribute import Site
from .graph import logit_target

_ID = re.compile(r"^(?:F(\d+)\.(\d+)@(\d+)|R(\d+)@(\d+)|E@(\d+))$")


def parse_node(node_id: str) -> dict:
    """`F2.17@5` → {kind: feature, site: 2, feature: 17, pos: 5}; also `R2@5` (error) and `E@5` (token)."""
    m = _ID.match(str(node_id).strip())
    if not m:
        raise ValidationError(f"{shown(node_id)} is not a node id. Use F<site>.<feature>@<pos> (a feature), "
                              "R<site>@<pos> (an error node) or E@<pos> (a token), as the graph lists them.")
    if m.group(1):
        return dict(id=m.group(0), kind="feature", site=int(m.group(1)), feature=int(m.group(2)), pos=int(m.group(3)))
    if m.group(4):
        return dict(id=m.group(0), kind="error", site=int(m.group(4)), feature=-1, pos=int(m.group(5)))
    return dict(id=m.group(0), kind="embedding", site=0, feature=-1, pos=int(m.group(6)))


def _check(nodes: list[dict], n_sites: int, n_pos: int) -> None:
    for n in nodes:
        if not 0 <= n["site"] <= n_sites or not 0 <= n["pos"] < n_pos:
            raise ValidationError(f"Node {n.get('id', n)} is outside this graph ({n_sites} site(s), {n_pos} "
                                  "positions). Pick nodes from the graph.")


def _site_fn(site: Site, nodes: list[dict], scale: float):
    feats = [(n["pos"], n["feature"]) for n in nodes if n["kind"] == "feature"]
    errs = [n["pos"] for n in nodes if n["kind"] == "error"]

    def fn(h):
        x = h[0]
        codes = site.sae.encode(x)
        recon = site.sae.decode(codes).to(x.dtype)
        out = x.clone()
        if feats:
            new = codes.clone()
            for p, f in feats:
                new[p, f] = new[p, f] * scale
            out = out + (site.sae.decode(new).to(x.dtype) - recon)
        for p in errs:
            out[p] = out[p] + (scale - 1.0) * (x[p] - recon[p])
        return out.unsqueeze(0)
    return fn


def _embed_fn(positions: list[int], scale: float):
    def fn(h):
        out = h.clone()
        out[:, positions] = out[:, positions] * scale
        return out
    return fn


@torch.no_grad()
def run_with(model, sites: list[Site], input_ids: torch.Tensor, nodes: list[dict], scale: float, target) -> float:
    """The target after scaling `nodes` by `scale` (the model in its normal, unfrozen form)."""
    net = hooks.unwrap(model)
    ids = input_ids.reshape(1, -1).to(net.device)
    _check(nodes, len(sites), ids.shape[1])
    with contextlib.ExitStack() as stack:
        emb = [n["pos"] for n in nodes if n["kind"] == "embedding"]
        if emb:
            stack.enter_context(hooks.intervene(net, "blocks.0.hook_resid_pre", _embed_fn(emb, scale)))
        for s, site in enumerate(sites, start=1):
            mine = [n for n in nodes if n["site"] == s]
            if mine:
                stack.enter_context(hooks.intervene(net, site.hook, _site_fn(site, mine, scale)))
        logits = net(input_ids=ids, use_cache=False).logits[0, -1].float()
    return float(target(logits))


def intervention(model, sites: list[Site], input_ids: torch.Tensor, graph: dict, node_ids: list[str],
                 scale: float = 0.0) -> dict:
    """Target before and after scaling `node_ids`, beside the graph's linear prediction of the change."""
    if not node_ids:
        raise ValidationError("No node chosen; pick one or more nodes of the graph to ablate or scale.")
    if not isinstance(scale, (int, float)) or not -100 <= scale <= 100:
        raise ValidationError(f"Scale must be a number in -100..100 (0 ablates, 1 leaves as is), got {scale!r}.")
    nodes = [parse_node(i) for i in dict.fromkeys(node_ids)]
    t = graph["target"]
    target = logit_target(t["token_id"], t.get("minus_id"))
    before = run_with(model, sites, input_ids, [], 1.0, target)
    after = run_with(model, sites, input_ids, nodes, float(scale), target)
    effects = {n["id"]: n["effect"] for n in graph.get("nodes", [])}
    known = [effects[n["id"]] for n in nodes if n["id"] in effects]
    predicted = (float(scale) - 1.0) * sum(known) if len(known) == len(nodes) else None
    return dict(nodes=[n["id"] for n in nodes], scale=float(scale), before=before, after=after,
                change=after - before, predicted_change=predicted)


def intervene_graph(store, graph: dict, node_ids: list[str], scale: float = 0.0, device=None) -> dict:
    """`intervention` for a saved graph: its SAEs, prompt and target."""
    from .service import load_sites

    loaded, sites, _ = load_sites(store, [s["sae_id"] for s in graph["sites"]], device)
    if [s.hook for s in sites] != [s["hook"] for s in graph["sites"]]:
        raise ValidationError("This graph's SAEs no longer match the library (a hook changed); rebuild the graph.")
    return intervention(loaded.model, sites, torch.tensor(graph["token_ids"]), graph, node_ids, scale)
