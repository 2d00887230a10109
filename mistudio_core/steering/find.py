"""Find a feature to steer toward a concept: a word, phrase or label → features ranked by how strongly they *write* it.

Choosing features by what they write, not by what they read (issue 25; Arad, Mueller & Belinkov 2025, "SAEs Are
Good for Steering – If You Select the Right Features"): a feature whose top examples peak on " Congress" often does
not make the model say "Congress"; one whose decoder direction pushes the unembedding toward it does.

Alignment (decoder–unembedding): the logit lens on the decoder row, ℓ_f = norm_lin(W_dec[f]) · W_Uᵀ
(`features/logits.py`), read as a z-score of the concept's tokens within the feature's own logit row:

    z_f = (ℓ_f[t] − mean_v ℓ_f[v]) / std_v ℓ_f[v],   maximised over the concept's tokens t

The mean and standard deviation over the vocabulary are exact and cheap without the [d_sae, vocab] product:
mean = d·μ_U and variance = dᵀ Σ_U d, with μ_U, Σ_U the mean and covariance of the unembedding rows. A z-score
(not the raw logit) makes features with large and small decoder norms comparable: it says how far the concept
stands out among everything the feature pushes.

The concept's tokens: each word of the text with and without a leading space and capitalised, each spelling's
first token (a word that splits into pieces is written by writing its first piece first).

At a middle layer the logit lens is only a first guess (the later layers also read the direction; measured on the
built-in model's layer 8: the best z-scores for " war" are ~4, what chance gives over 49k tokens). So the
`N_CANDIDATES` best-aligned features (and every label match) are then *measured*: `PUSH_MULT` × the feature's max
activation × W_dec[f] is added at the last position of a neutral prompt (`PUSH_PROMPT`, the output score's), and
the rise of the log-probability of the concept's tokens at the next position is the feature's "push" (nats): how
strongly adding it makes the model write the concept, through the whole model.

Ranking: push (or z where no push could be measured) + LABEL_BONUS when the feature's label matches the text;
where the extraction stored an output score (`features/scores.py`), the output score is shown beside it. Dead
features (never active in the extraction sample) are left out: there is nothing to steer with.
"""
from __future__ import annotations

import torch

from ..platform.errors import ValidationError

LABEL_BONUS = 2.0       # a label match counts like 2 nats of push
N_WRITES = 8            # logit-lens tokens shown per row ("what the feature writes")
N_CANDIDATES = 48       # best-aligned features whose push is measured (one batched forward)
PUSH_MULT = 10.0        # the output score's push: 10 × max activation × W_dec[f]
PUSH_PROMPT = "From my experience,"
MIN_PIECE = 3           # a spelling's first token counts only if it holds this many characters (or the whole word)


def concept_token_ids(tokenizer, concept: str) -> list[int]:
    """Token ids that writing `concept` starts with (see module doc)."""
    text = (concept or "").strip()
    if not text:
        raise ValidationError("The concept is empty. Type a word or phrase the model should write, e.g. 'war' or "
                              "'thank you'.")
    ids, firsts = set(), set()
    for word in {text, *text.split()}:
        for spelling in {word, word.lower(), word.capitalize(), word.upper()}:
            for variant in (spelling, " " + spelling):
                toks = tokenizer(variant, add_special_tokens=False)["input_ids"]
                piece = tokenizer.decode(toks[:1]).strip() if toks else ""
                if piece:
                    firsts.add(int(toks[0]))
                if piece and (len(toks) == 1 or len(piece) >= min(MIN_PIECE, len(word))):
                    ids.add(int(toks[0]))
    # A small vocabulary splits every spelling into short pieces: then the first pieces are all there is.
    return sorted(ids or firsts)


