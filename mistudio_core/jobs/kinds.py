"""The table of job kinds: a name → the function that runs it.

A job kind is `def run(spec: dict, ctx: JobContext) -> dict` decorated with `@register_job("name")`. Its spec is
plain JSON (the registry stores it as JSON); its return value is the job's JSON `result`. `accelerator=True`
(the default) means the job needs the GPU/CPU compute budget, so the runner runs such jobs one at a time; a
light job (`accelerator=False`, e.g. labelling through a remote API) may run beside it.

Built-in kinds live in modules imported on first lookup (`BUILTIN_MODULES`), so that listing jobs never imports
torch or transformers.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

from ..platform.errors import ValidationError

BUILTIN_MODULES = {
    "train": "mistudio_core.sae.train_job",
    "extract": "mistudio_core.features.job",
    "label": "mistudio_core.labeling.job",
    "export": "mistudio_core.interop.job",
    "evaluate": "mistudio_core.sae.eval_job",
    "circuit": "mistudio_core.circuits.job",
    "benchmark": "mistudio_core.benchsuite.job",
}


@dataclass(frozen=True)
class JobKind:
    name: str
    """The kind's name, as stored in each job record."""
    fn: Callable
    """`run(spec, ctx) -> dict | None`."""
    accelerator: bool = True
    """Needs the accelerator: at most one such job runs at a time."""
    validate: Callable | None = None
    """Optional `validate(spec, store=None)` — the kind's one check (`mistudio_core.spec.validate`). The registry
    runs it at submit on the fields alone (a raw spec may name artifacts another process is still writing); the
    doors run it with the store before they submit, and the job again at worker start."""


_KINDS: dict[str, JobKind] = {}


def register_job(name: str, accelerator: bool = True, validate: Callable | None = None) -> Callable:
    """Decorator registering `fn` as job kind `name`; re-registering a name replaces it (module reloads).
    `validate(spec)`, if given, is called by `JobRegistry.submit` so a bad spec fails before it is queued."""
    if not name or not name.replace("_", "").replace("-", "").isalnum():
        raise ValidationError(f"Invalid job kind name {name!r}: use letters, digits, '-' and '_'.")

    def decorate(fn: Callable) -> Callable:
        _KINDS[name] = JobKind(name, fn, accelerator, validate)
        return fn

    return decorate


def get_kind(name: str) -> JobKind:
    """The registered kind `name`, importing its built-in module if needed."""
    if name not in _KINDS and name in BUILTIN_MODULES:
        try:
            importlib.import_module(BUILTIN_MODULES[name])
        except ModuleNotFoundError as e:
            if e.name != BUILTIN_MODULES[name]:
                raise  # a missing dependency inside the module is a bug or a broken install: keep it loud
            raise ValidationError(f"Job kind {name!r} is not available in this installation "
                                  f"({BUILTIN_MODULES[name]} is missing); update miStudio.") from e
    if name not in _KINDS:
        raise ValidationError(f"Unknown job kind {name!r}. Known kinds: {', '.join(known_kinds()) or '(none)'}.")
    return _KINDS[name]


def known_kinds() -> list[str]:
    return sorted(set(_KINDS) | set(BUILTIN_MODULES))
