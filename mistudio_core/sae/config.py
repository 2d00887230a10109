"""Configs for sparse autoencoders: what an SAE *is* (`SAEConfig`) and how to train one (`TrainConfig`).

`SAEConfig` mirrors SAELens v6's inference config so `io.save_sae` can write it field for field. `TrainConfig`
holds every optimisation knob; `TrainConfig.sae_config(d_in, hook_name)` turns it into the `SAEConfig` of one SAE.
"""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field

from ..platform.errors import ValidationError
from ..platform.records import from_dict

ARCHITECTURES = ("standard", "topk", "batchtopk", "jumprelu", "matryoshka_batchtopk")
TRAINABLE = ("standard", "topk", "batchtopk", "matryoshka_batchtopk", "jumprelu")
_HOOK_OUT = re.compile(r"^(blocks\.\d+\.)?hook_(resid_pre|resid_post|attn_out|mlp_out|mlp_in)$")
DTYPES = ("float32", "float64", "bfloat16", "float16")
NORMALIZATIONS = ("none", "expected_average_only_in")
B_DEC_INITS = ("mean", "geometric_median", "zeros")
AUTOCASTS = ("off", "bf16", "fp16")


@dataclass
class SAEConfig:
    architecture: str
    """"standard" (ReLU), "topk", "batchtopk" (trained as such, saved as "jumprelu") or "jumprelu"."""
    d_in: int
    """Width of the activations the SAE reads (the model's d_model for residual hooks)."""
    d_sae: int
    """Number of latents (dictionary size)."""
    k: int | None = None
    """Active latents per token for topk/batchtopk (batchtopk: average over the batch). None otherwise."""
    dtype: str = "float32"
    """Parameter dtype name, as SAELens writes it."""
    apply_b_dec_to_input: bool = True
    """Subtract b_dec from the input before encoding (SAELens default)."""
    normalize_activations: str = "none"
    """"none" or "expected_average_only_in" (inputs scaled so their mean norm is sqrt(d_in)). Saved SAEs have
    the scale folded into the weights, so on disk this is always "none"."""
    metadata: dict = field(default_factory=dict)
    """SAELens metadata: model_name, hook_name, hook_head_index, context_size, prepend_bos, dataset_path, ..."""
    d_out: int | None = None
    """Transcoders only: width of the activation reconstructed (at metadata hook_name_out). None: an SAE."""
    skip_connection: bool = False
    """Skip transcoders: the output also gets a trained linear term W_skip·x (W_skip [d_out, d_in])."""
    matryoshka_prefixes: list[int] | None = None
    """matryoshka_batchtopk: the nested prefix widths trained as reconstructions of their own (d_sae is the last)."""

    def __post_init__(self):
        if self.architecture not in ARCHITECTURES:
            raise ValidationError(f"Unknown SAE architecture {self.architecture!r}; use one of {ARCHITECTURES}.")
        if self.d_in <= 0 or self.d_sae <= 0:
            raise ValidationError(f"d_in and d_sae must be positive (got d_in={self.d_in}, d_sae={self.d_sae}).")
        if self.architecture in ("topk", "batchtopk", "matryoshka_batchtopk"):
            if self.k is None or not 0 < self.k <= self.d_sae:
                raise ValidationError(f"{self.architecture} needs 0 < k <= d_sae={self.d_sae} (got k={self.k}).")
        if self.dtype not in DTYPES:
            raise ValidationError(f"dtype {self.dtype!r} is not supported; use one of {DTYPES}.")
        if self.normalize_activations not in NORMALIZATIONS:
            raise ValidationError(f"normalize_activations {self.normalize_activations!r} is not supported; "
                                  f"use one of {NORMALIZATIONS}.")
        if self.d_out is not None:
            if self.d_out != self.d_in:
                raise ValidationError(f"This transcoder reads {self.metadata.get('hook_name')} (width {self.d_in}) "
                                      f"but writes {self.metadata.get('hook_name_out')} (width {self.d_out}); its two "
                                      "hooks must have the same width: pick hooks of one model's residual width.")
            if self.apply_b_dec_to_input:
                raise ValidationError("A transcoder cannot subtract b_dec (an output bias) from its input; set "
                                      "apply_b_dec_to_input false.")
        elif self.skip_connection:
            raise ValidationError("skip_connection is for transcoders: set d_out (and metadata hook_name_out).")
        if self.architecture == "matryoshka_batchtopk":
            self.matryoshka_prefixes = matryoshka_levels(self.matryoshka_prefixes, self.d_sae)

    @property
    def hook_name(self) -> str | None:
        return self.metadata.get("hook_name")

    @property
    def hook_name_out(self) -> str | None:
        """The hook a transcoder reconstructs (None for an SAE, which reconstructs its input)."""
        return self.metadata.get("hook_name_out") if self.d_out is not None else None

    @property
    def out_width(self) -> int:
        return self.d_out if self.d_out is not None else self.d_in

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "SAEConfig":
        return from_dict(cls, d)


