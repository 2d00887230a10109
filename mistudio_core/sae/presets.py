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
  contexts token-noised at 30% of their tokens (`token_noise_contexts`/`token_noise_rate`: against a third at 15%,
  +0.022 EV on Python docs, +0.004 on legal text, -0.004 in domain at 400 steps); b_dec started at the data mean,
  inputs normalised to mean norm sqrt(d_in), and AuxK on a dead window that scales with the run.

Measured (bench/quality_preset.py --preset quick --fresh, 2 threads, load ~2, 2026-12-02): quick 133 s (capture 38,
training 45, evaluation of 32 contexts 46, load 4); held-out sotu EV 0.869 / CE recovered 0.967; out of domain
(float32, 64 contexts) legal prose 0.809 / 0.899, CPython's reference 0.735 / 0.834, stdlib docstrings 0.724 /
0.837 (with a third noised at 15%: 0.804 / 0.891, 0.723 / 0.807, 0.711 / 0.807; in domain 0.876 / 0.964).
quality (bench/quality_preset.py, 2 threads, load ~2, 2026-12-02): capture 219 s + training 447 s + evaluation of 64
contexts 31 s + load 6 s = 703 s = 11.7 min; held-out sotu EV 0.915 / CE recovered 0.989; out of domain, scored
with the model in float32 on 64 contexts: legal prose (Debian's common-licenses) EV 0.862 / CE 0.951, CPython's
language reference (code-heavy) EV 0.800 (0.7997) / CE 0.926, the standard library's docstrings EV 0.791 / CE
0.929 — technical text still just short of EV 0.80 (it was 0.775 / 0.765 with a third of the contexts noised at
15% and 800 steps).

`standard` is the ReLU + L1 recipe with a target L0 (λ found during warm-up) instead of a λ to guess.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ValidationError
from .config import TrainConfig

BUILTIN_HOOK = "blocks.8.hook_resid_post"


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
                      token_noise_rate=0.3),
           cache=dict(mode="use", dtype="bfloat16", tokens=131_072), eval_contexts=32),
    Preset("quality", "TopK 8× k=32 aimed at EV ≥ 0.80 / CE recovered ≥ 0.90 out of domain (≈12 min on an idle "
           "2-core CPU): 786k cached tokens, half of their contexts 30% token-noised, ~6 epochs, lr 4.8e-3 with "
           "warm-up + decay.",
           train=dict(architecture="topk", expansion_factor=8, k=32, lr=4.8e-3, batch_tokens=4096, steps=1100,
                      lr_warmup_steps=50, lr_decay_steps=330, metrics_every=10, seed=0, token_noise_contexts=0.5,
                      token_noise_rate=0.3),
           cache=dict(mode="use", dtype="bfloat16", tokens=786_432)),
    Preset("standard", "ReLU + L1 with λ found during warm-up to reach L0 ≈ 40 (no coefficient to guess).",
           train=dict(architecture="standard", expansion_factor=8, target_l0=40, l1_coefficient=2.0, lr=4e-4,
                      batch_tokens=4096, steps=600, lr_warmup_steps=30, lr_decay_steps=120, seed=0),
           cache=dict(mode="use", dtype="bfloat16", tokens=524_288)),
    Preset("large", "Research run: TopK 16× k=64, 120M streamed tokens (hours on a CPU; meant for a GPU).",
           train=dict(architecture="topk", expansion_factor=16, k=64, lr=2e-4, batch_tokens=4096, steps=30_000,
                      lr_warmup_steps=1000, lr_decay_steps=6000, seed=0),
           cache=dict(mode="off")),
)}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ValidationError(f"Unknown preset {name!r}; choose one of {', '.join(PRESETS)}.")
    return PRESETS[name]
