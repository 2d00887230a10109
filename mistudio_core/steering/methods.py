"""Steering interventions on one hook point's activation `h` ([B, T, d]).

The formulas follow Neuronpedia's inference server so a strength here means what it means there. With
`v = W_dec[f]` (unit-normed when `normalize`), `v̂ = v / ‖v‖` and coefficient `c = strength`:

- additive:        h ← h + c·v                         (every steered position)
- orthogonal:      h ← (I − P)h + c·P h,  P = v̂ v̂ᵀ   (keeps the part of h orthogonal to v, scales the rest by c;
                                                         c = 1 is the identity, c = 0 removes the direction)
- projection_cap:  h ← h + (min(h·v̂, c) − h·v̂)·v̂      (caps the component along v̂ at c; Neuronpedia's
                                                         ProjectionCapSpec with min=None, max=c)
- clamp:           z = SAE.encode(h); z' = z with z_f := c;  h ← h + decode(z') − decode(z)
                   Works in feature space: only the change of the SAE's reconstruction is added, so the SAE's
                   reconstruction error (h − decode(z)) is never injected. c = 0 ablates the feature.
- clamp_exact:     the clamp's change divided by d_f = W_dec[f]·W_enc[:, f], so the activation re-encoded from the
                   steered h is c (for an active feature). Not a Neuronpedia method: on trained SAEs d_f < 1
                   (median 0.67 on our SmolLM2 layer-18 TopK SAE), and the plain clamp to 0 leaves about a third of
                   the activation when the SAE re-reads the hook. Equal to `clamp` when d_f = 1 (tied weights).

Several features apply one after another, in the order given (as Neuronpedia does).

Positions: `positions="all"` steers the prompt and every generated token (Neuronpedia's default);
`"generated"` steers only positions after the prompt. With a KV cache the hook sees the prompt once and then one
position per step, so `Steerer` tracks the absolute position itself; `reset()` starts a new sequence.

Batch rows: `rows` (bool [B]) limits steering to some rows, so the baseline and the steered output run in one
batched forward; `row_scale` ([B]) multiplies every strength per row, so a whole strength sweep is one batch.

What the intervention did, measured where it happens: the Steerer re-encodes the *steered* activation with the SAE
at every steered position while the model generates, and keeps per row the running mean of each steered feature
(`steered_means()`: "activation in the steered model, at the hook"). This is the quantity a strength controls
(additive: pre-activation + c·d_f). It differs from the sweep's `feature_mean`, the *unsteered* model's reading of
the generated text, which asks whether the text itself came to carry the feature. Rows that have stopped
(`live` False, set by the decoding loop) are not counted.

Transcoders (`transcoder.py`): every write goes to the output hook (the `hook_name` given), and the activation a
clamp sets or the readout reports is the encoding of the *input* hook's activation of the same forward pass, handed
over by `transcoder.steer`'s capture (`see_input`). The write never reaches the hook the transcoder reads, so the
readout is a_f(x_in) plus the code each feature's own step wrote (its change Δh along W_dec[f]: s_out·Δh·W_dec[f] /
‖W_dec[f]‖², e.g. +c for additive, c − a_f for a clamp), the activation the transcoder's output now carries; and the
plain clamp already lands on c, so clamp_exact is the clamp there.

Limits: the clamp's re-encoded activation is exactly the clamped value only when the encoder's column for f and
the decoder's row are dual (W_dec[f]·W_enc[:, f] = 1); on a trained SAE it does not (see clamp_exact), and the
sweep reports the measured value. clamp_exact is exact for one feature; several features clamped together
interact through their encoder columns, so each lands near, not on, its target.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch

from ..platform.errors import ValidationError
from ..platform.records import from_dict
from .transcoder import is_transcoder

METHODS = ("additive", "orthogonal", "projection_cap", "clamp", "clamp_exact")
POSITIONS = ("all", "generated")
# Larger than any useful coefficient (unit-norm Gemma Scope rows need hundreds); beyond it the residual is swamped
# and the output is noise, so such a number is a typo, not an experiment.
MAX_ABS_STRENGTH = 10_000.0


def check_strength(value, what: str) -> float:
    """`value` as a float, refusing NaN, ±inf and magnitudes past `MAX_ABS_STRENGTH` (naming `what`)."""
    try:
        c = float(value)
    except (TypeError, ValueError):
        raise ValidationError(f"The strength of {what} is {value!r}, not a number. Type a number such as 4 or "
                              "-2.5.") from None
    if not math.isfinite(c) or abs(c) > MAX_ABS_STRENGTH:
        raise ValidationError(f"The strength of {what} is {value!r}: use a finite number between "
                              f"-{MAX_ABS_STRENGTH:g} and {MAX_ABS_STRENGTH:g} (useful strengths are around the "
                              "feature's max activation; run a sweep to find one).")
    return c


@dataclass
class SteerFeature:
    """One SAE feature to steer with."""

    index: int
    """Feature (latent) index in the SAE."""
    strength: float
    """Coefficient c: added multiple of the vector (additive), parallel scale (orthogonal), cap (projection_cap),
    or target activation (clamp). Negative additive strengths push away from the feature."""

    def __post_init__(self):
        if int(self.index) != self.index or self.index < 0:
            raise ValidationError(f"Feature index {self.index!r} must be a non-negative integer.")
        self.index = int(self.index)
        self.strength = check_strength(self.strength, f"feature {self.index}")


@dataclass
class SteerVector:
    """A direction that is not one SAE feature (e.g. a concept vector: a mean activation difference), added
    additively whatever the config's method: h += strength·values."""

    name: str
    """What the vector is (shown in readings and saved sessions), e.g. "concept: yelling"."""
    values: list[float]
    """The direction in the hook's activation space (length d_model); strength 1 adds it as it is."""
    strength: float = 1.0
    """Multiple of `values` added at every steered position."""

    def __post_init__(self):
        self.values = [float(v) for v in self.values]
        if not self.values or not all(math.isfinite(v) for v in self.values):
            raise ValidationError(f"Steering vector {self.name!r} is empty or holds NaN/inf values; rebuild it "
                                  "from two prompt sets.")
        self.strength = check_strength(self.strength, f"vector {self.name!r}")


