"""Circuits: attribution graphs over SAE features at several residual-stream layers (issue 28).

- `frozen.py`: the model with attention patterns and norm scales frozen for gradients.
- `attribute.py`: one forward pass, total-effect gradients per site, edge vectors (gradient × activation).
- `graph.py`: candidates → pruned graph (JSON), `trace(...)` the in-memory core.
- `service.py`: the library door (SAE ids, prompt, target) with its input checks, labels, saved graphs.
- `intervene.py`: ablate / scale nodes and re-run; `groups.py`: pinned feature groups; `exchange.py`: the
  circuit-tracer / Neuronpedia graph JSON; `job.py`: the `circuit` job kind.
See docs/CIRCUITS.md.
"""