@torch.no_grad()
def alignment(model, W_dec: torch.Tensor, token_ids: list[int], chunk: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """(z [d_sae], best token id [d_sae]): each feature's largest z-score over `token_ids` (module doc)."""
    from ..features.logits import norm_linear_part
    from ..model.hooks import unwrap

    model = unwrap(model)
    W_U = model.get_output_embeddings().weight.detach().float()
    mu = W_U.mean(0)
    centered = W_U - mu
    cov = centered.T @ centered / W_U.shape[0]                     # [d, d]
    target = W_U[torch.tensor(token_ids, device=W_U.device)]       # [n_tok, d]
    zs, best = [], []
    for start in range(0, W_dec.shape[0], chunk):
        d = norm_linear_part(model, W_dec[start:start + chunk].detach().float().to(W_U.device))
        std = ((d @ cov) * d).sum(-1).clamp_min(1e-12).sqrt()
        z = (d @ target.T - (d @ mu)[:, None]) / std[:, None]      # [chunk, n_tok]
        v, j = z.max(-1)
        zs.append(v.cpu())
        best.append(torch.tensor(token_ids)[j.cpu()])
    return torch.cat(zs), torch.cat(best)


def writes(model, tokenizer, sae, features: list[int], n: int = N_WRITES) -> dict[int, list[str]]:
    """What each feature writes: its top logit-lens tokens (decoder row through the final norm and W_U)."""
    from ..features.logits import decoder_logits
    from ..model.hooks import unwrap

    if not features:
        return {}
    top_ids, _, _, _ = decoder_logits(unwrap(model), sae.W_dec[torch.tensor(features)], n)
    return {f: [tokenizer.decode([int(t)]) for t in row] for f, row in zip(features, top_ids.tolist())}


@torch.no_grad()
def push(model, tokenizer, sae, hook_name: str, features: list[int], token_ids: list[int],
         scales: torch.Tensor, prompt: str = PUSH_PROMPT) -> torch.Tensor:
    """Per feature, log P(concept tokens) at the next position with scales[i] × W_dec[f] added at the prompt's
    last position, minus the unsteered log P: one batched forward, one row per feature (plus the baseline)."""
    from ..model.hooks import intervene
    from .transcoder import read_hook

    read_hook(sae, hook_name)                      # a transcoder writes only at its output hook: refuse elsewhere
    ids = list(tokenizer(prompt)["input_ids"])
    n = len(features)
    vecs = sae.W_dec[torch.tensor(features)].detach().float() * scales.float()[:, None]
    vecs = torch.cat([torch.zeros_like(vecs[:1]), vecs])           # row 0: unsteered

    def add_last(act):
        act = act.clone()
        act[:, -1] += vecs.to(act.device, act.dtype)
        return act

    batch = torch.tensor([ids] * (n + 1), device=next(model.parameters()).device)
    with intervene(model, hook_name, add_last):
        logp = torch.log_softmax(model(input_ids=batch).logits[:, -1].float(), -1)
    concept = logp[:, torch.tensor(token_ids)].logsumexp(-1).cpu()
    return concept[1:] - concept[0]


def _push_scales(model, tokenizer, sae, hook_name: str, features: list[int], max_act) -> torch.Tensor:
    """PUSH_MULT × max activation per feature; without extraction results, a step as long as the residual at the
    push position (‖Δ‖ = ‖h‖ — the size a max-activation push has on trained SAEs of this kind)."""
    if max_act is not None:
        return PUSH_MULT * max_act[torch.tensor(features)].float()
    from ..model.hooks import capture

    ids = torch.tensor([tokenizer(PUSH_PROMPT)["input_ids"]], device=next(model.parameters()).device)
    h_norm = capture(model, ids, [hook_name])[hook_name][0, -1].float().norm()
    return h_norm / sae.W_dec[torch.tensor(features)].detach().float().norm(dim=-1).cpu()


def _output_scores(model, tokenizer, sae, hook_name: str, features: list[int], stats: dict) -> dict:
    """{feature: output score or None}: the extraction's where it stored them, else computed for these few
    features by `features.scores.output_scores` (needs their max activations), else none."""
    stored = stats.get("output_score")
    if stored is not None:
        return {f: (None if stored[f] != stored[f] else float(stored[f])) for f in features}
    max_act = stats.get("max_activation")
    if max_act is None or not features:
        return {}
    from ..features.scores import output_scores

    meta = getattr(getattr(sae, "cfg", None), "metadata", None) or {}
    rows = output_scores(model, sae, hook_name, features, [float(max_act[f]) for f in features], tokenizer=tokenizer,
                         prepend_bos=bool(meta.get("prepend_bos", True)))
    return {r["index"]: r["output_score"] for r in rows}


def find_features(model, tokenizer, sae, hook_name: str, concept: str, stats: dict | None = None,
                  label_hits: list[int] = (), labels: dict | None = None, limit: int = 12) -> dict:
    """Features that write `concept`, best first. `stats` (from `loader.feature_stats`): per-feature tensors
    `max_activation`, `dead` and, when the extraction computed it, `output_score`; `label_hits`: indices whose label
    matches the text (best first); `labels`: {index: label}. Returns `{concept, tokens: [str], rows: [{index, push,
    z, token, label, label_match, output_score, max_activation, writes, rank_score}]}`."""
    ids = concept_token_ids(tokenizer, concept)
    z, best = alignment(model, sae.W_dec, ids)
    stats, labels = stats or {}, labels or {}
    dead = stats.get("dead")
    live_z = z.masked_fill(dead.bool(), float("-inf")) if dead is not None else z
    hits = [int(i) for i in label_hits if dead is None or not bool(dead[int(i)])]
    cand = list(dict.fromkeys(hits + [int(i) for i in live_z.argsort(descending=True)[:N_CANDIDATES]]))
    max_act = stats.get("max_activation")
    pushed = push(model, tokenizer, sae, hook_name, cand, ids, _push_scales(model, tokenizer, sae, hook_name, cand,
                                                                           max_act))
    rank = {f: float(p) + (LABEL_BONUS if f in hits else 0.0) for f, p in zip(cand, pushed)}
    keep = sorted(cand, key=lambda f: -rank[f])[:limit]
    keep += [f for f in hits if f not in keep]       # a feature the user's words name is always listed
    wrote, scores = writes(model, tokenizer, sae, keep), _output_scores(model, tokenizer, sae, hook_name, keep, stats)
    rows = [{"index": i, "push": float(pushed[cand.index(i)]), "z": float(z[i]),
             "token": tokenizer.decode([int(best[i])]), "label": labels.get(i, ""), "label_match": i in hits,
             "output_score": scores.get(i),
             "max_activation": None if max_act is None else float(max_act[i]),
             "writes": wrote[i], "rank_score": rank[i]} for i in keep]
    return {"concept": concept.strip(), "tokens": [tokenizer.decode([t]) for t in ids], "rows": rows}


def fmt_strength(strength: float, max_activation: float | None) -> str:
    """'12.4 (0.50× max act)': a raw strength and, where known, in units of the feature's max activation."""
    if not max_activation:
        return f"{strength:.3g}"
    return f"{strength:.3g} ({strength / max_activation:.2g}× max act)"


def find_one(model, tokenizer, sae, hook_name: str, index: int, stats: dict | None = None,
             labels: dict | None = None) -> dict:
    """`find_features`' answer for one feature typed by index (no concept: push and z are 0)."""
    from .transcoder import read_hook

    read_hook(sae, hook_name)                      # a transcoder writes only at its output hook: refuse elsewhere
    stats, labels = stats or {}, labels or {}
    if not 0 <= index < sae.W_dec.shape[0]:
        raise ValidationError(f"Feature {index} does not exist: this SAE has features 0..{sae.W_dec.shape[0] - 1}.")
    max_act = stats.get("max_activation")
    row = {"index": index, "push": 0.0, "z": 0.0, "token": "", "label": labels.get(index, ""), "label_match": False,
           "output_score": _output_scores(model, tokenizer, sae, hook_name, [index], stats).get(index),
           "max_activation": None if max_act is None else float(max_act[index]),
           "writes": writes(model, tokenizer, sae, [index])[index], "rank_score": 0.0}
    return {"concept": str(index), "tokens": [], "rows": [row]}
