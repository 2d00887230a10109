"""Input and output scores of SAE features (Arad, Mueller & Belinkov 2025, "SAEs Are Good for Steering – If You
Select the Right Features"): does a feature *read* the tokens its decoder direction writes, and does adding it make
the model *write* them?

    lens[f]         = the 20 tokens with the largest norm_lin(W_dec[f]) @ W_U.T   (`logits.decoder_logits`)
    input_score[f]  = share of f's top-activating examples whose peak token is in lens[f]
    output_score[f] = (1 − r / |V|) · p, where, after adding 10 · max_act[f] · W_dec[f] at the hook, at the last
                      position of a neutral prompt ("From my experience,"), r = the best rank of a lens[f] token
                      among all |V| next-token logits (0 = the top one) and p = the largest probability of a
                      lens[f] token (both belong to the same token: the lens token with the highest logit).

Cost: the steering only changes the prompt's last position, and attention is causal, so the earlier positions'
keys and values are the unsteered ones for every feature. The prompt runs once (a KV cache of all but its last
token, and the residual entering the hook's layer at the last token); then each batch of B features is one
forward of B rows × 1 token through the hook's layer and the layers after it (each row steered by its own
feature), on a shallow copy of the model that shares its weights. The model object itself is never modified, so
other threads using it are unaffected, and steering hooks set by other threads are not applied here.
"""
from __future__ import annotations

import copy
import math
from typing import Callable

import torch
from torch import nn

from ..platform.errors import ValidationError
from ..model.hooks import _LOCAL, _BRANCHES, _model_type, capture, decoder_layers, parse_hook, unwrap
from .logits import decoder_logits

NEUTRAL_PROMPT = "From my experience,"
LENS_TOKENS = 20
STEER_SCALE = 10.0
MAX_LOGIT_ELEMENTS = 1 << 26  # rows × vocabulary of one batch's logits (256 MB fp32): 1,024 rows at 49k tokens
DEAD_WHY = "dead feature (never fired): no examples to read, no activation to steer with"


