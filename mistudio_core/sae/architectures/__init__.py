"""Architecture registry: one module per SAE architecture, each an `Architecture` registered by name.

An architecture says how codes are computed at inference (`encode`), how one training batch is scored (`losses`),
what its decoder and threshold look like (`unit_decoder`, `init_row_norm`, `threshold`), which SAELens
architecture its inference form is written as (`saved_as`, `export_fields`) and what happens after an optimiser
step (`after_step`). `model.SAE`, the trainer and `io` ask the registry instead of branching on names.

    standard              ReLU + decoder-norm-weighted L1 (λ fixed or chasing target_l0)     saved as standard
    topk                  k largest per token, AuxK on dead latents                          saved as topk
    batchtopk             k·B largest per batch, EMA inference threshold                     saved as jumprelu
    matryoshka_batchtopk  batchtopk + a reconstruction loss per nested prefix                saved as jumprelu
    jumprelu              trained threshold (straight-through, rectangle kernel), L0 → target saved as jumprelu

Transcoders (read one hook, reconstruct another, optionally with a linear skip term) are not a separate
activation: any architecture becomes one with `SAEConfig.d_out` (see `transcoder.py`).
"""
from __future__ import annotations

from ...platform.errors import ValidationError
from .base import Architecture

REGISTRY: dict[str, Architecture] = {}


def register(arch: Architecture) -> Architecture:
    REGISTRY[arch.name] = arch
    return arch


def get(name: str) -> Architecture:
    if name not in REGISTRY:
        raise ValidationError(f"Unknown SAE architecture {name!r}; use one of {sorted(REGISTRY)}.")
    return REGISTRY[name]


from . import standard, topk, batchtopk, matryoshka, jumprelu  # noqa: E402,F401  (each registers itself)
