"""Reading a generated text back with the *unsteered* model: perplexity and the SAE's activation of the features.

Two activations go by similar names in steering, and they answer different questions:

- `steered_feature_mean` (recorded by `methods.Steerer` during generation): the SAE's encoding of the steered
  residual at the hook, averaged over the steered positions — "activation in the steered model (at the hook)".
  It shows the intervention itself; under additive steering it rises with the strength by construction.
- `feature_mean` (this module): the SAE's encoding at the hook when the *unsteered* model reads the prompt plus
  the generated text, averaged over the generated positions — "unsteered model reading the output". It asks
  whether the text came to carry the feature; it can stay near 0 while the steering bends the output.

Perplexity = exp(mean negative log-likelihood of the generated tokens given the prompt) under the unsteered
model: how far steering pushed the text from what the model finds natural.
"""
from __future__ import annotations

import math

import torch

STEERED_LABEL = "activation in the steered model (at the hook)"
READ_LABEL = "unsteered model reading the output"


@torch.no_grad()
def score_continuation(model, sae, hook_name: str, prompt_ids: list[int], gen_ids: list[int],
                       features: list[int]) -> dict:
    """Perplexity of `gen_ids` after `prompt_ids` and the SAE activation of `features` over the generated
    positions, both under the model as it is (no steering). Empty continuations score None."""
    from ..hooks import intervene

    if not gen_ids:
        return {"perplexity": None, "feature_mean": {f: None for f in features},
                "feature_max": {f: None for f in features}}
    seen = {}

    def record(act):
        seen["act"] = act
        return act

    ids = torch.tensor([prompt_ids + gen_ids], device=next(model.parameters()).device)
    with intervene(model, hook_name, record):
        logits = model(input_ids=ids).logits[0].float()
    n_p = len(prompt_ids)
    logp = torch.log_softmax(logits[n_p - 1:-1], dim=-1)
    nll = -logp.gather(-1, ids[0, n_p:, None]).mean().item()
    codes = sae.encode(seen["act"][0, n_p:].to(sae.W_dec.dtype))[:, features]
    return {"perplexity": math.exp(min(nll, 50.0)),
            "feature_mean": {f: float(codes[:, i].mean()) for i, f in enumerate(features)},
            "feature_max": {f: float(codes[:, i].max()) for i, f in enumerate(features)}}


def strip_eos(tokens: list[int], eos_ids: set[int]) -> list[int]:
    """Generated tokens without a trailing EOS (which is not text to score)."""
    return tokens[:-1] if tokens and tokens[-1] in eos_ids else list(tokens)
