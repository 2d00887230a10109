"""Transcoders: an SAE that reads one hook and reconstructs another (Dunefsky et al. 2024; sparsify's `transcode`),
optionally with a linear skip term W_skip·x (skip transcoders, Paulo et al. 2025). Any registered architecture
becomes one with `SAEConfig.d_out` (+ `metadata["hook_name_out"]`, `skip_connection`); `TrainConfig.hook_out`
and `skip_transcoder` build such configs. The usual pair is `blocks.L.hook_mlp_in` → `blocks.L.hook_mlp_out`.

SAELens names (6.54): ReLU "transcoder" / "skip_transcoder", JumpReLU "jumprelu_transcoder" /
"jumprelu_skip_transcoder", with `d_out` at the top level of cfg.json, `hook_name_out` in its metadata, W_dec
[d_sae, d_out], b_dec [d_out], W_skip [d_out, d_in], and never apply_b_dec_to_input. BatchTopK and Matryoshka
transcoders are saved as JumpReLU ones with their threshold. SAELens has no TopK transcoder: ours is written as
"topk_transcoder" / "topk_skip_transcoder", which SAELens refuses by name rather than loading as something else.
"""
from __future__ import annotations

from ...platform.errors import ValidationError

_BASE = {"standard": "", "jumprelu": "jumprelu_", "topk": "topk_"}


def saved_name(cfg) -> str:
    """The cfg.json architecture an SAE of `cfg` is saved as (batchtopk → jumprelu, transcoders suffixed)."""
    from . import get

    base = get(cfg.architecture).saved_as
    if cfg.d_out is None:
        return base
    return f"{_BASE[base]}{'skip_' if cfg.skip_connection else ''}transcoder"


def parse_name(name: str) -> tuple[str, bool, bool]:
    """(our architecture, is a transcoder, has a skip term) of a cfg.json architecture name."""
    if not name.endswith("transcoder"):
        return name, False, False
    rest = name[:-len("transcoder")]
    skip = rest.endswith("skip_")
    rest = rest[:-len("skip_")] if skip else rest
    arch = {v: k for k, v in _BASE.items()}.get(rest)
    if arch is None:
        raise ValidationError(f"Transcoder architecture {name!r} is not supported; supported: transcoder, "
                              "skip_transcoder, jumprelu_transcoder, jumprelu_skip_transcoder, topk_transcoder.")
    return arch, True, skip


def capture_hooks(hook_names: list[str], configs) -> list[str]:
    """The hooks a training must capture: its own, plus every transcoder's output hook (in order, once)."""
    outs = [c.hook_name_out for c in configs if c.d_out is not None]
    return list(dict.fromkeys([*hook_names, *outs]))


def check_hooks(model, configs, model_id: str | None = None) -> None:
    """Before any work: each transcoder's two hooks exist on `model` and have the widths its config says (the
    SAEConfig itself refuses d_in != d_out). A hook named for another model (metadata model_name_out, or a layer
    this model does not have) is refused naming both."""
    from ...model import hooks

    for c in configs:
        if c.d_out is None:
            continue
        hin, hout = c.hook_name, c.hook_name_out
        if not hout:
            raise ValidationError("A transcoder needs metadata hook_name_out (the hook it reconstructs), e.g. "
                                  "blocks.8.hook_mlp_out; set train.hook_out.")
        other = c.metadata.get("model_name_out")
        if other and other != c.metadata.get("model_name", model_id):
            raise ValidationError(f"The transcoder reads {hin} of {c.metadata.get('model_name', model_id)} but "
                                  f"writes {hout} of {other}; both hooks must belong to one model.")
        for name in (hin, hout):
            try:
                hooks.parse_hook(model, name)
            except ValidationError as e:
                raise ValidationError(f"Transcoder hook {name} does not belong to this model"
                                      f"{f' ({model_id})' if model_id else ''}: {e}") from None
        width = hooks.hook_width(model, hin), hooks.hook_width(model, hout)
        if width[0] != width[1] or width != (c.d_in, c.d_out):
            raise ValidationError(f"The transcoder reads {hin} (width {width[0]}) and writes {hout} (width "
                                  f"{width[1]}); its config says d_in={c.d_in}, d_out={c.d_out}. Pick two hooks of "
                                  "the same width on this model.")
