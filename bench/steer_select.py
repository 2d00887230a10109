"""Which features steer_effect.py tests: the most token-specific features over WORD tokens (issue 17, item 5).

The rule is fixed here, before any steering, and the bench never re-picks after seeing results:

1. A feature's top examples (its extraction results) each peak on one token. Tokens are compared by their text,
   stripped and lower-cased (`steering.effect.token_key`, the same key the effect score counts), so " Congress"
   and "Congress" are one token.
2. A key is a WORD when it is alphabetic (`str.isalpha`), at least 3 characters long and not an English stopword
   (`STOPWORDS` below: articles, pronouns, auxiliaries, prepositions, conjunctions). Punctuation, newlines, digits
   and 1–2 letter pieces are not words; " of", " and", " is" are stopwords. A word-internal piece of 3+ letters
   ("ation" in " nation") does count: the key is all the bench sees of a token.
3. Word specificity of a feature = (top examples peaking on its most common WORD key) / (all its top examples).
   A feature that peaks on ',' in 60 of 100 examples and on " war" in 40 scores 0.40.
4. Features with fewer than `min_examples` top examples are skipped (a rare feature's 3 examples on one word say
   little). The `n` highest word specificities are tested, ties broken towards the more frequent feature.

Why words: the last run ranked by plain token specificity and all ten features fired on '\\n', ',', ' of',
' and', ' is' — features that *read* a function token at layer 8, whose decoder directions promote the tokens
that follow, not the token itself; a researcher asks "can I make the model say Congress", not "say more commas".
"""
from __future__ import annotations

from collections import Counter

STOPWORDS = frozenset("""
a about above after again against all also am an and any are as at be because been before being below between
both but by can could did do does doing down during each few for from further had has have having he her here
hers herself him himself his how i if in into is it its itself just may me might more most must my myself no nor
not now of off on once only or other ought our ours ourselves out over own same shall she should so some such than
that the their theirs them themselves then there these they this those through to too under until up upon us very
was we were what when where which while who whom why will with would you your yours yourself yourselves
""".split())


def is_word(key: str) -> bool:
    """True for an alphabetic key of 3+ characters that is not a stopword (the rule in the module docstring)."""
    return key.isalpha() and len(key) >= 3 and key not in STOPWORDS


def word_specificity(results, tokenizer, min_examples: int = 20) -> list[tuple[int, float, str]]:
    """Per feature with ≥ `min_examples` top examples and at least one word peak: (feature, word specificity,
    its most common word key)."""
    from mistudio_core.steering.effect import token_key

    keys: dict[int, str] = {}  # token id -> key, decoded once per distinct token
    out = []
    for f, row in enumerate(results.peak_tokens().tolist()):
        peaks = [t for t in row if t >= 0]
        if len(peaks) < min_examples:
            continue
        counts = Counter(keys.setdefault(t, token_key(tokenizer, t)) for t in peaks)
        words = [(c, k) for k, c in counts.items() if is_word(k)]
        if words:
            c, k = max(words)
            out.append((f, c / len(peaks), k))
    return out


def pick_word_features(results, tokenizer, n: int = 10, min_examples: int = 20) -> list[tuple[int, float, str]]:
    """The `n` features with the highest word specificity (ties: the more frequent feature first)."""
    freq = results.frequencies().tolist()
    ranked = sorted(word_specificity(results, tokenizer, min_examples), key=lambda r: (-r[1], -freq[r[0]]))
    return ranked[:n]


def own_word_logit_effect(t, results, picked: list[tuple[int, float, str]], prompts: list[str]) -> dict[int, float]:
    """Per picked feature: how much adding its decoder row (× its max activation) at the last position of each
    prompt raises the model's next-token log-probability of its own word (all tokens with that key), in nats,
    averaged over the prompts — through the whole rest of the model, not the direct unembedding path. A feature
    that only *reads* its word at this layer scores near 0: steering it changes the topic, not the word."""
    import torch

    from mistudio_core.model.hooks import intervene
    from mistudio_core.steering.effect import key_mask

    vocab = t.model.config.vocab_size
    masks = {w: key_mask(t.tokenizer, [w], vocab) for w in {w for _, _, w in picked}}
    rows = torch.stack([t.sae.W_dec[f].detach() * float(results.t["max"][f]) for f, _, _ in picked])
    gain = torch.zeros(len(picked))
    for prompt in prompts:
        ids = t.tokenizer(prompt, return_tensors="pt").input_ids
        with torch.no_grad():
            base = torch.log_softmax(t.model(input_ids=ids).logits[0, -1].float(), -1)

            def add_last(act):
                act = act.clone()
                act[:, -1] += rows.to(act.dtype)
                return act

            with intervene(t.model, t.hook_name, add_last):
                steered = torch.log_softmax(t.model(input_ids=ids.expand(len(picked), -1)).logits[:, -1].float(), -1)
        for j, (_, _, w) in enumerate(picked):
            m = masks[w]
            gain[j] += float(torch.logsumexp(steered[j][m], 0) - torch.logsumexp(base[m], 0)) / len(prompts)
    return {f: float(g) for (f, _, _), g in zip(picked, gain)}
