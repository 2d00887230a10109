"""Evaluate an SAE on held-out contexts: reconstruction metrics and downstream (CE / KL) by splicing.

Reconstruction: activations at the hook are captured (forward stops after the hook's layer) and compared with
the SAE's reconstruction. Downstream: three forward passes per batch — clean, with the hook's activation
replaced by the reconstruction (`hooks.intervene`), and with it zero-ablated — give
CE loss recovered = (CE_zero − CE_spliced) / (CE_zero − CE_clean) and KL(p_clean ‖ p_spliced).
Position 0 (BOS, ~4.6× the typical norm) is excluded from reconstruction metrics when `skip_bos` (the SAE is
trained without it) and always spliced as the clean activation, so CE numbers measure the SAE where it was trained.

Formulas (each result carries its own): EV = 1 − Σ‖x−x̂‖² / Σ‖x−x̄‖²; FVU = 1 − EV; NMSE = Σ‖x−x̂‖² / Σ‖x‖²;
L0 = mean #{i: z_i > 0}; dead = fraction of latents that never fire on the evaluated tokens; CE clean / spliced /
zero-ablated = mean next-token cross-entropy of the model as is / with x̂ at the hook / with 0 at the hook;
CE loss recovered = (CE_zero − CE_spliced) / (CE_zero − CE_clean); KL = mean KL(p_clean ‖ p_spliced).
A transcoder (`sae.cfg.d_out`) is scored on what it writes: x̂ is compared with the activation at its output hook
(`hook_name_out`), and the spliced pass replaces that hook's activation by the transcoder's output computed from
the same pass's input hook (zero-ablation zeroes the output hook), e.g. the MLP output from the MLP's input.
Which contexts to evaluate on (the tokenization's held-out slice) is the caller's choice: see `sae/evals.py`.
"""
from __future__ import annotations

import contextlib
from typing import Callable

import torch
import torch.nn.functional as F

from ..platform.errors import ValidationError
from ..model import hooks
from .metrics import ReconstructionAccumulator, with_formula
from .model import SAE


def _model(loaded):
    """A LoadedModel's model, or the model itself (a causal LM also has a `.model`: the bare decoder)."""
    return loaded if isinstance(loaded, torch.nn.Module) else loaded.model


def evaluate_sae(loaded_model, sae: SAE, hook_name: str, tokens: torch.Tensor, n_contexts: int = 64,
                 batch_size: int = 8, skip_bos: bool = True, downstream: bool = True,
                 progress: Callable[[float, str], None] | None = None,
                 should_stop: Callable[[], bool] | None = None) -> dict | None:
    """Metrics `{name: {"value", "formula"}}` on the first `n_contexts` rows of `tokens` [N, T]; None when
    `should_stop()` turned true between batches."""
    model = _model(loaded_model)
    tokens = torch.as_tensor(tokens[:n_contexts]).long()
    if tokens.ndim != 2 or tokens.shape[0] == 0:
        raise ValidationError(f"tokens must be a non-empty [n_contexts, context_size] grid (got "
                              f"{tuple(tokens.shape)}); tokenize the dataset first.")
    width = hooks.d_model(model)
    if width != sae.cfg.d_in:
        raise ValidationError(f"The SAE reads d_in={sae.cfg.d_in} but {hook_name} of this model has width {width}; "
                              f"evaluate it with the model it was trained on, or pick an SAE trained for this one.")
    acc = ReconstructionAccumulator(sae.cfg.d_sae)
    ce = dict(clean=0.0, spliced=0.0, zero=0.0, kl=0.0, n=0)
    start = 1 if skip_bos else 0
    sae_device = sae.device
    out_hook = sae.cfg.hook_name_out or hook_name
    for i in range(0, tokens.shape[0], batch_size):
        if should_stop is not None and should_stop():
            return None
        batch = tokens[i:i + batch_size]
        with torch.no_grad():
            acts = hooks.capture(model, batch, [hook_name, out_hook])
            x, y = acts[hook_name][:, start:], acts[out_hook][:, start:]
            z = sae.encode(x.to(sae_device))
            acc.add(y, sae.output(x.to(sae_device), z).to(y.device), z)
            if downstream:
                _downstream(model, sae, hook_name, batch, start, ce)
        if progress:
            progress(min(1.0, (i + batch_size) / tokens.shape[0]), f"evaluated {i + len(batch)} contexts")
    out = acc.result()
    if downstream and ce["n"]:
        clean, spliced, zero = (ce[k] / ce["n"] for k in ("clean", "spliced", "zero"))
        denom = zero - clean
        out["ce_clean"] = with_formula("ce_clean", clean)
        out["ce_spliced"] = with_formula("ce_spliced", spliced)
        out["ce_zero_ablated"] = with_formula("ce_zero_ablated", zero)
        out["ce_loss_recovered"] = with_formula("ce_loss_recovered",
                                                (zero - spliced) / denom if abs(denom) > 1e-12 else float("nan"))
        out["kl_divergence"] = with_formula("kl_divergence", ce["kl"] / ce["n"])
    return out


def next_token_logprobs(model, batch: torch.Tensor) -> torch.Tensor:
    device = next(model.parameters()).device
    logits = model(input_ids=batch.to(device), use_cache=False).logits[:, :-1].float()
    return F.log_softmax(logits, dim=-1)


def kl_sum(clean: torch.Tensor, spliced: torch.Tensor) -> float:
    """Σ KL(clean ‖ spliced) over the positions of two next-token log-probability tensors."""
    return float((clean.exp() * (clean - spliced)).sum())


def _ce(logprobs: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
    target = batch[:, 1:].to(logprobs.device)
    return -logprobs.gather(-1, target[..., None]).squeeze(-1).sum()


def _downstream(model, sae: SAE, hook_name: str, batch: torch.Tensor, start: int, acc: dict) -> None:
    out_hook = sae.cfg.hook_name_out or hook_name
    seen = {}

    def record(act):  # a transcoder's input, seen earlier in the same forward pass
        seen["x"] = act

    def splice(act):
        src = seen["x"] if out_hook != hook_name else act
        out = act.clone()
        out[:, start:] = sae(src[:, start:].to(sae.device)).to(act.device, act.dtype)
        return out

    def zero(act):
        out = act.clone()
        out[:, start:] = 0
        return out

    clean = next_token_logprobs(model, batch)
    with contextlib.ExitStack() as stack:
        if out_hook != hook_name:
            stack.enter_context(hooks.intervene(model, hook_name, record))
        stack.enter_context(hooks.intervene(model, out_hook, splice))
        spliced = next_token_logprobs(model, batch)
    with hooks.intervene(model, out_hook, zero):
        zeroed = next_token_logprobs(model, batch)
    acc["clean"] += float(_ce(clean, batch))
    acc["spliced"] += float(_ce(spliced, batch))
    acc["zero"] += float(_ce(zeroed, batch))
    acc["kl"] += kl_sum(clean, spliced)
    acc["n"] += clean.shape[0] * clean.shape[1]
