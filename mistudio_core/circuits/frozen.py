"""The model as linear attribution sees it: attention patterns and normalisation scales frozen.

Inside `frozen(model)` the forward values are exactly the model's, but gradients do not flow through

- the attention pattern: each attention call gets `query.detach()` and `key.detach()`, so softmax(QKᵀ) is a
  constant and the layer is linear in its values (circuit-tracer's "frozen attention patterns");
- the denominators of RMSNorm / LayerNorm: the norm's output is replaced by `out + gain·(x − x)` with the gain (or
  the centred, scaled map of LayerNorm) evaluated at this input and detached.

MLP nonlinearities are NOT frozen: with residual-stream SAEs (not transcoders) the MLPs stay in the model, so an
edge is a first-order (gradient × activation) estimate through them, as in Marks et al.'s attribution patching.

How: the attention wrapper is registered once with transformers' `AttentionInterface` and the model's config is
pointed at it while the context is open; the wrapper freezes only in the thread that opened the context and
otherwise calls the implementation the model had (so a steering request in another thread runs unchanged).
"""
from __future__ import annotations

import contextlib
import sys
import threading

import torch
from torch import nn

from ..model.hooks import unwrap

_NAME = "mistudio_frozen"
_LOCK = threading.Lock()  # one frozen attribution at a time per process (the config switch is shared)
_LOCAL = threading.local()
_ORIGINAL: dict[int, str] = {}  # id(config) -> the attention implementation it had


def _delegate(module, name: str):
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    if name == "eager" or name not in ALL_ATTENTION_FUNCTIONS:
        return sys.modules[type(module).__module__].eager_attention_forward  # each modeling file has its own
    return ALL_ATTENTION_FUNCTIONS[name]


def _frozen_attention(module, query, key, value, attention_mask, **kwargs):
    fn = _delegate(module, _ORIGINAL.get(id(module.config), "sdpa"))
    if getattr(_LOCAL, "active", False):
        query, key = query.detach(), key.detach()
    return fn(module, query, key, value, attention_mask, **kwargs)


def _register_attention() -> None:
    from transformers import AttentionInterface

    AttentionInterface.register(_NAME, _frozen_attention)


def _is_norm(module: nn.Module) -> bool:
    return isinstance(module, nn.LayerNorm) or type(module).__name__.endswith("RMSNorm")


def _norm_hook(module, args, kwargs, out):
    if not getattr(_LOCAL, "active", False):
        return None
    x = args[0] if args else kwargs.get("hidden_states", kwargs.get("input"))
    if not isinstance(out, torch.Tensor) or not torch.is_tensor(x) or not x.requires_grad:
        return None
    xd, od = x.detach(), out.detach()
    delta = x - xd  # zero-valued, carries the gradient
    if isinstance(module, nn.LayerNorm):
        sigma = (xd.float().var(-1, unbiased=False, keepdim=True) + module.eps).sqrt().to(x.dtype)
        lin = (delta - delta.mean(-1, keepdim=True)) / sigma
        return od + (lin * module.weight if module.weight is not None else lin)
    # RMSNorm family: out = gain ⊙ x elementwise (gain = weight / rms, or (1 + weight) / rms for Gemma)
    gain = torch.where(xd != 0, od / torch.where(xd != 0, xd, torch.ones_like(xd)), torch.zeros_like(od))
    return od + gain * delta


def _configs(net: nn.Module) -> list:
    cfgs, seen = [], set()
    for m in net.modules():
        cfg = getattr(m, "config", None)
        if cfg is not None and hasattr(cfg, "_attn_implementation") and id(cfg) not in seen:
            seen.add(id(cfg))
            cfgs.append(cfg)
    return cfgs


@contextlib.contextmanager
def frozen(model):
    """Freeze attention patterns and norm scales for gradients taken in this thread (see the module doc)."""
    net = unwrap(model)
    with _LOCK:
        _register_attention()
        cfgs = _configs(net)
        for cfg in cfgs:
            _ORIGINAL[id(cfg)] = cfg._attn_implementation or "sdpa"
            cfg._attn_implementation = _NAME
        handles = [m.register_forward_hook(_norm_hook, with_kwargs=True) for m in net.modules() if _is_norm(m)]
        _LOCAL.active = True
        try:
            yield
        finally:
            _LOCAL.active = False
            for h in handles:
                h.remove()
            for cfg in cfgs:
                cfg._attn_implementation = _ORIGINAL.pop(id(cfg))
