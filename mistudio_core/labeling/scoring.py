"""Detection and fuzzing scoring of a label (delphi's "detection" and "fuzzing" scorers; SAEBench's auto-interp).

The LLM gets the label and a shuffled mix of snippets, unmarked: held-out activating examples of the feature
(top/quantile examples *not* shown when the label was made) and non-activating ones, and says which snippets
the feature fires on. We store

    accuracy          = correct / n
    balanced_accuracy = (recall on activating + recall on non-activating) / 2
    chance            = max(n_act, n_non) / n       (always answering the majority class)

with the label, so the UI can show how far above chance a label is.

Limit: feature results do not hold this feature's activation on *other* features' contexts, so the
non-activating snippets are windows around other features' peaks from contexts that are not among this
feature's examples. For a sparse feature (firing on ~0.1% of tokens) such a 33-token window is non-activating
with high probability, but not certainty; a dense feature's score is pessimistic.
"""
from __future__ import annotations

import random
import re

from .client import LLMClient, Reply
from .fuzzing import FUZZ_REMINDER, FUZZ_SYSTEM, FUZZ_TEMPLATE, ONE_SNIPPET, fuzz_items
from .prompts import extract_json, format_example

SCORE_SYSTEM = ("You judge whether a short description of a language-model feature predicts where it fires. "
                "Reply with JSON only.")
SCORE_TEMPLATE = """A feature of a language model is described as: "{label}" — {description}

For each numbered snippet below, decide whether this feature would fire somewhere in it.

{snippets}

Answer with JSON only: {"activating": [numbers of the snippets where the feature fires]}"""
SCORE_REMINDER = 'Reply with ONLY a JSON object like {"activating": [2, 5]} (an empty list if none).'


def split_examples(feature: dict, n_top: int, n_per_quantile: int) -> tuple[list[dict], list[dict]]:
    """(examples shown to label the feature, held-out activating examples for scoring)."""
    top = list(feature.get("top_examples") or [])
    shown, held = top[:n_top], top[n_top:]
    for q in feature.get("quantile_examples") or []:
        ex = list(q.get("examples") or [])
        shown += ex[:n_per_quantile]
        held += ex[n_per_quantile:]
    return shown, held


def negatives_for(index: int, feature: dict, pool: list[tuple[int, dict]], n: int, rng: random.Random) -> list[dict]:
    """`n` examples of other features from contexts this feature has no example in (assumed non-activating)."""
    own = {e.get("context_id") for e in feature.get("top_examples") or []}
    for q in feature.get("quantile_examples") or []:
        own |= {e.get("context_id") for e in q.get("examples") or []}
    candidates = [ex for i, ex in pool if i != index and ex.get("context_id") not in own]
    rng.shuffle(candidates)
    return candidates[:n]


ONE_DETECT = """A feature of a language model is described as: "{label}" — {description}

Snippet:
{snippets}

Would this feature fire somewhere in this snippet? Answer Yes or No."""
_MODES = {  # method: (system, template, reminder, JSON key, one-snippet question)
    "detection": (SCORE_SYSTEM, SCORE_TEMPLATE, SCORE_REMINDER, "activating", ONE_DETECT),
    "fuzzing": (FUZZ_SYSTEM, FUZZ_TEMPLATE, FUZZ_REMINDER, "correct", ONE_SNIPPET),
}


def _parse_numbers(text: str, n: int, key: str = "activating") -> set[int] | None:
    obj = extract_json(text)
    if obj is not None:
        values = obj.get(key, obj.get("answer"))
        if isinstance(values, list):
            return {int(v) for v in values if str(v).strip().isdigit() and 1 <= int(v) <= n}
        return None
    match = re.search(r"\[([\d,\s]*)\]", text or "")
    if match:
        return {int(v) for v in re.findall(r"\d+", match.group(1)) if 1 <= int(v) <= n}
    return None


def _fill(template: str, label: dict, body: str) -> str:
    return (template.replace("{label}", label.get("label", "")).replace("{snippets}", body)
            .replace("{description}", label.get("description") or label.get("category") or ""))


def detection_messages(label: dict, snippets: list[str], method: str = "detection") -> list[dict]:
    system, template = _MODES[method][:2]
    body = "\n".join(f"{k + 1}. {s}" for k, s in enumerate(snippets))
    return [{"role": "system", "content": system}, {"role": "user", "content": _fill(template, label, body)}]


