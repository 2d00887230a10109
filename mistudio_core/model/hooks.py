"""Hook points with TransformerLens names, mapped onto Hugging Face transformers modules.

Names: ``blocks.{L}.hook_resid_pre | hook_attn_out | hook_mlp_out | hook_resid_post``. Per layer ``L`` (0-based)::

    resid_pre[L]  = input of decoder layer L            (forward pre-hook on the layer)
    attn_out[L]   = what attention adds to the residual (output of the attention module)
    mlp_out[L]    = what the MLP adds to the residual   (output of the MLP module)
    resid_post[L] = output of decoder layer L           (= resid_pre[L+1])

Gemma2/Gemma3 normalise each branch *after* it (``post_attention_layernorm``, ``post_feedforward_layernorm``)
before adding it to the residual, so there attn_out/mlp_out are the outputs of those norms: the tensor that is
actually added, which is what TransformerLens means by the name. GPT-NeoX with parallel residual adds both
branches to the same input, and its attn_out/mlp_out are again the added terms (dropout is identity in eval).

``hidden_states`` from ``output_hidden_states=True`` relate as: ``hidden_states[L] == resid_pre[L]`` and
``hidden_states[L+1] == resid_post[L]`` for ``L < n_layers - 1``; the last entry is after the final norm, so
``hidden_states[-1] == final_norm(resid_post[n_layers - 1])``.

``blocks.{L}.hook_mlp_in`` is what the MLP module reads: its input *after* the pre-MLP norm, the point SAELens's
transcoders call ``blocks.L.ln2.hook_normalized`` (Gemma Scope) or ``blocks.L.mlp.hook_in``; both names are accepted
as aliases of it. (TransformerLens's own ``hook_mlp_in`` is the residual before that norm; an MLP is a function of
its normalised input, so that is what a transcoder should read.) It is not listed by ``hook_points``: the Models
tab lists the four residual/branch sites; hook pickers add it (``with_transcoder_inputs``).

``capture`` stops the forward pass right after the deepest requested hook by raising a private exception from
a hook, so layers above it (and the LM head) are never computed: on a 30-layer model, capturing layer 8 costs
about a third of a full forward.
"""
from __future__ import annotations

import contextlib
import re
import threading
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from torch import nn

from ..platform.errors import ValidationError

SITES = ("resid_pre", "attn_out", "mlp_out", "resid_post")  # in the order they run inside a layer
EXTRA_SITES = ("mlp_in",)  # accepted by parse_hook, not listed by hook_points
_NAME_RE = re.compile(r"^blocks\.(\d+)\.hook_(resid_pre|resid_post|attn_out|mlp_out|mlp_in)$")
_ALIAS_RE = re.compile(r"^blocks\.(\d+)\.(?:ln2\.hook_normalized|mlp\.hook_in)$")  # SAELens transcoders' names
# Where the decoder layers live, tried in order (CausalLM wrappers, multimodal Gemma3, GPT-2, GPT-NeoX).
_LAYER_PATHS = ("model.layers", "model.language_model.layers", "language_model.model.layers",
                "transformer.h", "gpt_neox.layers")
# model_type -> (attn_out module, mlp_out module), both attributes of a decoder layer.
_BRANCHES = {
    **{t: ("self_attn", "mlp") for t in ("llama", "qwen2", "qwen3", "mistral", "gemma", "phi3")},
    **{t: ("post_attention_layernorm", "post_feedforward_layernorm") for t in ("gemma2", "gemma3", "gemma3_text")},
    "gpt2": ("attn", "mlp"),
    "gpt_neox": ("attention", "mlp"),
}

ActFn = Callable[[torch.Tensor], "torch.Tensor | None"]
# Hooks live on the shared (cached) model object, so every thread's forward passes run them. A capture's hooks
# act only in the capturing thread, and an intervention is skipped inside another thread's capture: a training
# job's activations never see a steering hook set from the UI, without any lock (a lock held across a streaming
# generator would be released from a different worker thread, or block training for a whole generation).
_LOCAL = threading.local()


def _capturing_elsewhere(owner: int) -> bool:
    return getattr(_LOCAL, "capturing", 0) > 0 and threading.get_ident() != owner


@dataclass(frozen=True)
class HookPoint:
    layer: int
    """Decoder layer index, 0-based."""
    site: str
    """One of `SITES`."""
    name: str
    """The TransformerLens name, e.g. `blocks.8.hook_resid_post`."""


class _StopForward(Exception):
    """Raised from a hook to end the forward pass once everything requested has been captured."""


