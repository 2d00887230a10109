"""Did steering put the feature's own tokens into the text, and how hard can one push before the text breaks?

Steering effect: the share of generated tokens that are among the feature's top-activating tokens, for the
unsteered baseline and at each strength. The token set comes from, in order of preference:

1. the feature's extraction results (`features/results.py`): the tokens its top examples peak on, most frequent
   first ("extraction top examples") — what the feature actually reads;
2. otherwise the tokens whose unembedding aligns best with W_dec[f] through the final norm's gain
   (`features/logits.py`, "unembedding alignment") — what the direction pushes the logits towards.

Tokens are compared by their text, stripped and lower-cased (" Congress", "Congress" and "congress" are one
token here), so a feature that peaks on " Congress" counts "Congress" at the start of a line as well.

Expected share: at every generated position, the probability the (steered) model gives the token set in its
next-token distribution (softmax of the logits, before temperature and top-p), averaged over positions and seeds.
It is the share the sampled tokens estimate, read without the sampling noise: a feature that doubles the chance of
" Congress" from 0.05% to 0.1% shows it at once, where 6 seeds × 24 sampled tokens would show 0 hits either way.

Suggested strength: the largest strength (on the side the sweep explores: positive if any strength is, else
negative) whose perplexity stays ≤ `max_ratio` × the unsteered baseline's, walking outwards from 0 and stopping
at the first strength past the limit — beyond it the model is being pushed off its language, not towards the
feature.
"""
from __future__ import annotations

from collections import Counter

import torch

SOURCE_EXTRACTION = "extraction top examples"
SOURCE_UNEMBEDDING = "unembedding alignment (W_dec[f]·W_U)"


def token_key(tokenizer, token_id: int) -> str:
    """How a token is compared: its text stripped and lower-cased (whitespace-only tokens keep their text)."""
    text = tokenizer.decode([int(token_id)])
    return text.strip().lower() or text


def extraction_tokens(results, feature: int, n: int = 20) -> list[int]:
    """Token ids the feature's top examples peak on, most frequent first (at most `n`)."""
    peaks = [int(t) for t in results.peak_tokens()[feature].tolist() if t >= 0]
    return [t for t, _ in Counter(peaks).most_common(n)]


def unembedding_tokens(model, sae, feature: int, n: int = 20) -> list[int]:
    """Token ids whose unembedding aligns best with W_dec[feature] (logit lens on the decoder row)."""
    from ..features.logits import decoder_logits
    from ..model.hooks import unwrap

    top_ids, _, _, _ = decoder_logits(unwrap(model), sae.W_dec[feature:feature + 1], n)
    return [int(t) for t in top_ids[0].tolist()]


def effect_tokens(model, tokenizer, sae, features: list[int], results=None, n: int = 20) -> dict:
    """The token set the effect score counts: `{source, tokens: {feature: [text, ...]}, keys: [key, ...]}`.
    `results` (a `FeatureResults`, or None) selects the source; with results, a feature without top examples
    (dead in the extraction sample) falls back to the unembedding for that feature alone."""
    ids_by, sources = {}, set()
    for f in features:
        ids = extraction_tokens(results, f, n) if results is not None and f < results.n_features else []
        sources.add(SOURCE_EXTRACTION if ids else SOURCE_UNEMBEDDING)
        ids_by[f] = ids or unembedding_tokens(model, sae, f, n)
    keys = sorted({token_key(tokenizer, t) for ids in ids_by.values() for t in ids})
    return {"source": " + ".join(sorted(sources)), "keys": keys,
            "tokens": {f: [tokenizer.decode([t]) for t in ids] for f, ids in ids_by.items()}}


_VOCAB_KEYS: dict = {}


def _vocab_keys(tokenizer) -> list[str]:
    """`token_key` of every id, decoded once per tokenizer (a sweep builds a mask per prompt; 49k decodes each)."""
    cached = _VOCAB_KEYS.get(id(tokenizer))
    if cached is None or cached[0] is not tokenizer:
        _VOCAB_KEYS.clear()
        cached = _VOCAB_KEYS[id(tokenizer)] = (tokenizer, [token_key(tokenizer, i) for i in range(len(tokenizer))])
    return cached[1]


def key_mask(tokenizer, keys, vocab_size: int) -> torch.Tensor:
    """bool [vocab_size]: the token ids whose key (`token_key`) is in `keys`. The effect score's token set as a
    vocabulary mask, so the probability the model gives those tokens can be read off its logits."""
    keys = set(keys)
    vocab_keys = _vocab_keys(tokenizer)
    ids = [i for i in range(min(vocab_size, len(vocab_keys))) if vocab_keys[i] in keys]
    mask = torch.zeros(vocab_size, dtype=torch.bool)
    mask[ids] = True
    return mask


def token_share(tokenizer, gen_ids: list[int], keys) -> tuple[int, int]:
    """(generated tokens whose key is in `keys`, generated tokens)."""
    keys = set(keys)
    return sum(token_key(tokenizer, t) in keys for t in gen_ids), len(gen_ids)


def suggest_strength(rows: list[dict], baseline_ppl: float | None, max_ratio: float = 1.5) -> tuple:
    """(strength or None, one line saying why) from sweep rows `{strength, perplexity}`."""
    if not baseline_ppl:
        return None, "no suggestion: the unsteered baseline produced no text to score"
    limit = max_ratio * baseline_ppl
    side = 1.0 if any(r["strength"] > 0 for r in rows) else -1.0
    outward = sorted((r for r in rows if r["strength"] * side > 0), key=lambda r: abs(r["strength"]))
    best = None
    for r in outward:
        if r["perplexity"] is None or r["perplexity"] > limit:
            break
        best = r["strength"]
    if best is None:
        first = outward[0] if outward else None
        why = (f"even strength {first['strength']:g} raised perplexity above {limit:.1f}; sweep smaller strengths"
               if first else "the sweep has no non-zero strength")
        return None, f"no suggestion: {why} (limit {max_ratio:g}× baseline perplexity {baseline_ppl:.1f})"
    return best, (f"largest strength whose perplexity stays ≤ {max_ratio:g}× the baseline's "
                  f"({baseline_ppl:.1f} → limit {limit:.1f})")


def token_specificity(results, min_examples: int = 10) -> torch.Tensor:
    """Per feature, the share of its top examples that peak on its most common token (0 for features with
    fewer than `min_examples` examples): 1.0 means the feature reads one token."""
    peaks = results.peak_tokens()
    spec = torch.zeros(peaks.shape[0])
    for f in range(peaks.shape[0]):
        row = peaks[f][peaks[f] >= 0]
        if len(row) >= min_examples:
            spec[f] = torch.unique(row, return_counts=True)[1].max().float() / len(row)
    return spec