def auc(truth: list[bool], probs: list[float]) -> float | None:
    """Probability that a random true item gets a higher P(yes) than a random false one (ties count half)."""
    pos = [p for p, t in zip(probs, truth) if t]
    neg = [p for p, t in zip(probs, truth) if not t]
    if not pos or not neg:
        return None
    wins = sum((p > q) + 0.5 * (p == q) for p in pos for q in neg)
    return round(wins / (len(pos) * len(neg)), 4)


def metrics(truth: list[bool], said: set[int], method: str = "detection", probs: list[float] | None = None) -> dict:
    """Accuracy, balanced accuracy and chance level of the answer `said` (1-based) against `truth`."""
    n = len(truth)
    pred = [(k + 1) in said for k in range(n)]
    n_pos = sum(truth)
    tp = sum(p and t for p, t in zip(pred, truth))
    tn = sum((not p) and (not t) for p, t in zip(pred, truth))
    rec_pos = tp / n_pos if n_pos else 0.0
    rec_neg = tn / (n - n_pos) if n - n_pos else 0.0
    out = {"method": method, "accuracy": round((tp + tn) / n, 4) if n else 0.0,
           "balanced_accuracy": round((rec_pos + rec_neg) / 2, 4), "chance": round(max(n_pos, n - n_pos) / n, 4),
           "n": n, "n_activating": n_pos, "recall_activating": round(rec_pos, 4),
           "precision": round(tp / sum(pred), 4) if sum(pred) else 0.0}
    if probs is not None:
        out["auc"] = auc(truth, probs)
    return out


def judge(client, label: dict, snippets: list[str], method: str) -> tuple[set[int] | None, list[Reply], list | None]:
    """(1-based numbers the judge said yes to, replies, P(yes) per snippet or None).

    A remote LLM answers all snippets in one JSON reply (+ one reminder). A local model
    (`client.judges_one_by_one`) is asked one Yes/No question per snippet and read by next-token probability,
    so even a weak model always gives a usable answer."""
    if getattr(client, "judges_one_by_one", False):
        question = _MODES[method][4]
        answers = [client.yes_probability([{"role": "system", "content": _MODES[method][0]},
                                           {"role": "user", "content": _fill(question, label, s)}])
                   for s in snippets]
        probs = [p for p, _ in answers]
        return {k + 1 for k, p in enumerate(probs) if p > 0.5}, [r for _, r in answers], probs
    key, reminder = _MODES[method][3], _MODES[method][2]
    messages = detection_messages(label, snippets, method)
    replies = [client.chat(messages)]
    said = _parse_numbers(replies[-1].text, len(snippets), key)
    if said is None:
        messages += [{"role": "assistant", "content": replies[-1].text}, {"role": "user", "content": reminder}]
        replies.append(client.chat(messages))
        said = _parse_numbers(replies[-1].text, len(snippets), key)
    return said, replies, None


def _score(client, label: dict, items: list[tuple[str, bool]], method: str) -> tuple[dict | None, list[Reply]]:
    said, replies, probs = judge(client, label, [s for s, _ in items], method)
    if said is None:
        return None, replies
    return metrics([t for _, t in items], said, method, probs), replies


def score_detection(client: LLMClient, label: dict, positives: list[dict], negatives: list[dict],
                    seed: int = 0) -> tuple[dict | None, list[Reply]]:
    """Ask the LLM which snippets fire; return (score dict or None when there is nothing to score or the
    answer stays unreadable after one reminder, the replies for token accounting)."""
    if not positives or not negatives:
        return None, []
    items = [(format_example(e, mark=False), True) for e in positives] + \
            [(format_example(e, mark=False), False) for e in negatives]
    random.Random(seed).shuffle(items)
    return _score(client, label, items, "detection")


def score_fuzzing(client: LLMClient, label: dict, positives: list[dict],
                  seed: int = 0) -> tuple[dict | None, list[Reply]]:
    """Ask the LLM which snippets are highlighted correctly (see `fuzzing.py`); (score or None, replies)."""
    if len(positives) < 2:
        return None, []
    return _score(client, label, fuzz_items(positives, random.Random(seed)), "fuzzing")