@dataclass
class SteeringConfig:
    """What to steer and how."""

    features: list[SteerFeature] = field(default_factory=list)
    """The (feature, strength) pairs, applied in order."""
    method: str = "additive"
    """One of `additive`, `orthogonal`, `projection_cap`, `clamp`, `clamp_exact` (formulas: module docstring)."""
    normalize: bool = False
    """Use the unit-normed decoder row v/‖v‖ (additive only; the other methods use the direction anyway)."""
    positions: str = "all"
    """`all` steers prompt and generated positions; `generated` only the generated ones."""
    vectors: list[SteerVector] = field(default_factory=list)
    """Extra directions added after the features (always additive), e.g. a concept vector."""

    def __post_init__(self):
        self.features = [f if isinstance(f, SteerFeature) else from_dict(SteerFeature, f, "steered feature")
                         for f in self.features]
        self.vectors = [v if isinstance(v, SteerVector) else from_dict(SteerVector, v, "steering vector")
                        for v in self.vectors]
        if self.method not in METHODS:
            raise ValidationError(f"Unknown steering method {self.method!r}; choose one of {', '.join(METHODS)}.")
        if self.positions not in POSITIONS:
            raise ValidationError(f"Unknown positions {self.positions!r}; choose one of {', '.join(POSITIONS)}.")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "SteeringConfig":
        """Input and saved records alike (records hold only these fields), strictly: an unknown key is refused
        naming the nearest field; renamed keys of older records go through `records.MIGRATIONS`."""
        return from_dict(cls, d, "steering setting")


def check_features(cfg: SteeringConfig, d_sae: int) -> None:
    """Refuse feature indices the SAE does not have, naming the valid range."""
    for f in cfg.features:
        if f.index >= d_sae:
            raise ValidationError(f"Feature {f.index} does not exist: this SAE has features 0..{d_sae - 1}.")


def additive(h: torch.Tensor, v: torch.Tensor, c: torch.Tensor | float) -> torch.Tensor:
    """h + c·v."""
    return h + c * v


def orthogonal(h: torch.Tensor, v: torch.Tensor, c: torch.Tensor | float) -> torch.Tensor:
    """(I − P)h + c·P h with P = v̂v̂ᵀ, computed as h + (c − 1)(h·v̂)v̂ (no d×d matrix)."""
    u = v / v.norm()
    proj = (h * u).sum(-1, keepdim=True)
    return h + (c - 1.0) * proj * u


def projection_cap(h: torch.Tensor, v: torch.Tensor, c: torch.Tensor | float,
                   low: float | None = None) -> torch.Tensor:
    """h + (clamp(h·v̂, low, c) − h·v̂)·v̂: the component along v̂ is capped at c (and floored at `low`)."""
    u = v / v.norm()
    proj = (h * u).sum(-1, keepdim=True)
    capped = torch.minimum(proj, torch.as_tensor(c, dtype=proj.dtype, device=proj.device))
    if low is not None:
        capped = capped.clamp(min=low)
    return h + (capped - proj) * u


