"""Held-out scores of several SAEs on one text, the model's shared work done once (for bench/bench_arch.py).

`sae.evaluate.evaluate_sae` runs, per SAE and batch, a capture to the hook and three full forwards (clean, spliced,
zero-ablated). Across SAEs at the same hook only the spliced forward differs, so an `EvalSet` captures the hook's
activations once (explained variance, L0 and dead share then cost one SAE encode) and computes the clean and
zero-ablated next-token losses once; per SAE one spliced forward per CE context remains. Same formulas as
evaluate_sae (`ReconstructionAccumulator`; CE recovered = (CE_zero − CE_spliced) / (CE_zero − CE_clean), BOS left
out and never spliced); CE can read fewer contexts than EV (`n_ce`) where the model is slow.
"""
from __future__ import annotations

import contextlib

import torch

from mistudio_core.model import hooks
from mistudio_core.sae.evaluate import next_token_logprobs
from mistudio_core.sae.metrics import ReconstructionAccumulator


def _ce_sum(model, batch: torch.Tensor) -> float:
    logprobs = next_token_logprobs(model, batch)
    return float(-logprobs.gather(-1, batch[:, 1:, None].to(logprobs.device)).sum())


class EvalSet:
    def __init__(self, loaded, hook: str, out_hook: str, tokens: torch.Tensor, n: int, n_ce: int,
                 batch_size: int = 8):
        self.model, self.hook, self.out_hook = loaded.model, hook, out_hook
        tokens = torch.as_tensor(tokens[:max(n, n_ce)]).long()
        self.acts = []  # (input [b, T-1, d], target [b, T-1, d]) per batch, BOS left out
        with torch.no_grad():
            for i in range(0, min(n, len(tokens)), batch_size):
                a = hooks.capture(self.model, tokens[i:i + batch_size], [hook, out_hook])
                self.acts.append((a[hook][:, 1:].float(), a[out_hook][:, 1:].float()))
            self.ce_batches = [tokens[i:i + batch_size] for i in range(0, min(n_ce, len(tokens)), batch_size)]
            self.clean = sum(_ce_sum(self.model, b) for b in self.ce_batches)
            with hooks.intervene(self.model, out_hook, self._zero):
                self.zero = sum(_ce_sum(self.model, b) for b in self.ce_batches)
        self.n_contexts, self.n_ce = min(n, len(tokens)), min(n_ce, len(tokens))

    @staticmethod
    def _zero(act):
        out = act.clone()
        out[:, 1:] = 0
        return out

    def score(self, sae) -> dict:
        """{"explained_variance", "l0", "dead_fraction", ..., "ce_loss_recovered"} of one SAE."""
        acc = ReconstructionAccumulator(sae.cfg.d_sae)
        with torch.no_grad():
            for x, y in self.acts:
                z = sae.encode(x.to(sae.device))
                acc.add(y, sae.output(x.to(sae.device), z).to(y.device), z)
            spliced = sum(self._spliced(sae, b) for b in self.ce_batches)
        out = {k: v["value"] for k, v in acc.result().items()}
        denom = self.zero - self.clean
        out["ce_loss_recovered"] = (self.zero - spliced) / denom if abs(denom) > 1e-12 else float("nan")
        return out

    def _spliced(self, sae, batch) -> float:
        seen = {}

        def record(act):  # a transcoder's input, seen earlier in the same forward pass
            seen["x"] = act

        def splice(act):
            src = seen["x"] if self.out_hook != self.hook else act
            out = act.clone()
            out[:, 1:] = sae(src[:, 1:].to(sae.device)).to(act.device, act.dtype)
            return out

        with contextlib.ExitStack() as stack:
            if self.out_hook != self.hook:
                stack.enter_context(hooks.intervene(self.model, self.hook, record))
            stack.enter_context(hooks.intervene(self.model, self.out_hook, splice))
            return _ce_sum(self.model, batch)
