"""The "circuit" job kind: build and save one attribution graph (`service.build_graph`) in the runner.

Spec (strict: unknown keys are refused, naming them): `sae_ids` (list), `prompt`, optional `target` / `minus`
(token text, `#id`, or for `minus` "runner-up"), `settings` (`GraphSettings` fields), `device`. Result: the graph's
id and size; the graph itself is `<home>/circuits/<id>.json`.
"""
from __future__ import annotations

import time

from ..platform.errors import ValidationError
from ..jobs.kinds import register_job
from .graph import GraphSettings

KEYS = {"sae_ids", "prompt", "target", "minus", "settings", "device"}


def validate(spec: dict, store=None) -> None:
    """Refuse a malformed spec before it is queued (the SAE/model checks run when the job loads them)."""
    if not isinstance(spec, dict):
        raise ValidationError("A circuit job spec is a JSON object with sae_ids and prompt.")
    unknown = sorted(set(spec) - KEYS)
    if unknown:
        raise ValidationError(f"Unknown circuit job field(s) {', '.join(unknown)}; known: {', '.join(sorted(KEYS))}.")
    ids = spec.get("sae_ids")
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) and i for i in ids):
        raise ValidationError("No SAE selected: a graph needs an SAE at one or more layers (sae_ids: [id, ...]).")
    if not isinstance(spec.get("prompt"), str) or not spec["prompt"].strip():
        raise ValidationError("The prompt is empty; type the text whose next token you want explained.")
    GraphSettings.from_dict(spec.get("settings"))


@register_job("circuit", validate=validate)
def run(spec: dict, ctx) -> dict:
    from .service import build_graph

    validate(spec)
    t0 = time.time()

    def progress(frac: float, msg: str) -> None:
        ctx.report(int(frac * 100), 100, phase=msg, elapsed_s=time.time() - t0)

    ctx.log(f"attribution graph over {len(spec['sae_ids'])} SAE(s) for {spec['prompt'][:80]!r}")
    graph = build_graph(ctx.store, spec["sae_ids"], spec["prompt"], spec.get("target"), spec.get("minus"),
                        spec.get("settings"), device=spec.get("device"), progress=progress)
    ctx.log(f"graph {graph['id']}: {len(graph['nodes'])} nodes, {len(graph['edges'])} edges, {graph['seconds']} s")
    return {"graph_id": graph["id"], "nodes": len(graph["nodes"]), "edges": len(graph["edges"]),
            "target": graph["target"]["token"], "seconds": graph["seconds"]}