@dataclass
class TrainConfig:
    architecture: str = "topk"
    """"topk" (default: no coefficient to tune, no dead-latent collapse with AuxK), "batchtopk" or "standard"."""
    d_sae: int | None = None
    """Number of latents; if None, expansion_factor × d_in."""
    expansion_factor: int = 8
    """Latents per input dimension when d_sae is None."""
    k: int = 32
    """Active latents per token (topk, batchtopk)."""
    l1_coefficient: float = 2.0
    """Standard SAE only: λ in ‖x−x̂‖² + λ·Σ_i z_i‖W_dec[i]‖ (squared error summed over d_in, mean over tokens).
    On inputs normalised to mean norm sqrt(d_in) (the default) a latent survives roughly when its activation exceeds
    λ, so λ ∝ sqrt(d_in) keeps the same sparsity: ≈2 suits d_in≈576; values tuned for unit-norm inputs carry over
    as λ·sqrt(d_in). Or set target_l0 and let λ be found (docs/PRESETS.md has the measurements)."""
    lr: float = 3e-4
    """Adam learning rate (peak, after warm-up)."""
    adam_betas: tuple[float, float] = (0.9, 0.999)
    """Adam β1, β2."""
    batch_tokens: int = 4096
    """Tokens per optimisation step (must match the stream's batch size)."""
    steps: int | None = None
    """Optimisation steps. Give steps or tokens (tokens / batch_tokens, rounded up); default 1000 steps."""
    tokens: int | None = None
    """Training tokens; an alternative to steps."""
    lr_warmup_steps: int = 0
    """Linear warm-up of the learning rate from 0 over this many steps."""
    lr_decay_steps: int = 0
    """Linear decay of the learning rate to 0 over the last this-many steps (Anthropic: last 20%)."""
    l1_warmup_steps: int = 0
    """Linear warm-up of the L1 coefficient from 0 (standard only; Anthropic: first 5%). Ignored with target_l0."""
    target_l0: float | None = None
    """Standard only: the L0 (active latents per token) to reach instead of a fixed λ. λ starts at l1_coefficient
    and is adjusted multiplicatively every step of the first target_l0_steps steps (log λ moves by 0.05·e + (e −
    e_prev), e = log(L0/target), at most ±0.05: damped, since L0 answers λ late), then frozen for the rest."""
    target_l0_steps: int | None = None
    """Steps during which λ chases target_l0; None → the whole run (chasing to the end, as the lr decays, lands
    closest to the target: docs/PRESETS.md)."""
    dead_feature_window: int | None = None
    """A latent that has not fired in this many tokens counts as dead (and feeds AuxK for topk). None (default)
    scales with the run: min(1M, training tokens / 4), so a short run still reports dead latents and AuxK acts
    (a fixed 1M window never triggers in a run of 819k tokens)."""
    aux_k: int | None = None
    """Latents used by the AuxK loss on dead latents; None → d_in // 2 (Gao et al. 2024)."""
    aux_coefficient: float = 1 / 32
    """Weight of the AuxK loss (Gao et al.: 1/32). 0 disables it."""
    normalize_activations: str = "expected_average_only_in"
    """Scale inputs to mean norm sqrt(d_in), estimated on the first batch; folded into the weights on save."""
    b_dec_init: str = "mean"
    """Start b_dec at the first batch's "mean", "geometric_median" or "zeros" (mean avoids dead latents)."""
    batchtopk_threshold_lr: float = 0.01
    """EMA rate of the batchtopk inference threshold (minimum selected activation per batch)."""
    seed: int = 0
    """Seed of weight init (each SAE gets seed + its index)."""
    dtype: str = "float32"
    """Parameter and compute dtype."""
    device: str | None = None
    """Device; None → the stream's tensors' device."""
    autocast: str = "off"
    """Mixed precision of training: "off", "bf16" or "fp16" (torch.autocast on the activations' device). Only the
    encoder's pre-activation product — the one dense [batch, d_sae] product of a step — runs in low precision;
    parameters, Adam moments, the sparse decoder, gradients and the loss stay float32 (so fp16 needs no loss
    scaling). Meant for GPUs (bf16 on Ampere or newer); it runs on CPU, where it is rarely faster."""
    tf32: bool = False
    """Allow TF32 tensor cores for the float32 matrix products of training on CUDA (~10 significant bits in the
    products, several times faster on Ampere or newer); no effect on CPU."""
    metrics_every: int = 10
    """Report metrics every this many steps (and at the last step)."""
    checkpoint_every: int = 0
    """Checkpoint every this many steps (0: only at cancel and at the end)."""
    token_noise_contexts: float = 0.0
    """Data augmentation: the share of training contexts in which token_noise_rate of the tokens (never position 0)
    are replaced by random vocabulary tokens (drawn as token_noise_rank_offset says) before the model runs, so the
    SAE also sees token directions its corpus lacks (what it bought out of domain: docs/PRESETS.md). 0 turns it
    off."""
    token_noise_rate: float = 0.15
    """Share of the tokens replaced in a noised context (see token_noise_contexts)."""
    token_noise_rank_offset: float = 0.0
    """How token noise draws its replacement ids. 0: uniformly from the vocabulary. C > 0: id number r of the
    vocabulary (special and added tokens left out) with probability ∝ 1 / (r + C). A byte-pair tokenizer numbers its
    tokens in the order it learned its merges, which follows their frequency in its broad training text, so this
    prior puts common tokens of every domain (punctuation, whitespace runs, short words, code pieces) into the
    noise far more often than rare word fragments; a tokenizer numbered otherwise just gets a skewed pool."""
    distribute_saes: bool = False
    """Under torchrun with several SAEs (hooks) in one job: give each rank its own SAEs (round robin: rank r trains
    SAEs r, r+world, ...) on the whole batch, capturing only their hooks, with no gradient all-reduce (sparsify's
    distribute_modules). Needs at least as many SAEs as ranks. Off: every rank trains every SAE on 1/world of
    each batch. Ignored in a single process."""
    matryoshka_prefixes: list[int] | None = None
    """matryoshka_batchtopk: increasing prefix widths, each also trained to reconstruct alone (nested losses, Bussmann
    et al. 2025); d_sae is always the last level. None: d_sae/16, /8, /4, /2."""
    jumprelu_bandwidth: float = 0.05
    """jumprelu: width ε of the rectangle kernel of the threshold's straight-through gradient (Rajamanoharan 2024)."""
    jumprelu_l0_coefficient: float = 1.0
    """jumprelu: weight of the quadratic L0 penalty 2/T·(L0 − T)² per token, T = target_l0 (or k when empty)."""
    jumprelu_threshold_lr_scale: float = 10.0
    """jumprelu: the thresholds' learning rate as a multiple of lr (the encoder moves L0 faster than θ at 1×)."""
    jumprelu_init_threshold: float | None = None
    """jumprelu: the thresholds' start; None: per latent from the first batch so that the initial L0 is T."""
    hook_out: str | None = None
    """Train transcoders: the hook reconstructed from the input hook, e.g. blocks.8.hook_mlp_out for
    blocks.8.hook_mlp_in; a bare site (hook_mlp_out) means the input hook's layer. None: an SAE."""
    skip_transcoder: bool = False
    """With hook_out: a skip transcoder, whose output adds a trained linear term W_skip·x (zero at init)."""

    def __post_init__(self):
        if self.architecture not in TRAINABLE:
            hint = " (train batchtopk: it saves as jumprelu)" if self.architecture == "jumprelu" else ""
            raise ValidationError(f"Cannot train architecture {self.architecture!r}; use one of {TRAINABLE}{hint}.")
        self.adam_betas = tuple(self.adam_betas)
        positive = dict(expansion_factor=self.expansion_factor, k=self.k, lr=self.lr,
                        batch_tokens=self.batch_tokens, metrics_every=self.metrics_every,
                        dead_feature_window=self.dead_window,
                        target_l0_steps=self.target_l0_steps or 1)
        for name, value in positive.items():
            if not value > 0:
                raise ValidationError(f"{name} must be > 0 (got {value}).")
        for name in ("lr_warmup_steps", "lr_decay_steps", "l1_warmup_steps", "checkpoint_every"):
            if getattr(self, name) < 0:
                raise ValidationError(f"{name} must be >= 0 (got {getattr(self, name)}).")
        if self.l1_coefficient < 0 or self.aux_coefficient < 0:
            raise ValidationError("l1_coefficient and aux_coefficient must be >= 0.")
        if self.steps is not None and self.tokens is not None:
            raise ValidationError("Give steps or tokens, not both.")
        if (self.steps is not None and self.steps <= 0) or (self.tokens is not None and self.tokens <= 0):
            raise ValidationError("steps / tokens must be > 0.")
        if self.lr_warmup_steps + self.lr_decay_steps > self.total_steps:
            raise ValidationError(f"lr_warmup_steps + lr_decay_steps ({self.lr_warmup_steps}+{self.lr_decay_steps})"
                                  f" exceed the {self.total_steps} training steps; shorten them.")
        if self.dtype not in DTYPES:
            raise ValidationError(f"dtype {self.dtype!r} is not supported; use one of {DTYPES}.")
        if self.normalize_activations not in NORMALIZATIONS:
            raise ValidationError(f"normalize_activations must be one of {NORMALIZATIONS}.")
        if self.autocast not in AUTOCASTS:
            raise ValidationError(f"autocast {self.autocast!r} is not supported; use one of {AUTOCASTS}.")
        if self.autocast != "off" and self.dtype != "float32":
            raise ValidationError(f"autocast {self.autocast} lowers float32 products, but dtype is {self.dtype}; "
                                  "set dtype float32 or autocast off.")
        if not (math.isfinite(self.token_noise_rank_offset) and self.token_noise_rank_offset >= 0):
            raise ValidationError(f"token_noise_rank_offset must be a finite number >= 0 (0: uniform noise; got "
                                  f"{self.token_noise_rank_offset}).")
        if not 0 <= self.token_noise_contexts <= 1 or not 0 < self.token_noise_rate <= 1:
            raise ValidationError(f"token_noise_contexts must be in [0, 1] and token_noise_rate in (0, 1] (got "
                                  f"{self.token_noise_contexts}, {self.token_noise_rate}).")
        if self.b_dec_init not in B_DEC_INITS:
            raise ValidationError(f"b_dec_init must be one of {B_DEC_INITS}.")
        if self.target_l0 is not None and self.architecture not in ("standard", "jumprelu"):
            raise ValidationError(f"target_l0 is for standard and jumprelu SAEs ({self.architecture} fixes L0 with "
                                  "k); leave it empty or choose architecture standard or jumprelu.")
        if self.target_l0 is not None and not (math.isfinite(self.target_l0) and self.target_l0 > 0):
            raise ValidationError(f"target_l0 must be a number > 0: the mean active latents per token to reach "
                                  f"(got {self.target_l0}); e.g. 32, or leave it empty.")
        if self.jumprelu_bandwidth <= 0 or self.jumprelu_l0_coefficient < 0 or self.jumprelu_threshold_lr_scale <= 0:
            raise ValidationError("jumprelu_bandwidth and jumprelu_threshold_lr_scale must be > 0, "
                                  "jumprelu_l0_coefficient >= 0.")
        if self.jumprelu_init_threshold is not None and self.jumprelu_init_threshold < 0:
            raise ValidationError("jumprelu_init_threshold must be >= 0 (or empty: set from the first batch).")
        if self.matryoshka_prefixes is not None:
            if self.architecture != "matryoshka_batchtopk":
                raise ValidationError("matryoshka_prefixes is for architecture matryoshka_batchtopk; leave it "
                                      "empty or choose that architecture.")
            self.matryoshka_prefixes = [int(p) for p in self.matryoshka_prefixes]
            matryoshka_levels(self.matryoshka_prefixes, self.d_sae)
        if self.hook_out is not None and not _HOOK_OUT.match(str(self.hook_out)):
            raise ValidationError(f"hook_out {self.hook_out!r} is not a hook name: give blocks.<L>.hook_<site> or "
                                  "a bare site such as hook_mlp_out.")
        if self.skip_transcoder and self.hook_out is None:
            raise ValidationError("skip_transcoder needs hook_out (the hook the transcoder reconstructs).")

    @property
    def token_noise(self) -> tuple[float, ...] | None:
        """(share of contexts, share of their tokens[, rank offset]) for `ActivationStream`, None when off. The rank
        offset is there only when set, so the identity of a cache noised uniformly stays what it was."""
        if self.token_noise_contexts <= 0:
            return None
        base = (self.token_noise_contexts, self.token_noise_rate)
        return base + (self.token_noise_rank_offset,) if self.token_noise_rank_offset else base

    @property
    def dead_window(self) -> int:
        """dead_feature_window, or the run-scaled default min(1M, training tokens / 4)."""
        if self.dead_feature_window is not None:
            return self.dead_feature_window
        return max(self.batch_tokens, min(1_000_000, self.total_steps * self.batch_tokens // 4))

    @property
    def l1_adapt_steps(self) -> int:
        """Steps during which λ chases target_l0 (0 without a target)."""
        if self.target_l0 is None:
            return 0
        return min(self.total_steps, self.target_l0_steps or self.total_steps)

    @property
    def total_steps(self) -> int:
        if self.steps is not None:
            return self.steps
        if self.tokens is not None:
            return math.ceil(self.tokens / self.batch_tokens)
        return 1000

    def lr_at(self, step: int) -> float:
        """Learning rate at `step` (0-based): linear warm-up, constant, linear decay to 0 at the end."""
        scale = 1.0
        if self.lr_warmup_steps and step < self.lr_warmup_steps:
            scale = (step + 1) / self.lr_warmup_steps
        decay_start = self.total_steps - self.lr_decay_steps
        if self.lr_decay_steps and step >= decay_start:
            scale = min(scale, (self.total_steps - step) / (self.lr_decay_steps + 1))
        return self.lr * scale

    def l1_at(self, step: int) -> float:
        if self.l1_warmup_steps and step < self.l1_warmup_steps and self.target_l0 is None:
            return self.l1_coefficient * (step + 1) / self.l1_warmup_steps
        return self.l1_coefficient

    def sae_config(self, d_in: int, hook_name: str | None = None, **metadata) -> SAEConfig:
        """The SAEConfig this training config builds for activations of width `d_in` at `hook_name`."""
        d_sae = self.d_sae or self.expansion_factor * d_in
        k = self.k if self.architecture in ("topk", "batchtopk", "matryoshka_batchtopk") else None
        meta = dict(metadata, hook_name=hook_name) if hook_name else dict(metadata)
        if self.autocast != "off" or self.tf32:  # how it was trained, beside SAELens' own metadata
            meta.update(train_autocast=self.autocast, train_tf32=self.tf32)
        transcoder = dict(d_out=None)
        if self.hook_out is not None:
            meta["hook_name_out"] = resolve_hook_out(hook_name, self.hook_out)
            transcoder = dict(d_out=d_in, skip_connection=self.skip_transcoder, apply_b_dec_to_input=False)
        return SAEConfig(self.architecture, d_in, d_sae, k=k, dtype=self.dtype,
                         normalize_activations=self.normalize_activations, metadata=meta,
                         matryoshka_prefixes=self.matryoshka_prefixes, **transcoder)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["adam_betas"] = list(self.adam_betas)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        return from_dict(cls, d)


def matryoshka_levels(prefixes: list[int] | None, d_sae: int | None) -> list[int]:
    """The nested widths of a Matryoshka SAE, d_sae last (None: d_sae/16, /8, /4, /2); bad prefixes raise."""
    if prefixes is None:
        if d_sae is None:
            return []
        prefixes = sorted({d_sae // f for f in (16, 8, 4, 2) if d_sae // f > 0})
    prefixes = [int(p) for p in prefixes]
    if d_sae is not None and prefixes and prefixes[-1] == d_sae:
        prefixes = prefixes[:-1]
    bad = any(b <= a for a, b in zip(prefixes, prefixes[1:])) or any(p <= 0 for p in prefixes)
    if bad or (d_sae is not None and prefixes and prefixes[-1] > d_sae):
        raise ValidationError(f"matryoshka_prefixes {prefixes} must strictly increase, each > 0 and below the width "
                              f"d_sae={d_sae}; e.g. [{max(1, (d_sae or 4096) // 8)}, {max(2, (d_sae or 4096) // 2)}].")
    return prefixes + ([d_sae] if d_sae is not None else [])


def resolve_hook_out(hook_in: str | None, hook_out: str) -> str:
    """A transcoder's output hook: a full name as given, a bare site (hook_mlp_out) at the input hook's layer."""
    if hook_out.startswith("blocks."):
        return hook_out
    m = re.match(r"^blocks\.(\d+)\.", hook_in or "")
    if not m:
        raise ValidationError(f"hook_out {hook_out!r} is a bare site, but the input hook {hook_in!r} names no layer; "
                              "give the full name, e.g. blocks.8.hook_mlp_out.")
    return f"blocks.{m.group(1)}.{hook_out}"