def clamp_feature(h: torch.Tensor, sae, index: int, c: torch.Tensor | float, gain: float = 1.0,
                  x: torch.Tensor | None = None) -> torch.Tensor:
    """h + gain·(decode(z with z_index := c) − decode(z)) with z = encode(x), in the SAE's dtype; the reconstruction
    error stays as it was. `x` is the activation the SAE reads (a transcoder's input hook, same positions as h;
    default h itself). `c` is a float or broadcasts to h's leading dims (e.g. [B, 1] for one target per batch row);
    `gain` 1/d_f makes the re-encoded activation land on c (`clamp_exact`)."""
    z = sae.encode((h if x is None else x).to(sae.W_dec.dtype))
    z2 = z.clone()
    z2[..., index] = torch.as_tensor(c, dtype=z.dtype, device=z.device).expand(z.shape[:-1])
    return h + (gain * (sae.decode(z2) - sae.decode(z))).to(h.dtype)


def encoder_decoder_overlap(sae, index: int) -> float:
    """d_f = W_dec[f]·W_enc[:, f]: how much of a step along the decoder row the encoder reads back."""
    return float(sae.W_dec[index].detach().float() @ sae.W_enc[:, index].detach().float())


class Steerer:
    """The function `transcoder.steer` hooks at the hook steering writes: applies a `SteeringConfig` to `act`
    [B, T, d] (a plain `hooks.intervene` does for an SAE; a transcoder also needs its input, `see_input`).

    `rows` (bool [B]) limits steering to some batch rows (the others are the unsteered baseline); `row_scale`
    ([B]) multiplies every strength per row (a strength sweep in one batch). `prompt_len` is needed for
    `positions="generated"`.
    """

    def __init__(self, cfg: SteeringConfig, sae, prompt_len: int = 0, rows: torch.Tensor | None = None,
                 row_scale: torch.Tensor | None = None):
        check_features(cfg, sae.W_dec.shape[0])
        self.cfg, self.sae, self.prompt_len = cfg, sae, prompt_len
        self.rows, self.row_scale = rows, row_scale
        self.pos = 0
        self.live: torch.Tensor | None = None  # bool [B]: rows still generating (set by the decoding loop)
        self._vectors: dict = {}
        self._sum: torch.Tensor | None = None  # [B, n_features] summed re-encoded activation of the steered h
        self._count: torch.Tensor | None = None  # [B] positions summed
        self.transcoder = is_transcoder(sae)
        self._x_in: torch.Tensor | None = None  # a transcoder's input activation of the current forward pass
        # Per-feature multiplier of the clamp's change, computed (and an unusable clamp_exact refused) here rather
        # than inside the model's forward.
        self._gains = {f.index: self._clamp_gain(f.index) for f in cfg.features}

    def reset(self) -> None:
        """Start a new sequence (positions count from 0 again; the recorded activations are cleared)."""
        self.pos = 0
        self.live, self._sum, self._count, self._x_in = None, None, None, None

    def see_input(self, act: torch.Tensor) -> None:
        """The capture at a transcoder's input hook (installed by `transcoder.steer`): keeps this forward pass's
        input activation for the intervention at the output hook, which runs later in the same pass."""
        self._x_in = act

    def _input(self, act: torch.Tensor) -> torch.Tensor | None:
        """A transcoder's input activation for this call's positions (taken once: every forward pass brings its
        own); None for an SAE. Refuses to fall back on the output activation, which has the same width."""
        if not self.transcoder:
            return None
        x, self._x_in = self._x_in, None
        if x is None or x.shape[:2] != act.shape[:2]:
            raise ValidationError("A transcoder's features are read at its input hook, which this Steerer did not "
                                  "see in this forward pass: install it with steering.transcoder.steer(model, "
                                  "hook_name, steerer), which captures the input hook as well as writing at the "
                                  "output hook.")
        return x

    def _code_step(self, delta: torch.Tensor, index: int) -> torch.Tensor:
        """The code one feature's step wrote on a transcoder: s_out·Δh·W_dec[f] / ‖W_dec[f]‖² per position [B, T']
        (each step moves h along W_dec[f] only, so this is exact)."""
        v = self.sae.W_dec[index].detach().float().to(delta.device)
        s_out = float(getattr(self.sae, "out_scale", 1.0))
        return s_out * (delta.float() @ v) / float(v @ v)

    def _record(self, h: torch.Tensor, x: torch.Tensor | None = None, codes: list | None = None) -> None:
        """Add the SAE's encoding of the steered positions to the per-row sums (live rows only): of `h` [B, T', d]
        for an SAE; of a transcoder's input `x` plus the `codes` its steps wrote ([B, T'] per feature)."""
        idx = [f.index for f in self.cfg.features]
        with torch.no_grad():
            z = self.sae.encode((h if x is None else x).detach().to(self.sae.W_dec.dtype))[..., idx].float()
            if codes:
                z = z + torch.stack(codes, -1).to(z.device)
        live = torch.ones(h.shape[0], dtype=torch.bool) if self.live is None else self.live.cpu()
        part = z.sum(1).cpu() * live[:, None]
        n = live.float() * h.shape[1]
        self._sum = part if self._sum is None else self._sum + part
        self._count = n if self._count is None else self._count + n

    def steered_means(self) -> list[dict[int, float | None]]:
        """Per batch row, `{feature: mean SAE activation of the steered residual over the steered positions}` (a
        transcoder: of its input plus the code the steering wrote, module doc); None where nothing was steered yet
        (e.g. `positions="generated"` before the first generated token)."""
        if self._sum is None:
            return []
        idx = [f.index for f in self.cfg.features]
        return [{f: (float(self._sum[r, i] / self._count[r]) if self._count[r] > 0 else None)
                 for i, f in enumerate(idx)} for r in range(self._sum.shape[0])]

    def _vector(self, index: int, like: torch.Tensor) -> torch.Tensor:
        key = (index, like.dtype, like.device)
        if key not in self._vectors:
            v = self.sae.W_dec[index].detach().float()
            if self.cfg.normalize and self.cfg.method == "additive":
                v = v / v.norm()
            self._vectors[key] = v.to(like.device, like.dtype)
        return self._vectors[key]

    def _raw_vector(self, k: int, vec: SteerVector, like: torch.Tensor) -> torch.Tensor:
        key = ("vector", k, like.dtype, like.device)
        if key not in self._vectors:
            if len(vec.values) != like.shape[-1]:
                raise ValidationError(f"Vector {vec.name!r} has {len(vec.values)} values but the hook's activations "
                                      f"have {like.shape[-1]}: it was built for another model or hook point.")
            self._vectors[key] = torch.tensor(vec.values, dtype=like.dtype, device=like.device)
        return self._vectors[key]

    def _clamp_gain(self, index: int) -> float:
        """1 for `clamp`; 1/d_f for `clamp_exact` (refused when the encoder barely reads the decoder row); 1 on a
        transcoder, whose write never reaches the hook it reads (module doc)."""
        if self.cfg.method != "clamp_exact" or self.transcoder:
            return 1.0
        d = encoder_decoder_overlap(self.sae, index)
        if d < 0.05:
            raise ValidationError(f"clamp_exact cannot steer feature {index}: its encoder reads back only {d:.3f} "
                                  "of its decoder direction (W_dec·W_enc), so the correction would explode. Use "
                                  "clamp instead.")
        return 1.0 / d

    def _span(self, T: int) -> int:
        """Index (within this call's T positions) of the first position to steer; updates the position count.
        With a KV cache a 1-position call continues the sequence; a longer call (prefill, or no cache) starts it."""
        start = self.pos if (T == 1 and self.pos > 0) else 0
        self.pos = start + T
        if self.cfg.positions == "all":
            return 0
        return max(0, min(T, self.prompt_len - start))

    def __call__(self, act: torch.Tensor) -> torch.Tensor:
        x_in = self._input(act)
        first = self._span(act.shape[1])
        if first >= act.shape[1] or not (self.cfg.features or self.cfg.vectors):
            return act
        h = act[:, first:]
        x_in = None if x_in is None else x_in[:, first:]
        keep = None if self.rows is None else self.rows.to(act.device).view(-1, 1, 1)
        scale = 1.0 if self.row_scale is None else self.row_scale.to(act.device, act.dtype).view(-1, 1, 1)
        codes = []
        for f in self.cfg.features:
            c, before = f.strength * scale, h
            if self.cfg.method == "additive":
                h = additive(h, self._vector(f.index, act), c)
            elif self.cfg.method == "orthogonal":
                h = orthogonal(h, self._vector(f.index, act), c)
            elif self.cfg.method == "projection_cap":
                h = projection_cap(h, self._vector(f.index, act), c)
            else:  # clamp: c is [B, 1, 1] or a float; the target activation per row is [B, 1]
                h = clamp_feature(h, self.sae, f.index, c[..., 0] if torch.is_tensor(c) else c, self._gains[f.index],
                                  x_in)
            if x_in is not None:
                step = h - before
                codes.append(self._code_step(step if keep is None else step * keep, f.index))
        for k, vec in enumerate(self.cfg.vectors):
            h = additive(h, self._raw_vector(k, vec, act), vec.strength * scale)
        if keep is not None:
            h = torch.where(keep, h, act[:, first:])
        self._record(h, x_in, codes)
        if first == 0:
            return h
        return torch.cat([act[:, :first], h], dim=1)
