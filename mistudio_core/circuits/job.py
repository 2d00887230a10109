"""The "circuit" job kind: build and save one attribution graph (`service.build_graph`) in the runner.

Its spec is `CircuitJobSpec`, built and checked by the one front door (`mistudio_core.spec.build("circuit", ...)`,
`spec.validate`), read strictly (an unknown key is refused naming the nearest valid one). Result: the graph's id
and size; the graph itself is `<home>/circuits/<id>.json`.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

from ..jobs.kinds import register_job
from ..platform.errors import ValidationError
from ..platform.records import from_dict, spec_checks
from .graph import GraphSettings


@dataclass
class CircuitJobSpec:
    sae_ids: list[str]
    """Library SAEs of one model, at one or more layers (the graph's sites)."""
    prompt: str
    """The text whose next token the graph explains."""
    target: str | None = None
    """The token whose logit is attributed (text or `#id`); None: the model's top prediction."""
    minus: str | None = None
    """A second token whose logit is subtracted (text, `#id` or "runner-up"); None: the target's logit alone."""
    settings: dict = field(default_factory=dict)
    """`GraphSettings` fields (node_share, edge_share, max_nodes, ...); missing ones keep their defaults."""
    device: str | None = None
    """Device; None: CUDA if available, else CPU."""

    def __post_init__(self):
        ids = self.sae_ids
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) and i for i in ids):
            raise ValidationError("No SAE selected: a graph needs an SAE at one or more layers (sae_ids: [id, ...]).")
        if not isinstance(self.prompt, str) or not self.prompt.strip():
            raise ValidationError("The prompt is empty; type the text whose next token you want explained.")
        GraphSettings.from_dict(self.settings or {})

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "CircuitJobSpec":
        if not isinstance(d, dict):
            raise ValidationError("A circuit job spec is a JSON object with sae_ids and prompt.")
        return from_dict(cls, d, "circuit job spec")


def _check_inputs(store, s: CircuitJobSpec) -> None:
    from .service import check_saes

    check_saes(store, s.sae_ids)


build, validate = spec_checks(CircuitJobSpec, _check_inputs)


@register_job("circuit", validate=validate)
def run(spec: dict, ctx) -> dict:
    from .service import build_graph

    validate(spec)  # fields only: the SAEs are checked when the graph loads them
    t0 = time.time()

    def progress(frac: float, msg: str) -> None:
        ctx.report(int(frac * 100), 100, phase=msg, elapsed_s=time.time() - t0)

    ctx.log(f"attribution graph over {len(spec['sae_ids'])} SAE(s) for {spec['prompt'][:80]!r}")
    graph = build_graph(ctx.store, spec["sae_ids"], spec["prompt"], spec.get("target"), spec.get("minus"),
                        spec.get("settings"), device=spec.get("device"), progress=progress)
    ctx.log(f"graph {graph['id']}: {len(graph['nodes'])} nodes, {len(graph['edges'])} edges, {graph['seconds']} s")
    return {"graph_id": graph["id"], "nodes": len(graph["nodes"]), "edges": len(graph["edges"]),
            "target": graph["target"]["token"], "seconds": graph["seconds"]}
