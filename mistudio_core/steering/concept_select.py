"""Which SAE features make the model *write* a concept: candidates chosen by their own measured output effect.

`concept.py`'s decomposition says which features *carry* the concept vector (Δ activation × alignment with v). On
the built-in model those are mostly features that *read* the concept (shouted text), and steering with them at a
fluent strength did not make the model shout (issue 25: 3.5% capitals where the raw vector gave 67%). Here features
are chosen by what adding them does, judged against what adding the vector itself does:

    Δp_x = softmax(model(text; h + s·x)) − softmax(model(text; h))      at every position of the measurement texts

for x = the vector v, and for each candidate f its decoder direction at the vector's length, ŵ_f·‖v‖ (s =
`MEASURE_SCALE`, a strength where the vector already changes the text). A feature's **push** = ⟨Δp_f, Δp_v⟩ /
⟨Δp_v, Δp_v⟩: the share of the vector's effect on the next-token distributions that the feature reproduces alone
(1 = all of it, 0 = unrelated, < 0 = the opposite). The `N_WRITERS` features with the largest positive push are
kept, and their strengths c ≥ 0 fit the vector's effect *together* (non-negative least squares on their Δp's): so
multiplier 1 means "as much as the vector", and the concept sweep scales the group as it scales the vector.

Candidates: the `N_CANDIDATES` live features whose decoder direction is best aligned with v (cosine), plus the
decomposition's list. Measurement texts: the first `N_TEXTS` contrast examples (plain sentences the concept should
change), every position steered, as concept steering does (`positions="all"`).
"""
from __future__ import annotations

import torch

from .transcoder import read_hook

N_CANDIDATES = 48
N_WRITERS = 6
N_TEXTS = 8
MEASURE_SCALE = 0.75
_CHUNK = 16             # candidates per forward (rows); with a 49k vocabulary ~50 MB of probabilities per text


@torch.no_grad()
def _dprobs(model, hook_name: str, ids: list[int], dirs: torch.Tensor) -> torch.Tensor:
    """Δp [R, T, V]: next-token probabilities with dirs[r] added at every position, minus the unsteered ones."""
    from ..model.hooks import intervene

    device = next(model.parameters()).device
    add = torch.cat([torch.zeros_like(dirs[:1]), dirs]).to(device)

    def fn(act):
        return act + add[:, None, :].to(act.dtype)

    with intervene(model, hook_name, fn):
        p = torch.softmax(model(input_ids=torch.tensor([ids] * len(add), device=device)).logits.float(), -1)
    return (p[1:] - p[0]).cpu()


def nnls(G: torch.Tensor, b: torch.Tensor, sweeps: int = 200) -> torch.Tensor:
    """argmin_{c ≥ 0} cᵀGc − 2bᵀc (least squares from its Gram matrix G and right side b), by coordinate descent:
    a handful of unknowns, so exact enough and dependency-free."""
    c = torch.zeros_like(b)
    for _ in range(sweeps):
        for i in range(len(b)):
            if G[i, i] > 0:
                c[i] = torch.clamp((b[i] - G[i] @ c + G[i, i] * c[i]) / G[i, i], min=0.0)
    return c


def measure_pushes(model, tokenizer, sae, hook_name: str, vector, texts: list[str], extra=(), dead=None,
                   n_candidates: int = N_CANDIDATES, scale: float = MEASURE_SCALE) -> dict:
    """Every candidate's push (module doc): `{candidates: [index], push: [float], cosine: [float]}`, best push
    first. `dead` (bool [d_sae]) are left out; `extra` are candidates measured whatever their cosine."""
    read_hook(sae, hook_name)                      # a transcoder writes only at its output hook: refuse elsewhere
    v = torch.as_tensor(vector, dtype=torch.float32)
    W = sae.W_dec.detach().float().cpu()
    cos = W @ v / (W.norm(dim=-1) * v.norm()).clamp_min(1e-12)
    ranked = cos.masked_fill(dead.bool().cpu(), float("-inf")) if dead is not None else cos
    cand = list(dict.fromkeys([int(i) for i in ranked.argsort(descending=True)[:n_candidates]] +
                              [int(i) for i in extra if dead is None or not bool(dead[int(i)])]))
    unit = W[cand] / W[cand].norm(dim=-1, keepdim=True).clamp_min(1e-12) * v.norm()
    dots, vv = torch.zeros(len(cand)), 0.0
    for ids in _ids(tokenizer, texts):
        for s in range(0, len(cand), _CHUNK):
            dp = _dprobs(model, hook_name, ids, scale * torch.cat([v[None], unit[s:s + _CHUNK]]))
            vv += float((dp[0] ** 2).sum()) if s == 0 else 0.0
            dots[s:s + _CHUNK] += (dp[1:] * dp[0]).sum((-1, -2))
    push = dots / vv if vv > 0 else torch.zeros(len(cand))
    order = push.argsort(descending=True).tolist()
    return {"candidates": [cand[j] for j in order], "push": [float(push[j]) for j in order],
            "cosine": [float(cos[cand[j]]) for j in order]}


def _ids(tokenizer, texts: list[str]) -> list[list[int]]:
    return [list(tokenizer(t)["input_ids"]) for t in texts[:N_TEXTS]]


def fit_strengths(model, tokenizer, sae, hook_name: str, vector, texts: list[str], features: list[int],
                  scale: float = MEASURE_SCALE) -> list[float]:
    """Strengths c ≥ 0 of `features` whose summed effect best matches the vector's (module doc), in raw units for
    multiplier 1 (0 for a feature the fit drops)."""
    read_hook(sae, hook_name)
    v = torch.as_tensor(vector, dtype=torch.float32)
    W = sae.W_dec.detach().float().cpu()[torch.tensor(features)]
    unit = W / W.norm(dim=-1, keepdim=True).clamp_min(1e-12) * v.norm()
    G, b = torch.zeros(len(features), len(features)), torch.zeros(len(features))
    for ids in _ids(tokenizer, texts):
        dp = _dprobs(model, hook_name, ids, scale * torch.cat([v[None], unit]))
        flat = dp[1:].flatten(1)
        G += flat @ flat.T
        b += flat @ dp[0].flatten()
    c = nnls(G, b)
    return [float(c[i] * v.norm() / W[i].norm()) for i in range(len(features))]


def select_writers(model, tokenizer, sae, hook_name: str, vector, texts: list[str], extra=(), dead=None,
                   n_writers: int = N_WRITERS, scale: float = MEASURE_SCALE) -> list[dict]:
    """The features that write the concept, best push first: `[{index, push, cosine, strength}]` (module doc);
    `strength` is the feature's part of "as much as the vector" (multiplier 1)."""
    m = measure_pushes(model, tokenizer, sae, hook_name, vector, texts, extra, dead, scale=scale)
    keep = [j for j in range(min(n_writers, len(m["push"]))) if m["push"][j] > 0]
    if not keep:
        return []
    feats = [m["candidates"][j] for j in keep]
    strengths = fit_strengths(model, tokenizer, sae, hook_name, vector, texts, feats, scale)
    return [{"index": f, "push": m["push"][j], "cosine": m["cosine"][j], "strength": c}
            for f, j, c in zip(feats, keep, strengths) if c > 0]