def input_scores(peak_tokens: torch.Tensor, lens_ids: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """Share of each feature's top examples whose peak token is one of its lens tokens, `[F]` float32; NaN for a
    feature without examples. `peak_tokens [F, k]` (-1 = empty slot), `lens_ids [F, n]`."""
    out = torch.empty(peak_tokens.shape[0], dtype=torch.float32)
    for s in range(0, len(out), chunk):  # [chunk, k, n] comparisons at a time, whatever the width
        peaks, lens = peak_tokens[s:s + chunk].long(), lens_ids[s:s + chunk].long().to(peak_tokens.device)
        hit = (peaks[:, :, None] == lens[:, None, :]).any(-1) & (peaks >= 0)
        n = (peaks >= 0).sum(1)
        out[s:s + chunk] = torch.where(n > 0, hit.sum(1) / n.clamp_min(1), torch.nan).float().cpu()
    return out


def prompt_ids(tokenizer, prompt: str = NEUTRAL_PROMPT, prepend_bos: bool = True) -> torch.Tensor:
    """`[1, P]` ids of the neutral prompt, the start token first when `prepend_bos` (as in the SAE's training
    contexts) and the tokenizer has one."""
    ids = list(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    bos = getattr(tokenizer, "bos_token_id", None)
    if prepend_bos and bos is not None and (not ids or ids[0] != bos):
        ids = [bos] + ids
    if not ids:
        raise ValidationError(f"The output-score prompt {prompt!r} has no tokens; give a short neutral prompt "
                              f"such as {NEUTRAL_PROMPT!r}.")
    return torch.tensor([ids])


def _first(out):
    return out[0] if isinstance(out, tuple) else out


def _with_first(out, new):
    return (new, *out[1:]) if isinstance(out, tuple) else new


class _AddOut(nn.Module):
    """A branch module (attention or MLP of the hook's layer) whose output gets `delta` added."""

    def __init__(self, inner: nn.Module, delta: torch.Tensor):
        super().__init__()
        self.inner, self.delta = inner, delta

    def forward(self, *args, **kwargs):
        out = self.inner(*args, **kwargs)
        return _with_first(out, _first(out) + self.delta)


class _Entry(nn.Module):
    """The hook's layer as the first layer run: its input is the prompt's residual at the last token (whatever the
    embedding produced), and each row's `delta` is added at the hook site (input, branch output or output)."""

    def __init__(self, layer: nn.Module, h_in: torch.Tensor, delta: torch.Tensor, site: str, branch: str | None):
        super().__init__()
        self.h_in, self.delta, self.site = h_in, delta, site
        if branch is not None:  # a copy of the layer whose branch module adds delta; the layer itself is shared
            layer = copy.copy(layer)
            layer._modules = dict(layer._modules)
            layer._modules[branch] = _AddOut(layer._modules[branch], delta)
        self.inner = layer

    def __getattr__(self, name):  # the model's forward may read layer attributes (e.g. `attention_type`)
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["inner"], name)

    def forward(self, *args, **kwargs):
        h = self.h_in.expand(self.delta.shape[0], 1, -1)
        if self.site == "resid_pre":
            h = h + self.delta
        if args:
            args = (h, *args[1:])
        else:
            kwargs["hidden_states"] = h
        out = self.inner(*args, **kwargs)
        return _with_first(out, _first(out) + self.delta) if self.site == "resid_post" else out


def _from_layer(net: nn.Module, start: int, entry: nn.Module) -> nn.Module:
    """A shallow copy of `net` whose layer list is `[entry] + layers[start + 1:]` (weights shared, `net` as is)."""
    layers = decoder_layers(net)
    path = next(name for name, m in net.named_modules() if m is layers)
    parts = path.split(".")
    top = copy.copy(net)
    top._modules = dict(net._modules)
    parent = top
    for part in parts[:-1]:
        child = copy.copy(parent._modules[part])
        child._modules = dict(child._modules)
        parent._modules[part] = child
        parent = child
    parent._modules[parts[-1]] = nn.ModuleList([entry, *list(layers)[start + 1:]])
    cfg = getattr(parent, "config", None)
    if isinstance(getattr(cfg, "layer_types", None), (list, tuple)):  # read by position (Gemma3: sliding/full)
        cfg = copy.copy(cfg)
        cfg.layer_types = list(cfg.layer_types)[start:]
        parent.config = cfg
    return top


class _Prompt:
    """The prompt run once: the KV cache of all but its last token and the residual entering the hook's layer at
    the last token."""

    def __init__(self, net: nn.Module, ids: torch.Tensor, layer: int):
        ids = ids.to(net.device)
        self.last = ids[:, -1:]
        self.h_in = capture(net, ids, [f"blocks.{layer}.hook_resid_pre"])[f"blocks.{layer}.hook_resid_pre"][:, -1:]
        self.prefix = None
        if ids.shape[1] > 1:
            with torch.no_grad():
                self.prefix = net(input_ids=ids[:, :-1], use_cache=True).past_key_values

    def cache(self, rows: int):
        """A fresh copy of the prefix's cache for `rows` rows. (Not one reused and cropped: the layers below the
        hook never run here, so cropping every layer back would cut a real token from theirs.)"""
        if self.prefix is None:
            return None
        c = copy.deepcopy(self.prefix)
        c.batch_repeat_interleave(rows)
        return c


@torch.no_grad()
def output_score_tensors(model, sae, hook_name: str, feature_ids, max_acts, lens_ids: torch.Tensor, tokenizer,
                         prompt: str = NEUTRAL_PROMPT, scale: float = STEER_SCALE, batch_size: int | None = None,
                         prepend_bos: bool = True, progress: Callable[[float, str], None] | None = None,
                         should_stop: Callable[[], bool] | None = None) -> dict[str, torch.Tensor] | None:
    """`{output_score, output_prob, output_rank, output_token}` for `feature_ids` (each `[n]`; score and prob NaN,
    rank and token -1 where max_act ≤ 0). `lens_ids [n, m]` are each feature's lens tokens. None if stopped.
    `batch_size` None: as many rows as keep one batch's logits under MAX_LOGIT_ELEMENTS (at most 1,024; big
    batches matter on a CPU, where small ones spend more time per row in per-layer overhead than in matmuls)."""
    net = unwrap(model)
    point = parse_hook(net, hook_name)
    branch = None
    if point.site in ("attn_out", "mlp_out"):
        attn, mlp = _BRANCHES[_model_type(net)]
        branch = attn if point.site == "attn_out" else mlp
    ids = torch.as_tensor(list(feature_ids), dtype=torch.long)
    acts = torch.as_tensor(max_acts, dtype=torch.float32).flatten()
    n = len(ids)
    out = {"output_score": torch.full((n,), torch.nan), "output_prob": torch.full((n,), torch.nan),
           "output_rank": torch.full((n,), -1, dtype=torch.long),
           "output_token": torch.full((n,), -1, dtype=torch.long)}
    live = torch.nonzero(acts > 0).flatten()
    if not len(live):
        return out
    dtype = next(net.parameters()).dtype
    if batch_size is None:
        batch_size = max(16, min(1024, MAX_LOGIT_ELEMENTS // net.get_output_embeddings().weight.shape[0]))
    _LOCAL.capturing = getattr(_LOCAL, "capturing", 0) + 1  # other threads' steering hooks skip this forward
    try:
        run = _Prompt(net, prompt_ids(tokenizer, prompt, prepend_bos), point.layer)
        for s in range(0, len(live), batch_size):
            if should_stop and should_stop():
                return None
            rows = live[s:s + batch_size]
            dirs = sae.W_dec[ids[rows].to(sae.W_dec.device)].detach().to(net.device, torch.float32)
            delta = (scale * acts[rows].to(net.device)[:, None] * dirs).to(dtype)[:, None, :]
            entry = _Entry(decoder_layers(net)[point.layer], run.h_in, delta, point.site, branch)
            cache = run.cache(len(rows))
            logits = _from_layer(net, point.layer, entry)(
                input_ids=run.last.expand(len(rows), 1), past_key_values=cache, use_cache=cache is not None,
            ).logits[:, -1].float()
            del cache
            _score_rows(out, rows, logits, lens_ids[rows].to(logits.device))
            if progress:
                progress(min(s + batch_size, len(live)) / len(live), "output scores")
    finally:
        _LOCAL.capturing -= 1
    return out


def _score_rows(out: dict, rows: torch.Tensor, logits: torch.Tensor, lens: torch.Tensor) -> None:
    """Fill `out[...][rows]` from the steered next-token `logits [B, V]`: the lens token with the highest logit
    has both the best rank and the largest probability of the lens tokens."""
    V = logits.shape[1]
    lens_logits = logits.gather(1, lens.long())
    best, j = lens_logits.max(1)
    rank = (logits > best[:, None]).sum(1)
    prob = torch.exp(best - torch.logsumexp(logits, 1))
    out["output_rank"][rows] = rank.cpu()
    out["output_prob"][rows] = prob.cpu()
    out["output_token"][rows] = lens.gather(1, j[:, None])[:, 0].long().cpu()
    out["output_score"][rows] = ((1 - rank.double() / V) * prob.double()).float().cpu()


def output_scores(model, sae, hook_name: str, feature_ids, max_acts, *, tokenizer=None, prompt: str = NEUTRAL_PROMPT,
                  scale: float = STEER_SCALE, n_lens: int = LENS_TOKENS, batch_size: int | None = None,
                  prepend_bos: bool | None = None) -> list[dict]:
    """Output scores of a few features, for callers without extraction scores (e.g. steering's "find a feature").

    `model`: a loaded model (`.model` + `.tokenizer`) or a transformers model with `tokenizer=`; `max_acts`: each
    feature's max activation (the steering strength is `scale` × it). `prepend_bos` None: the SAE's
    `metadata["prepend_bos"]` (default True). Returns one dict per feature, in order: `{index, output_score,
    output_rank, output_prob, output_token_id, output_token, lens_token_ids, lens_tokens, why}` (`output_*` None
    and `why` saying so for a dead feature)."""
    tokenizer = tokenizer if tokenizer is not None else getattr(model, "tokenizer", None)
    if tokenizer is None:
        raise ValidationError("output_scores needs the model's tokenizer: pass a loaded model or tokenizer=.")
    ids = [int(i) for i in feature_ids]
    acts = [float(a) for a in max_acts]
    if len(acts) != len(ids) or any(not 0 <= i < sae.W_dec.shape[0] for i in ids):
        raise ValidationError(f"Give one max activation per feature and feature ids in 0..{sae.W_dec.shape[0] - 1}.")
    if any(not math.isfinite(a) for a in acts):
        raise ValidationError("Max activations must be finite numbers (a NaN or infinity cannot set a strength).")
    if prepend_bos is None:
        prepend_bos = bool((getattr(sae.cfg, "metadata", None) or {}).get("prepend_bos", True))
    lens = decoder_logits(unwrap(model), sae.W_dec[ids], n_lens)[0] if ids else torch.zeros((0, n_lens))
    t = output_score_tensors(model, sae, hook_name, ids, acts, lens, tokenizer, prompt, scale, batch_size, prepend_bos)
    rows = []
    for j, i in enumerate(ids):
        ok = bool(t["output_rank"][j] >= 0)
        tok = int(t["output_token"][j])
        rows.append({"index": i, "output_score": float(t["output_score"][j]) if ok else None,
                     "output_rank": int(t["output_rank"][j]) if ok else None,
                     "output_prob": float(t["output_prob"][j]) if ok else None,
                     "output_token_id": tok if ok else None, "output_token": tokenizer.decode([tok]) if ok else None,
                     "lens_token_ids": lens[j].tolist(), "lens_tokens": [tokenizer.decode([x]) for x in lens[j]],
                     "why": None if ok else DEAD_WHY})
    return rows


def extraction_scores(loaded_model, sae, hook_name: str, lens_ids: torch.Tensor, peak_tokens: torch.Tensor,
                      max_acts: torch.Tensor, enabled: bool = True, stopped: bool = False,
                      should_stop: Callable[[], bool] | None = None) -> tuple[dict[str, torch.Tensor], dict]:
    """The scores `extract_features` stores: `(tensors, meta)`. Tensors (all `[F]` but `lens_ids [F, 20]`):
    `input_score, output_score, output_prob` (NaN = none), `output_rank, output_token` (-1 = none); meta says
    whether they were computed and, if not, why (scores off, or the extraction was stopped early)."""
    meta = {"computed": False, "prompt": NEUTRAL_PROMPT, "scale": STEER_SCALE, "n_lens": int(lens_ids.shape[1]),
            "dead": DEAD_WHY}
    if not enabled or stopped:
        meta["why"] = ("not computed: the extraction ran with scores off (ExtractConfig.scores)" if not enabled
                       else "not computed: the extraction was stopped before the scores")
        return {}, meta
    prepend = bool((getattr(sae.cfg, "metadata", None) or {}).get("prepend_bos", True))
    out = output_score_tensors(loaded_model.model, sae, hook_name, range(len(max_acts)), max_acts, lens_ids,
                               loaded_model.tokenizer, prepend_bos=prepend, should_stop=should_stop)
    if out is None:
        meta["why"] = "not computed: the extraction was stopped before the scores"
        return {}, meta
    meta.update(computed=True, why=None, prepend_bos=prepend)
    tensors = {"lens_ids": lens_ids.int(), "input_score": input_scores(peak_tokens, lens_ids),
               **{k: v.int() if v.dtype == torch.long else v for k, v in out.items()}}
    return tensors, meta
