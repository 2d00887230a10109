"""What an SAE *is* (`SAEConfig`) and the names every SAE config shares (architectures, dtypes, hook sites).

`SAEConfig` mirrors SAELens v6's inference config so `io.save_sae` can write it field for field. How to train
one is `train_config.TrainConfig`, whose `sae_config(d_in, hook_name)` gives the `SAEConfig` of one SAE.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

from ..platform.errors import ValidationError
from ..platform.records import from_dict

ARCHITECTURES = ("standard", "topk", "batchtopk", "jumprelu", "matryoshka_batchtopk")
TRAINABLE = ("standard", "topk", "batchtopk", "matryoshka_batchtopk", "jumprelu")
HOOK_OUT = re.compile(r"^(blocks\.\d+\.)?hook_(resid_pre|resid_post|attn_out|mlp_out|mlp_in)$")
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
