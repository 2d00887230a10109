"""Token filters: which vocabulary entries may not count as a feature's activation during extraction.

Without them, a feature's top examples are often all BOS (whose residual norm is ~5× typical) or punctuation.
A filter is a vocabulary-level boolean mask computed once from the decoded token strings, so applying it per
batch is one gather over the token ids. Filtered positions are treated as "not firing" everywhere (examples,
frequency, histogram), so the statistics and the examples describe the same set of tokens.
"""
from __future__ import annotations

import string

import torch

from ..platform.errors import ValidationError

FILTERS = ("special", "single_char", "punctuation", "numbers", "stop_words")
"""Filter names: special tokens (BOS/EOS/PAD/...), tokens of one visible character, tokens made only of
punctuation, numbers, and common English stop words."""

STOP_WORDS = frozenset("""
a about above after again against all am an and any are as at be because been before being below between both
but by can could did do does doing down during each few for from further had has have having he her here hers
herself him himself his how i if in into is it its itself just me more most my myself no nor not now of off on
once only or other our ours ourselves out over own same she should so some such than that the their theirs them
themselves then there these they this those through to too under until up very was we were what when where which
while who whom why will with would you your yours yourself yourselves
""".split())

_PUNCT = set(string.punctuation) | set("“”‘’«»–—…·•¿¡")


def validate_filters(filters) -> list[str]:
    filters = list(filters or [])
    bad = [f for f in filters if f not in FILTERS]
    if bad:
        raise ValidationError(f"Unknown token filter(s) {bad}; valid filters: {', '.join(FILTERS)}")
    return filters


def vocab_strings(tokenizer, vocab_size: int) -> list[str]:
    """The display string of every token id (ids beyond the tokenizer's vocabulary show as `<id>`)."""
    n = min(vocab_size, len(tokenizer))
    strings = tokenizer.batch_decode([[i] for i in range(n)], skip_special_tokens=False,
                                     clean_up_tokenization_spaces=False)
    return strings + [f"<{i}>" for i in range(n, vocab_size)]


def special_ids(tokenizer) -> set[int]:
    ids = set(getattr(tokenizer, "all_special_ids", []) or [])
    for name in ("bos_token_id", "eos_token_id", "pad_token_id", "unk_token_id"):
        tid = getattr(tokenizer, name, None)
        if isinstance(tid, int):
            ids.add(tid)
    return ids


def _is_number(s: str) -> bool:
    s = s.replace(",", "").replace(".", "")
    return bool(s) and s.isdigit()


def excluded_vocab(strings: list[str], specials: set[int], filters) -> torch.Tensor:
    """Boolean `[vocab]`: True where a token is removed by one of `filters`."""
    filters = set(validate_filters(filters))
    out = []
    for i, s in enumerate(strings):
        t = s.strip()
        out.append(
            ("special" in filters and i in specials)
            or ("single_char" in filters and len(t) <= 1)
            or ("punctuation" in filters and bool(t) and all(c in _PUNCT for c in t))
            or ("numbers" in filters and _is_number(t))
            or ("stop_words" in filters and t.lower() in STOP_WORDS)
        )
    return torch.tensor(out, dtype=torch.bool)


def eligible(tokens: torch.Tensor, excluded: torch.Tensor) -> torch.Tensor:
    """`[B, T]` True where the token may count (its id is not excluded)."""
    return ~excluded.to(tokens.device)[tokens.long()]
