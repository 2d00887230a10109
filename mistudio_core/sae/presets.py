"""Named training recipes: partial "train" specs, applied by the one front door (`sae/train_spec.resolve`, through
`mistudio_core.spec.build`) for the Training tab, `train --preset NAME`, the API and the torchrun launcher alike
(fields given with a preset override its values).

A preset holds `TrainConfig` fields, how the activations are fed (`cache`: capture once into an activation cache
and replay it for several epochs, or stream from the model), the hook(s) it was tuned for, the model's dtype and
the size of the final evaluation. What each recipe is for:

- `quick`: a workshop demo — a short run on a small cache replayed a few times; good enough to browse features.
- `quality`: TopK 8× k=32 at the built-in model's layer 8, tuned for explained variance and CE loss recovered on
  held-out text of OTHER domains than its corpus: bf16 capture where the CPU runs it faster, several epochs over
  a larger cache, a high learning rate with warm-up and decay, half of the contexts token-noised with common
  tokens drawn by rank (see `TrainConfig.token_noise_*`).
- `standard`: ReLU + L1 with a target L0 (λ found during warm-up) instead of a λ to guess.
- `circuits`: the quick recipe at every third layer in one job, for attribution graphs.
- `large`: a research run for a GPU.

How long a recipe takes on this machine is what Validate says (`spec.estimate`); what the recipes measured, with
dates and machines, is in docs/PRESETS.md (from bench/quality_preset.py and bench/bench_estimate.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..platform.errors import ValidationError

BUILTIN_HOOK = "blocks.8.hook_resid_post"
CIRCUIT_HOOKS = tuple(f"blocks.{layer}.hook_resid_post" for layer in range(2, 30, 3))  # every third of 30 layers


@dataclass(frozen=True)
class Preset:
    name: str
    """Name used by the form's dropdown and by `train --preset`."""
    description: str
    """One line for the form and `train --help`."""
    train: dict
    """TrainConfig fields (everything else keeps TrainConfig's default)."""
    cache: dict = field(default_factory=dict)
    """Activation-cache options of the training job: mode ("off" | "use" | "build"), dtype, tokens."""
    hook: str | None = BUILTIN_HOOK
    """The hook point this recipe was tuned at (the form suggests it; any hook works)."""
    model_dtype: str | None = "auto"
    """Dtype the model computes in for capture and evaluation (`compute.py`): "auto" takes bfloat16 on a GPU or a
    CPU with fast bf16 matmuls, float32 elsewhere."""
    hooks: tuple[str, ...] | None = None
    """Several hook points trained together in one job (one capture pass, one cache): a circuits recipe. When set,
    it is the preset's hook list and `hook` is its first entry."""
    eval_contexts: int | None = None
    """Held-out contexts of the job's final evaluation (None: the job's default, 64). The evaluation runs the
    full model three times per context (clean, spliced, zero-ablated): on a CPU it is a real share of a short run."""


QUICK_TRAIN = dict(architecture="topk", expansion_factor=8, k=32, lr=4e-3, batch_tokens=4096, steps=120,
                   lr_warmup_steps=10, lr_decay_steps=36, metrics_every=5, seed=0, token_noise_contexts=0.5,
                   token_noise_rate=0.7, token_noise_rank_offset=1000)
"""The quick recipe's TrainConfig fields, shared by `quick` and `circuits` (one recipe, not two copies)."""
QUICK_CACHE = dict(mode="use", dtype="bfloat16", tokens=131_072)

PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset("quick", "Workshop demo: 128k cached tokens × ~4 epochs, TopK 8× k=32.",
           train=QUICK_TRAIN, cache=QUICK_CACHE, eval_contexts=32),
    Preset("quality", "TopK 8× k=32 tuned for held-out text of other domains: 786k cached tokens, half of their "
           "contexts 70% token-noised with common tokens, ~6 epochs, lr 4.8e-3 with warm-up + decay.",
           train=dict(architecture="topk", expansion_factor=8, k=32, lr=4.8e-3, batch_tokens=4096, steps=1100,
                      lr_warmup_steps=50, lr_decay_steps=330, metrics_every=10, seed=0, token_noise_contexts=0.5,
                      token_noise_rate=0.7, token_noise_rank_offset=1000),
           cache=dict(mode="use", dtype="bfloat16", tokens=786_432)),
    Preset("standard", "ReLU + L1 with λ found during warm-up to reach L0 ≈ 40 (no coefficient to guess).",
           train=dict(architecture="standard", expansion_factor=8, target_l0=40, l1_coefficient=2.0, lr=4e-4,
                      batch_tokens=4096, steps=600, lr_warmup_steps=30, lr_decay_steps=120, seed=0),
           cache=dict(mode="use", dtype="bfloat16", tokens=524_288)),
    Preset("circuits", "Quick recipe at every third layer of the built-in model (blocks 2, 5, ..., 29) in one job: "
           "the SAEs an attribution graph needs (Circuits tab, `circuit`).",
           train=QUICK_TRAIN, cache=QUICK_CACHE, eval_contexts=16,
           hook=CIRCUIT_HOOKS[0], hooks=CIRCUIT_HOOKS),
    Preset("large", "Research run: TopK 16× k=64, 120M streamed tokens (hours on a CPU; meant for a GPU).",
           train=dict(architecture="topk", expansion_factor=16, k=64, lr=2e-4, batch_tokens=4096, steps=30_000,
                      lr_warmup_steps=1000, lr_decay_steps=6000, seed=0),
           cache=dict(mode="off")),
)}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ValidationError(f"Unknown preset {name!r}; choose one of {', '.join(PRESETS)}.")
    return PRESETS[name]
