"""From an attribution pass to a pruned graph (plain JSON, the format `docs/CIRCUITS.md` documents).

Pruning keeps the fewest nodes whose |effect| adds up to `node_share` of all nodes' |effect| (at most `max_nodes`),
computes the edges between kept nodes of consecutive sites, then keeps the fewest edges whose |weight| adds up to
`edge_share` of the kept edges' total. Node ids: `F{site}.{feature}@{pos}` (feature), `R{site}@{pos}` (SAE error),
`E@{pos}` (token embedding), `T` (the target).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from ..platform.errors import ValidationError
from .attribute import Attribution, edge_vectors, upstream_weights

FORMAT = "mistudio-circuit"
VERSION = 1


@dataclass
class GraphSettings:
    node_share: float = 0.8
    """Keep the fewest nodes whose |effect| adds up to this share of all nodes' |effect| (0 < share ≤ 1)."""
    edge_share: float = 0.95
    """Then keep the fewest edges whose |weight| adds up to this share of the kept edges' total (0 < share ≤ 1)."""
    max_nodes: int = 80
    """At most this many nodes (besides the target); each kept node costs one backward pass for its edges."""
    start_features: bool = False
    """Keep feature nodes at position 0 (BOS). Off: that position's residual is one error node (circuit-tracer's
    convention), since the attention sink's features otherwise dominate every graph."""

    def __post_init__(self):
        for name in ("node_share", "edge_share"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not 0 < v <= 1:
                raise ValidationError(f"{name} must be in (0, 1], got {v!r}; e.g. 0.8 keeps 80% of the effect.")
        if not isinstance(self.max_nodes, int) or not 1 <= self.max_nodes <= 2000:
            raise ValidationError(f"max_nodes must be an integer in 1..2000, got {self.max_nodes!r}.")
        if not isinstance(self.start_features, bool):
            raise ValidationError(f"start_features must be true or false, got {self.start_features!r}.")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> "GraphSettings":
        d = dict(d or {})
        unknown = sorted(set(d) - {"node_share", "edge_share", "max_nodes", "start_features"})
        if unknown:
            raise ValidationError(f"Unknown graph setting(s) {', '.join(unknown)}; use node_share, edge_share, "
                                  "max_nodes, start_features.")
        return cls(**d)


def node_id(kind: str, site: int, pos: int, feature: int = -1) -> str:
    if kind == "feature":
        return f"F{site}.{feature}@{pos}"
    if kind == "error":
        return f"R{site}@{pos}"
    return f"E@{pos}"


def candidates(att: Attribution) -> list[dict]:
    """Every node of the unpruned graph: active features, error nodes, token embeddings."""
    out = []
    emb = att.embedding_effects()
    for p in range(emb.shape[0]):
        out.append(dict(kind="embedding", site=0, pos=p, feature=-1, activation=None, effect=float(emb[p])))
    for s in range(1, len(att.states)):
        st = att.states[s]
        eff = att.feature_effects(s)
        pos, feat = torch.nonzero(st.codes, as_tuple=True)
        for p, f in zip(pos.tolist(), feat.tolist()):
            out.append(dict(kind="feature", site=s, pos=p, feature=f, activation=float(st.codes[p, f]),
                            effect=float(eff[p, f])))
        err_eff, err_norm = att.error_effects(s), st.err.norm(dim=-1)
        for p in range(err_eff.shape[0]):
            out.append(dict(kind="error", site=s, pos=p, feature=-1, activation=float(err_norm[p]),
                            effect=float(err_eff[p])))
    for n in out:
        n["id"] = node_id(n["kind"], n["site"], n["pos"], n["feature"])
    return out


def _cumulative(values: list[float], share: float, limit: int | None = None) -> list[int]:
    """Indices of the largest |values| whose sum first reaches `share` of the total (at most `limit`)."""
    order = sorted(range(len(values)), key=lambda i: -abs(values[i]))
    total = sum(abs(v) for v in values) or 1.0
    kept, acc = [], 0.0
    for i in order:
        if acc >= share * total or (limit is not None and len(kept) >= limit):
            break
        kept.append(i)
        acc += abs(values[i])
    return kept


def _edges(att: Attribution, kept: list[dict]) -> list[dict]:
    by_site: dict[int, list[dict]] = {}
    for n in kept:
        by_site.setdefault(n["site"], []).append(n)
    n_sites = len(att.states) - 1
    edges = [dict(source=n["id"], target="T", weight=n["effect"]) for n in by_site.get(n_sites, [])]
    for s in range(n_sites, 0, -1):
        targets, sources = by_site.get(s, []), by_site.get(s - 1, [])
        if not targets or not sources:
            continue
        vec = edge_vectors(att, s, [(n["kind"], n["pos"], n["feature"]) for n in targets])
        w = upstream_weights(att, s, vec, [(n["kind"], n["pos"], n["feature"]) for n in sources])
        for i, t in enumerate(targets):
            for j, u in enumerate(sources):
                if w[i, j] != 0:
                    edges.append(dict(source=u["id"], target=t["id"], weight=float(w[i, j])))
    return edges


def build(att: Attribution, settings: GraphSettings, progress=None) -> dict:
    """Nodes, edges and totals of the pruned graph (without prompt/target metadata: `service.py` adds it)."""
    nodes = candidates(att)
    kept_idx = _cumulative([n["effect"] for n in nodes], settings.node_share, settings.max_nodes)
    kept = [nodes[i] for i in kept_idx]
    if progress:
        progress(0.5, f"{len(kept)} of {len(nodes)} nodes kept; computing their edges")
    edges = _edges(att, kept)
    keep_e = _cumulative([e["weight"] for e in edges], settings.edge_share)
    edges = [edges[i] for i in sorted(keep_e)]
    linked = {e["source"] for e in edges} | {e["target"] for e in edges}
    kept = [n for n in kept if n["id"] in linked]
    total = sum(abs(n["effect"]) for n in nodes) or 1.0
    return dict(nodes=kept, edges=edges, stats=dict(
        candidates=len(nodes), kept_nodes=len(kept), kept_edges=len(edges),
        kept_effect_share=sum(abs(n["effect"]) for n in kept) / total,
        bias_effects=att.bias_effects, target_value=att.value))


def feature_nodes(graph: dict) -> list[dict]:
    """The graph's feature nodes, largest |effect| first."""
    return sorted((n for n in graph["nodes"] if n["kind"] == "feature"), key=lambda n: -abs(n["effect"]))


def node_map(graph: dict) -> dict[str, dict]:
    return {n["id"]: n for n in graph["nodes"]}


def logit_target(token_id: int, minus_id: int | None = None):
    """The target function of `attribute.run`: one logit, or the difference of two."""
    def target(logits: torch.Tensor) -> torch.Tensor:
        return logits[token_id] - (logits[minus_id] if minus_id is not None else 0)
    return target


def trace(model, sites, input_ids, token_id: int, minus_id: int | None = None,
          settings: GraphSettings | None = None, progress=None) -> dict:
    """Attribute logit `token_id` (minus `minus_id`) at the last position of `input_ids` and prune: the
    in-memory core of a graph (no store involved; `service.build_graph` is the library-level door)."""
    from .attribute import run

    settings = settings or GraphSettings()
    att = run(model, sites, input_ids, logit_target(token_id, minus_id), zero_start=not settings.start_features)
    return build(att, settings, progress)
