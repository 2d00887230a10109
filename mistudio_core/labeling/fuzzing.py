"""Fuzzing scoring of a label (delphi's `FuzzingScorer`): does the label say *which tokens* the feature fires on?

Detection asks whether a snippet contains the feature; fuzzing asks whether the highlighting is right. The LLM
gets the label and held-out activating snippets, each with tokens marked `<<like this>>`: in half of them the
marks sit exactly on the tokens where the feature is active (runs of act > 0, as when labeling), in the other
half the same number of *inactive* tokens of the window are marked instead. It says which snippets are
highlighted correctly. We store, like detection,

    accuracy = correct / n,  balanced_accuracy,  chance = max(n_correct, n_wrong) / n    (majority answer)

A snippet whose window has no inactive token cannot be mis-highlighted; it is shown correctly marked, and the
chance level accounts for the resulting imbalance.
"""
from __future__ import annotations

import random

from .prompts import marked, window

FUZZ_SYSTEM = ("You judge whether highlighted tokens in text snippets are the ones a language-model feature "
               "fires on. Reply with JSON only.")
FUZZ_TEMPLATE = """A feature of a language model is described as: "{label}" — {description}

In each numbered snippet below some tokens are highlighted <<like this>>. In some snippets the highlights sit \
exactly on the tokens where this feature fires; in others they were put on other tokens. Decide which snippets \
are highlighted correctly.

{snippets}

Answer with JSON only: {"correct": [numbers of the correctly highlighted snippets]}"""
FUZZ_REMINDER = 'Reply with ONLY a JSON object like {"correct": [1, 4]} (an empty list if none).'
ONE_SNIPPET = """A feature of a language model is described as: "{label}" — {description}

Some tokens of this snippet are highlighted <<like this>>:
{snippets}

Are the highlighted tokens the ones this feature fires on? Answer Yes or No."""


def fuzzed(example: dict, correct: bool, rng: random.Random) -> tuple[str, bool]:
    """(snippet text, whether its highlighting is correct): the true active tokens, or as many inactive ones."""
    tokens, acts = window(example)
    active = [a > 0 for a in acts]
    inactive = [j for j, on in enumerate(active) if not on]
    if correct or not inactive:
        return marked(tokens, active), True
    n = max(1, min(sum(active), len(inactive)))
    chosen = set(rng.sample(inactive, n))
    return marked(tokens, [j in chosen for j in range(len(tokens))]), False


def fuzz_items(positives: list[dict], rng: random.Random) -> list[tuple[str, bool]]:
    """Half the examples correctly highlighted, half mis-highlighted, shuffled."""
    flags = [k < (len(positives) + 1) // 2 for k in range(len(positives))]
    rng.shuffle(flags)
    items = [fuzzed(e, flag, rng) for e, flag in zip(positives, flags)]
    rng.shuffle(items)
    return items
