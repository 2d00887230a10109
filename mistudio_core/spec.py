"""One front door: every job is built, checked and estimated here, whichever door it came through — the
Training tab, the CLI, the JSON API / MCP, templates or the torchrun launcher.

    spec = build(kind, preset=None, store=store, **fields)   # preset (a partial spec) + fields → a spec dict
    validate(kind, spec, store)                               # the one check: at Validate, submit, worker start
    estimate(kind, spec, store)                               # the one estimate: Validate, Start and the card

Each kind's own module says what its spec is (`SPEC_MODULES`); those without presets or estimates build their
spec strictly from the fields given (an unknown field is refused naming the nearest valid one).
"""
from __future__ import annotations

import importlib

from .platform.errors import ValidationError

# kind → module with `build(preset, store, **fields)`, `validate(spec, store)` and (optionally) `estimate`.
SPEC_MODULES = {
    "train": "mistudio_core.sae.train_spec",
    "evaluate": "mistudio_core.sae.eval_job",
    "benchmark": "mistudio_core.benchsuite.job",
    "extract": "mistudio_core.features.job",
    "label": "mistudio_core.labeling.job",
    "export": "mistudio_core.interop.job",
    "import": "mistudio_core.interop.import_spec",
    "sweep": "mistudio_core.steering.sweep_spec",
    "circuit": "mistudio_core.circuits.job",
}


def _module(kind: str):
    if kind not in SPEC_MODULES:
        raise ValidationError(f"Unknown job kind {kind!r}; the kinds with a spec are {', '.join(SPEC_MODULES)}.")
    return importlib.import_module(SPEC_MODULES[kind])


def build(kind: str, preset: str | None = None, store=None, **fields) -> dict:
    """The `kind` spec that `preset` (None: the defaults) plus `fields` describe, checked, as a JSON dict."""
    module = _module(kind)
    if preset and not hasattr(module, "preset_base"):
        raise ValidationError(f"Job kind {kind!r} has no presets; give its fields instead.")
    return module.build(preset=preset, store=store, **fields)


def validate(kind: str, spec: dict, store=None):
    """Check `spec` (fields and values; with `store`, also against the library). Returns the parsed spec."""
    return _module(kind).validate(spec, store)


def estimate(kind: str, spec: dict, store, probe: bool = True):
    """The time / memory / disk estimate of `spec` (None for kinds that have none)."""
    module = _module(kind)
    return module.estimate(store, spec, probe=probe) if hasattr(module, "estimate") else None