def unwrap(model) -> nn.Module:
    """Accept a `LoadedModel` (anything with a `.model` module) as well as the module itself."""
    inner = getattr(model, "model", None)
    if not isinstance(model, nn.Module) and isinstance(inner, nn.Module):
        return inner
    return model


def decoder_layers(model) -> nn.ModuleList:
    model = unwrap(model)
    for path in _LAYER_PATHS:
        try:
            layers = model.get_submodule(path)
        except AttributeError:
            continue
        if isinstance(layers, nn.ModuleList):
            return layers
    raise ValidationError(
        f"Cannot find the decoder layers of {type(model).__name__}: supported layouts are "
        f"{', '.join(_LAYER_PATHS)} (Llama/SmolLM2, Qwen2, Mistral, Gemma 1-3, GPT-2, GPT-NeoX). "
        "Use a model of one of these families."
    )


def _model_type(model) -> str:
    cfg = unwrap(model).config
    return getattr(cfg, "model_type", "") or ""


def _sites(model) -> tuple[str, ...]:
    # Residual hooks work on any layer list; branch hooks need to know which submodule is the branch.
    return SITES if _model_type(model) in _BRANCHES else ("resid_pre", "resid_post")


def d_model(model) -> int:
    cfg = unwrap(model).config
    cfg = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
    for key in ("hidden_size", "n_embd", "d_model"):
        if getattr(cfg, key, None):
            return int(getattr(cfg, key))
    raise ValidationError(f"Cannot tell the hidden size of {type(cfg).__name__}; its config has no hidden_size.")


def is_extra_hook(name: str, n_layers: int) -> bool:
    """`name` is a valid unlisted hook (hook_mlp_in or its SAELens aliases) of a model with `n_layers` layers: for
    checks against a stored `hook_points` list, which holds the listed sites only."""
    m = _NAME_RE.match(str(name).strip()) or _ALIAS_RE.match(str(name).strip())
    listed = m is not None and m.re is _NAME_RE and m.group(2) not in EXTRA_SITES
    return m is not None and not listed and int(m.group(1)) < int(n_layers)


def hook_width(model, name: str) -> int:
    """Width of the activation at hook `name` (every supported site is d_model wide; checked by name first)."""
    parse_hook(model, name)
    return d_model(model)


def hook_points(model) -> list[str]:
    """All hook names of `model`, layer by layer, in execution order."""
    sites = _sites(model)
    return [f"blocks.{layer}.hook_{site}" for layer in range(len(decoder_layers(model))) for site in SITES
            if site in sites]


def with_transcoder_inputs(names: list[str]) -> list[str]:
    """A stored `hook_points` list with `blocks.L.hook_mlp_in` (a transcoder's input, not stored there) just before
    each `blocks.L.hook_mlp_out`: the list hook pickers offer."""
    out = []
    for name in names:
        m = _NAME_RE.match(name)
        if m and m.group(2) == "mlp_out":
            out.append(f"blocks.{m.group(1)}.hook_mlp_in")
        out.append(name)
    return out


def parse_hook(model, name: str) -> HookPoint:
    """Validate `name` against `model`; an unknown name lists the valid ones."""
    n_layers, sites = len(decoder_layers(model)), _sites(model)
    m = _NAME_RE.match(str(name).strip())
    alias = _ALIAS_RE.match(str(name).strip())
    if alias and int(alias.group(1)) < n_layers and "mlp_out" in sites:
        return HookPoint(int(alias.group(1)), "mlp_in", str(name).strip())
    ok = m and (m.group(2) in sites or (m.group(2) in EXTRA_SITES and "mlp_out" in sites))
    if ok and int(m.group(1)) < n_layers:
        return HookPoint(int(m.group(1)), m.group(2), str(name).strip())
    names = hook_points(model)
    shown = ", ".join(names) if len(names) <= 24 else ", ".join(names[:8] + ["..."] + names[-4:])
    raise ValidationError(
        f"Unknown hook point {name!r} for this {_model_type(model) or 'model'} ({n_layers} layers). Use "
        f"blocks.<L>.hook_<site> with L in 0..{n_layers - 1} and site in {{{', '.join(sites)}}}. Valid: {shown}"
    )


def _first(output):
    return output[0] if isinstance(output, tuple) else output


def _replace_first(output, new: torch.Tensor):
    return (new, *output[1:]) if isinstance(output, tuple) else new


