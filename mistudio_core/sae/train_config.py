"""How to train an SAE: `TrainConfig`, in four parts that each read in one screen —

- `sae` (`SAEShape`): what is trained — architecture, width, sparsity, transcoder hooks, input handling;
- `optim` (`Optimiser`): how — learning rate and its schedule, batch, steps, loss coefficients, dead latents;
- `data` (`DataNoise`): what the SAE sees besides the corpus — token noise;
- `runtime` (`Runtime`): where and how often — dtype, device, mixed precision, metrics, checkpoints, torchrun.

Records are nested (`{"sae": {...}, "optim": {...}, ...}`). Field names are unique across the parts, so the doors
(CLI flags, the Training tab's inputs, presets, `spec.build(**fields)`) speak the flat names and `from_dict` routes
each to its part: `TrainConfig.of(lr=4e-3, k=32)`. A record written before the split (every field at the top) is
read the same way — that routing is the one migration.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from ..platform.errors import ValidationError
from ..platform.records import check_keys, from_dict, unknown_keys_message
from .config import (AUTOCASTS, B_DEC_INITS, DTYPES, HOOK_OUT, NORMALIZATIONS, TRAINABLE, SAEConfig,
                     matryoshka_levels, resolve_hook_out)

SPARSE_K = ("topk", "batchtopk", "matryoshka_batchtopk")  # the architectures whose L0 is fixed by k


@dataclass
class SAEShape:
    architecture: str = "topk"
    """"topk" (no coefficient to tune; AuxK revives dead latents), "batchtopk", "matryoshka_batchtopk", "jumprelu"
    or "standard" (ReLU + L1)."""
    d_sae: int | None = None
    """Number of latents; if None, expansion_factor × d_in."""
    expansion_factor: int = 8
    """Latents per input dimension when d_sae is None."""
    k: int = 32
    """Active latents per token (topk, batchtopk, matryoshka; jumprelu's L0 target when target_l0 is empty)."""
    target_l0: float | None = None
    """standard and jumprelu: the L0 (active latents per token) to reach — standard adapts λ toward it during
    target_l0_steps; jumprelu penalises the distance to it."""
    matryoshka_prefixes: list[int] | None = None
    """matryoshka_batchtopk: increasing prefix widths, each also trained to reconstruct alone (nested losses);
    d_sae is always the last level. None: d_sae/16, /8, /4, /2."""
    normalize_activations: str = "expected_average_only_in"
    """Scale inputs to mean norm sqrt(d_in), estimated on the first batch; folded into the weights on save."""
    b_dec_init: str = "mean"
    """Start b_dec at the first batch's "mean", "geometric_median" or "zeros"."""
    hook_out: str | None = None
    """Train a transcoder: the hook reconstructed from the input hook, e.g. blocks.8.hook_mlp_out for
    blocks.8.hook_mlp_in (a bare site means the input hook's layer). None: an SAE."""
    skip_transcoder: bool = False
    """With hook_out: a skip transcoder, whose output adds a trained linear term W_skip·x (zero at init)."""

    def __post_init__(self):
        if self.architecture not in TRAINABLE:
            hint = " (train batchtopk: it saves as jumprelu)" if self.architecture == "jumprelu" else ""
            raise ValidationError(f"Cannot train architecture {self.architecture!r}; use one of {TRAINABLE}{hint}.")
        if not self.expansion_factor > 0 or not self.k > 0:
            raise ValidationError(f"expansion_factor and k must be > 0 (got {self.expansion_factor}, {self.k}).")
        if self.d_sae is not None and self.d_sae <= 0:
            raise ValidationError(f"d_sae must be > 0 or empty for expansion_factor × d_in (got {self.d_sae}).")
        if self.normalize_activations not in NORMALIZATIONS:
            raise ValidationError(f"normalize_activations must be one of {NORMALIZATIONS}.")
        if self.b_dec_init not in B_DEC_INITS:
            raise ValidationError(f"b_dec_init must be one of {B_DEC_INITS}.")
        if self.target_l0 is not None and self.architecture not in ("standard", "jumprelu"):
            raise ValidationError(f"target_l0 is for standard and jumprelu SAEs ({self.architecture} fixes L0 with "
                                  "k); leave it empty or choose architecture standard or jumprelu.")
        if self.target_l0 is not None and not (math.isfinite(self.target_l0) and self.target_l0 > 0):
            raise ValidationError(f"target_l0 must be a number > 0: the mean active latents per token to reach "
                                  f"(got {self.target_l0}); e.g. 32, or leave it empty.")
        if self.matryoshka_prefixes is not None:
            if self.architecture != "matryoshka_batchtopk":
                raise ValidationError("matryoshka_prefixes is for architecture matryoshka_batchtopk; leave it "
                                      "empty or choose that architecture.")
            self.matryoshka_prefixes = [int(p) for p in self.matryoshka_prefixes]
            matryoshka_levels(self.matryoshka_prefixes, self.d_sae)
        if self.hook_out is not None and not HOOK_OUT.match(str(self.hook_out)):
            raise ValidationError(f"hook_out {self.hook_out!r} is not a hook name: give blocks.<L>.hook_<site> or "
                                  "a bare site such as hook_mlp_out.")
        if self.skip_transcoder and self.hook_out is None:
            raise ValidationError("skip_transcoder needs hook_out (the hook the transcoder reconstructs).")


@dataclass
class Optimiser:
    lr: float = 3e-4
    """Adam learning rate (peak, after warm-up)."""
    adam_betas: tuple[float, float] = (0.9, 0.999)
    """Adam β1, β2."""
    batch_tokens: int = 4096
    """Tokens per optimisation step (the stream's batch size)."""
    steps: int | None = None
    """Optimisation steps. Give steps or tokens (tokens / batch_tokens, rounded up); default 1000 steps."""
    tokens: int | None = None
    """Training tokens; an alternative to steps."""
    lr_warmup_steps: int = 0
    """Linear warm-up of the learning rate from 0 over this many steps."""
    lr_decay_steps: int = 0
    """Linear decay of the learning rate to 0 over the last this-many steps."""
    seed: int = 0
    """Seed of weight init (each SAE gets seed + its index) and of the activation stream."""
    l1_coefficient: float = 2.0
    """standard: λ in ‖x−x̂‖² + λ·Σ_i z_i‖W_dec[i]‖ on inputs of mean norm sqrt(d_in); ≈ the activation a latent
    must exceed to survive (scale it with sqrt(d_in)). With target_l0, λ's start."""
    l1_warmup_steps: int = 0
    """standard: linear warm-up of λ from 0 over this many steps (ignored with target_l0)."""
    target_l0_steps: int | None = None
    """standard with target_l0: steps during which λ chases the target (damped multiplicative updates), then
    frozen. None: the whole run."""
    dead_feature_window: int | None = None
    """A latent that has not fired in this many tokens counts as dead (and feeds AuxK). None: min(1M, training
    tokens / 4), so short runs see dead latents too."""
    aux_k: int | None = None
    """Latents used by the AuxK loss on dead latents; None → d_in // 2."""
    aux_coefficient: float = 1 / 32
    """Weight of the AuxK loss; 0 disables it."""
    batchtopk_threshold_lr: float = 0.01
    """batchtopk, matryoshka: EMA rate of the inference threshold (minimum selected activation per batch)."""
    jumprelu_bandwidth: float = 0.05
    """jumprelu: width ε of the rectangle kernel of the threshold's straight-through gradient."""
    jumprelu_l0_coefficient: float = 1.0
    """jumprelu: weight of the quadratic L0 penalty 2/T·(L0 − T)² per token, T = target_l0 (or k when empty)."""
    jumprelu_threshold_lr_scale: float = 10.0
    """jumprelu: the thresholds' learning rate as a multiple of lr."""
    jumprelu_init_threshold: float | None = None
    """jumprelu: the thresholds' start; None: per latent from the first batch so that the initial L0 is T."""

    def __post_init__(self):
        self.adam_betas = tuple(self.adam_betas)
        for name in ("lr", "batch_tokens"):
            if not getattr(self, name) > 0:
                raise ValidationError(f"{name} must be > 0 (got {getattr(self, name)}).")
        for name in ("lr_warmup_steps", "lr_decay_steps", "l1_warmup_steps"):
            if getattr(self, name) < 0:
                raise ValidationError(f"{name} must be >= 0 (got {getattr(self, name)}).")
        for name in ("dead_feature_window", "target_l0_steps"):
            if getattr(self, name) is not None and not getattr(self, name) > 0:
                raise ValidationError(f"{name} must be > 0 or empty (got {getattr(self, name)}).")
        if self.l1_coefficient < 0 or self.aux_coefficient < 0:
            raise ValidationError("l1_coefficient and aux_coefficient must be >= 0.")
        if self.steps is not None and self.tokens is not None:
            raise ValidationError("Give steps or tokens, not both.")
        if (self.steps is not None and self.steps <= 0) or (self.tokens is not None and self.tokens <= 0):
            raise ValidationError("steps / tokens must be > 0.")
        if self.lr_warmup_steps + self.lr_decay_steps > self.total_steps:
            raise ValidationError(f"lr_warmup_steps + lr_decay_steps ({self.lr_warmup_steps}+{self.lr_decay_steps})"
                                  f" exceed the {self.total_steps} training steps; shorten them.")
        if self.jumprelu_bandwidth <= 0 or self.jumprelu_l0_coefficient < 0 or self.jumprelu_threshold_lr_scale <= 0:
            raise ValidationError("jumprelu_bandwidth and jumprelu_threshold_lr_scale must be > 0, "
                                  "jumprelu_l0_coefficient >= 0.")
        if self.jumprelu_init_threshold is not None and self.jumprelu_init_threshold < 0:
            raise ValidationError("jumprelu_init_threshold must be >= 0 (or empty: set from the first batch).")

    @property
    def total_steps(self) -> int:
        if self.steps is not None:
            return self.steps
        if self.tokens is not None:
            return math.ceil(self.tokens / self.batch_tokens)
        return 1000

    @property
    def dead_window(self) -> int:
        """dead_feature_window, or the run-scaled default min(1M, training tokens / 4)."""
        if self.dead_feature_window is not None:
            return self.dead_feature_window
        return max(self.batch_tokens, min(1_000_000, self.total_steps * self.batch_tokens // 4))

    def lr_at(self, step: int) -> float:
        """Learning rate at `step` (0-based): linear warm-up, constant, linear decay to 0 at the end."""
        scale = 1.0
        if self.lr_warmup_steps and step < self.lr_warmup_steps:
            scale = (step + 1) / self.lr_warmup_steps
        decay_start = self.total_steps - self.lr_decay_steps
        if self.lr_decay_steps and step >= decay_start:
            scale = min(scale, (self.total_steps - step) / (self.lr_decay_steps + 1))
        return self.lr * scale


@dataclass
class DataNoise:
    token_noise_contexts: float = 0.0
    """Share of training contexts in which token_noise_rate of the tokens (never position 0) are replaced by
    vocabulary tokens before the model runs, so the SAE also sees token directions its corpus lacks. 0: off."""
    token_noise_rate: float = 0.15
    """Share of the tokens replaced in a noised context."""
    token_noise_rank_offset: float = 0.0
    """How replacements are drawn. 0: uniformly. C > 0: vocabulary id r with probability ∝ 1 / (r + C) — a
    byte-pair tokenizer numbers tokens roughly by frequency, so this favours common tokens of every domain."""

    def __post_init__(self):
        if not (math.isfinite(self.token_noise_rank_offset) and self.token_noise_rank_offset >= 0):
            raise ValidationError(f"token_noise_rank_offset must be a finite number >= 0 (0: uniform noise; got "
                                  f"{self.token_noise_rank_offset}).")
        if not 0 <= self.token_noise_contexts <= 1 or not 0 < self.token_noise_rate <= 1:
            raise ValidationError(f"token_noise_contexts must be in [0, 1] and token_noise_rate in (0, 1] (got "
                                  f"{self.token_noise_contexts}, {self.token_noise_rate}).")

    @property
    def token_noise(self) -> tuple[float, ...] | None:
        """(share of contexts, share of their tokens[, rank offset]) for `ActivationStream`, None when off. The rank
        offset is there only when set, so the identity of a cache noised uniformly stays what it was."""
        if self.token_noise_contexts <= 0:
            return None
        base = (self.token_noise_contexts, self.token_noise_rate)
        return base + (self.token_noise_rank_offset,) if self.token_noise_rank_offset else base


@dataclass
class Runtime:
    dtype: str = "float32"
    """Parameter and compute dtype of the SAE."""
    device: str | None = None
    """Device; None → the stream's tensors' device."""
    autocast: str = "off"
    """Mixed precision: "off", "bf16" or "fp16" — only the encoder's dense pre-activation product runs low; the
    parameters, Adam moments, decoder, gradients and loss stay float32. Meant for GPUs."""
    tf32: bool = False
    """Allow TF32 tensor cores for float32 products on CUDA; no effect on CPU."""
    metrics_every: int = 10
    """Report metrics every this many steps (and at the last step)."""
    checkpoint_every: int = 0
    """Checkpoint every this many steps (0: only at cancel and at the end)."""
    distribute_saes: bool = False
    """Under torchrun with several SAEs: each rank trains its own SAEs on the whole batch (round robin) instead of
    every rank training every SAE on 1/world of the batch. Needs at least as many SAEs as ranks."""

    def __post_init__(self):
        if self.dtype not in DTYPES:
            raise ValidationError(f"dtype {self.dtype!r} is not supported; use one of {DTYPES}.")
        if self.autocast not in AUTOCASTS:
            raise ValidationError(f"autocast {self.autocast!r} is not supported; use one of {AUTOCASTS}.")
        if self.autocast != "off" and self.dtype != "float32":
            raise ValidationError(f"autocast {self.autocast} lowers float32 products, but dtype is {self.dtype}; "
                                  "set dtype float32 or autocast off.")
        if not self.metrics_every > 0 or self.checkpoint_every < 0:
            raise ValidationError(f"metrics_every must be > 0 and checkpoint_every >= 0 (got {self.metrics_every}, "
                                  f"{self.checkpoint_every}).")


PARTS = {"sae": SAEShape, "optim": Optimiser, "data": DataNoise, "runtime": Runtime}
PART_OF = {f.name: part for part, cls in PARTS.items() for f in dataclasses.fields(cls)}  # flat name → part
FLAT_FIELDS = list(PART_OF)


@dataclass
class TrainConfig:
    sae: SAEShape = field(default_factory=SAEShape)
    """What is trained: architecture, width, sparsity, transcoder hooks."""
    optim: Optimiser = field(default_factory=Optimiser)
    """How: learning rate and schedule, batch, steps, loss coefficients."""
    data: DataNoise = field(default_factory=DataNoise)
    """Token noise added to the corpus."""
    runtime: Runtime = field(default_factory=Runtime)
    """Dtype, device, mixed precision, metrics and checkpoint cadence, torchrun."""

    def __getattr__(self, name: str):
        if name in PART_OF:  # only reached when normal lookup fails: a flat name read from the nested config
            raise AttributeError(f"TrainConfig has no {name!r} at the top: read TrainConfig.{PART_OF[name]}.{name}.")
        raise AttributeError(name)

    @classmethod
    def of(cls, **fields) -> "TrainConfig":
        """A config from flat field names (`TrainConfig.of(lr=4e-3, k=32)`), each routed to its part."""
        return cls.from_dict(fields)

    @staticmethod
    def flatten(d: dict, what: str = "train settings") -> dict:
        """{flat name: value} of a partial or whole record — nested parts, flat names (routed to their part) or
        both; an unknown key is refused naming the nearest valid name. Nothing is filled in."""
        if not isinstance(d, dict):
            raise ValidationError(f"{what} must be a JSON object of fields (got {type(d).__name__}).")
        unknown = [k for k in d if k not in PARTS and k not in PART_OF]
        if unknown:
            raise ValidationError(unknown_keys_message(unknown, [*PARTS, *FLAT_FIELDS], what))
        out = {}
        for part, cls in PARTS.items():
            value = d.get(part) or {}
            misplaced = [k for k in value if isinstance(value, dict) and PART_OF.get(k, part) != part]
            if misplaced:
                raise ValidationError(f"{what}: {', '.join(map(repr, misplaced))} belong(s) to "
                                      f"{', '.join(sorted({PART_OF[k] for k in misplaced}))}, not {part}; move it "
                                      "there or give it at the top level by its name.")
            check_keys(cls, value, f"train {part}")
            out.update(value)
        out.update({k: v for k, v in d.items() if k in PART_OF})
        return out

    @classmethod
    def from_dict(cls, d: dict, what: str = "train settings") -> "TrainConfig":
        """Strict: the record's fields (see `flatten`) over the defaults, each part checked."""
        flat = cls.flatten(d, what)
        return cls(**{part: from_dict(pcls, {k: v for k, v in flat.items() if PART_OF[k] == part}, f"train {part}")
                      for part, pcls in PARTS.items()})

    def to_dict(self) -> dict:
        """The nested record."""
        out = dataclasses.asdict(self)
        out["optim"]["adam_betas"] = list(self.optim.adam_betas)
        return out

    def flat(self) -> dict:
        """{flat field name: value}: what the doors show and take."""
        return {name: value for part in self.to_dict().values() for name, value in part.items()}

    @property
    def l1_adapt_steps(self) -> int:
        """Steps during which λ chases target_l0 (0 without a target)."""
        if self.sae.target_l0 is None:
            return 0
        return min(self.optim.total_steps, self.optim.target_l0_steps or self.optim.total_steps)

    def l1_at(self, step: int) -> float:
        o = self.optim
        if o.l1_warmup_steps and step < o.l1_warmup_steps and self.sae.target_l0 is None:
            return o.l1_coefficient * (step + 1) / o.l1_warmup_steps
        return o.l1_coefficient

    def sae_config(self, d_in: int, hook_name: str | None = None, **metadata) -> SAEConfig:
        """The SAEConfig this training config builds for activations of width `d_in` at `hook_name`."""
        s, rt = self.sae, self.runtime
        d_sae = s.d_sae or s.expansion_factor * d_in
        k = s.k if s.architecture in SPARSE_K else None
        meta = dict(metadata, hook_name=hook_name) if hook_name else dict(metadata)
        if rt.autocast != "off" or rt.tf32:  # how it was trained, beside SAELens' own metadata
            meta.update(train_autocast=rt.autocast, train_tf32=rt.tf32)
        transcoder = dict(d_out=None)
        if s.hook_out is not None:
            meta["hook_name_out"] = resolve_hook_out(hook_name, s.hook_out)
            transcoder = dict(d_out=d_in, skip_connection=s.skip_transcoder, apply_b_dec_to_input=False)
        return SAEConfig(s.architecture, d_in, d_sae, k=k, dtype=rt.dtype,
                         normalize_activations=s.normalize_activations, metadata=meta,
                         matryoshka_prefixes=s.matryoshka_prefixes, **transcoder)
