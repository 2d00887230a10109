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
    positions, both under the model as it is (no steering). Empty continuations score None. The activation is
    the SAE's encoding of the hook it reads (`transcoder.read_hook`: a transcoder's input hook)."""
    from ..model.hooks import intervene
    from .transcoder import read_hook

    if not gen_ids:
        return {"perplexity": None, "feature_mean": {f: None for f in features},
                "feature_max": {f: None for f in features}}
    seen = {}

    def record(act):
        seen["act"] = act
        return act

    ids = torch.tensor([prompt_ids + gen_ids], device=next(model.parameters()).device)
    with intervene(model, read_hook(sae, hook_name), record):
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


# The capability cost's fixed text: plain, neutral expository prose that no steering concept is about. Its perplexity
# under the steered model says what a strength costs the model's ordinary language, beside the steered output's.
CAPABILITY_TEXT = ("The river begins in the hills north of the town and flows south for about forty miles before "
                   "it reaches the sea. In the spring, melting snow raises the water level, and the low fields "
                   "along its banks are often flooded. Farmers in the valley grow wheat and barley, and many "
                   "families have lived there for several generations. A small museum near the old bridge tells "
                   "the history of the region, from the first settlers to the building of the railway.")
CAPABILITY_LABEL = "capability cost: perplexity of a fixed held-out text under the same steering"


@torch.no_grad()
def steered_text_perplexity(model, sae, hook_name: str, steering, text_ids: list[int],
                            scales: list[float]) -> list[float]:
    """Perplexity of `text_ids` (teacher-forced) under `steering` with every strength multiplied by each of
    `scales` (one batch row per scale; scale 0 is the unsteered model). The steering covers every position, as
    `positions="all"` would: the question is what the model can still predict while it is being pushed."""
    from .methods import Steerer, SteeringConfig
    from .transcoder import steer

    if len(text_ids) < 2:
        return [None] * len(scales)
    cfg = SteeringConfig(features=steering.features, method=steering.method, normalize=steering.normalize,
                         positions="all", vectors=steering.vectors)
    steerer = Steerer(cfg, sae, row_scale=torch.tensor([float(s) for s in scales]))
    ids = torch.tensor([text_ids] * len(scales), device=next(model.parameters()).device)
    with steer(model, hook_name, steerer):
        logits = model(input_ids=ids).logits.float()
    nll = -torch.log_softmax(logits[:, :-1], -1).gather(-1, ids[:, 1:, None])[..., 0].mean(-1)
    return [math.exp(min(float(x), 50.0)) for x in nll]