def _checked(fn: ActFn, act: torch.Tensor, name: str) -> torch.Tensor | None:
    new = fn(act)
    if new is not None and new.shape != act.shape:
        raise ValidationError(f"The function hooked at {name} returned shape {tuple(new.shape)} for an "
                              f"activation of shape {tuple(act.shape)}; return a tensor of the same shape.")
    return new


def _register(model, point: HookPoint, fn: ActFn, active: Callable[[], bool] = lambda: True):
    """Hook `fn(act) -> replacement or None` at `point`, applied while `active()`; returns the handle."""
    layer = decoder_layers(model)[point.layer]
    if point.site == "resid_pre":  # the layer's input
        return _register_input(layer, point, fn, active)
    if point.site == "mlp_in":  # the MLP module's (normalised) input
        return _register_input(getattr(layer, "mlp"), point, fn, active)
    if point.site == "resid_post":
        module = layer
    else:
        attn, mlp = _BRANCHES[_model_type(model)]
        module = getattr(layer, attn if point.site == "attn_out" else mlp)

    def hook(module, args, output):
        if not active():
            return None
        new = _checked(fn, _first(output), point.name)
        return None if new is None else _replace_first(output, new)
    return module.register_forward_hook(hook)


def _register_input(module, point: HookPoint, fn: ActFn, active: Callable[[], bool]):
    def pre_hook(module, args, kwargs):
        if not active():
            return None
        act = args[0] if args else kwargs["hidden_states"]
        new = _checked(fn, act, point.name)
        if new is None:
            return None
        if args:
            return (new, *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": new}
    return module.register_forward_pre_hook(pre_hook, with_kwargs=True)


def _register_stop(model, points: list[HookPoint], owner: int):
    """Raise `_StopForward` right after the deepest requested hook point has run (in the owner's thread)."""
    deepest = max(p.layer for p in points)
    layer = decoder_layers(model)[deepest]

    def stop(*_args):
        if threading.get_ident() == owner:
            raise _StopForward

    if all(p.site == "resid_pre" for p in points if p.layer == deepest):
        return layer.register_forward_pre_hook(stop)  # layer `deepest` itself is never computed
    return layer.register_forward_hook(stop)


def capture(model, input_ids: torch.Tensor, hook_names, attention_mask: torch.Tensor | None = None,
            ) -> dict[str, torch.Tensor]:
    """Activations `{name: [B, T, d]}` at `hook_names`, running the model only up to the deepest of them."""
    net = unwrap(model)
    names = [hook_names] if isinstance(hook_names, str) else list(dict.fromkeys(hook_names))
    if not names:
        raise ValidationError("No hook points given; pass at least one, e.g. blocks.8.hook_resid_post.")
    points = [parse_hook(net, n) for n in names]
    out: dict[str, torch.Tensor] = {}

    def recorder(name):
        def record(act):
            out[name] = act
        return record

    _LOCAL.capturing = getattr(_LOCAL, "capturing", 0) + 1
    try:
        _forward_with_hooks(net, input_ids, attention_mask, points, recorder)
    finally:
        _LOCAL.capturing -= 1
    missing = [n for n in names if n not in out]
    if missing:
        raise RuntimeError(f"hooks {missing} did not fire during the forward pass of {type(net).__name__}")
    return {n: out[n] for n in names}


def _forward_with_hooks(net, input_ids, attention_mask, points, recorder) -> None:
    owner = threading.get_ident()
    handles = [_register(net, p, recorder(p.name), lambda: threading.get_ident() == owner) for p in points]
    handles.append(_register_stop(net, points, owner))  # registered last, so it runs after the recorders
    try:
        with torch.no_grad():
            net(input_ids=input_ids.to(net.device), use_cache=False,
                attention_mask=None if attention_mask is None else attention_mask.to(net.device))
    except _StopForward:
        pass
    finally:
        for h in handles:
            h.remove()


@contextlib.contextmanager
def intervene(model, hook_name: str, fn: Callable[[torch.Tensor], torch.Tensor]) -> Iterator[None]:
    """While active, the activation `act` [B, T, d] at `hook_name` is replaced by `fn(act)` in every forward
    pass, including each step of `generate` (with a KV cache `T` is the number of new positions, usually 1).
    Nested uses compose in the order they were entered. It applies to every forward pass of the model except
    a `capture` running in another thread (so a training job's data stays clean); a plain `model(...)` in
    another thread does see it."""
    net = unwrap(model)
    owner = threading.get_ident()
    handle = _register(net, parse_hook(net, hook_name), fn, lambda: not _capturing_elsewhere(owner))
    try:
        yield
    finally:
        handle.remove()
