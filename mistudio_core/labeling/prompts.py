"""Prompts for labeling a feature from its examples, and the robust parser of the LLM's JSON answer.

Templates are plain text with `{placeholders}` replaced by name (`str.replace`, not `str.format`, so a template
may show JSON braces freely). The user template can use `{index}`, `{examples}`, `{top_logits}`,
`{bottom_logits}`, `{frequency}`, `{max_activation}`. In examples, tokens where the feature is active are
wrapped as `<<token>>` (the convention of delphi/Neuronpedia explainers), and each example is a window around
its peak so prompts stay short.
"""
from __future__ import annotations

import json
import re

from ..platform.errors import ValidationError

DEFAULT_SYSTEM = (
    "You are an interpretability researcher naming the features of a sparse autoencoder trained on a language "
    "model's activations. You look at text snippets where a feature fires and say, briefly and concretely, what "
    "it detects. Reply with JSON only."
)

DEFAULT_TEMPLATE = """Feature {index} fires on the tokens marked <<like this>> in the snippets below \
(activation strength in brackets).

Top-activating examples:
{examples}

Tokens the feature most promotes in the output: {top_logits}
Tokens it most suppresses: {bottom_logits}

What does this feature detect? Answer with a JSON object and nothing else:
{"label": "<2-6 word name>", "category": "<broad area: syntax, punctuation, topic, entity, \
number, formatting, language, semantic, other>", "description": "<one sentence>"}"""

REMINDER = ('Your previous answer was not valid JSON. Reply with ONLY a JSON object with the keys "label", '
            '"category" and "description", e.g. {"label": "dates in 1990s", "category": "number", '
            '"description": "Fires on years between 1990 and 1999."}')

PLACEHOLDERS = ("index", "examples", "top_logits", "bottom_logits", "frequency", "max_activation")


def check_template(template: str) -> None:
    """A template must at least show the examples."""
    if "{examples}" not in (template or ""):
        raise ValidationError("The prompt template has no {examples} placeholder, so the LLM would see no "
                              "examples. Add {examples} (or reset to the default template).")


def _tok(t: str) -> str:
    return t.replace("\n", "\\n")


def window(example: dict, before: int = 24, after: int = 8) -> tuple[list[str], list[float]]:
    """The tokens and activations of an example, cut to a window around its peak."""
    tokens, acts = list(example.get("tokens") or []), list(example.get("acts") or [])
    acts = acts + [0.0] * (len(tokens) - len(acts))
    peak = int(example.get("peak", max(range(len(acts)), key=acts.__getitem__) if acts else 0))
    lo, hi = max(0, peak - before), min(len(tokens), peak + after + 1)
    return tokens[lo:hi], acts[lo:hi]


def format_example(example: dict, mark: bool = True, threshold: float = 0.0) -> str:
    """One example as text; with `mark`, runs of active tokens (act > threshold) become `<<tokens>>` and the
    peak's value is shown."""
    tokens, acts = window(example)
    if not mark:
        return "".join(_tok(t) for t in tokens).strip()
    return f"{marked(tokens, [a > threshold for a in acts])}  [{max(acts, default=0.0):.2f}]"


def marked(tokens: list[str], mask: list[bool]) -> str:
    """The snippet with each run of masked tokens wrapped in `<<...>>` (consecutive tokens share a span, as in
    delphi)."""
    parts, run = [], []
    for t, m in zip(tokens, mask):
        if m:
            run.append(_tok(t))
            continue
        if run:
            parts.append(f"<<{''.join(run)}>>")
            run = []
        parts.append(_tok(t))
    if run:
        parts.append(f"<<{''.join(run)}>>")
    return "".join(parts).strip()


def format_logits(pairs: list, n: int = 10) -> str:
    return ", ".join(repr(str(t)) for t, *_ in (pairs or [])[:n]) or "(not available)"


def build_messages(feature: dict, examples: list[dict], index: int, template: str = DEFAULT_TEMPLATE,
                   system: str = DEFAULT_SYSTEM) -> list[dict]:
    """Chat messages asking for the label of feature `index` from `examples` (a subset of its examples)."""
    check_template(template)
    # Mark tokens above a small fraction of the feature's max so weak tails do not mark whole snippets.
    threshold = 0.05 * float(feature.get("max_activation") or 0.0)
    text = "\n".join(f"{n + 1}. {format_example(e, True, threshold)}" for n, e in enumerate(examples))
    values = {"index": str(index), "examples": text, "top_logits": format_logits(feature.get("top_logits")),
              "bottom_logits": format_logits(feature.get("bottom_logits")),
              "frequency": f"{float(feature.get('frequency') or 0):.3g}",
              "max_activation": f"{float(feature.get('max_activation') or 0):.3g}"}
    user = template
    for name in PLACEHOLDERS:
        user = user.replace("{" + name + "}", values[name])
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def extract_json(text: str) -> dict | None:
    """The first JSON object in `text`, tolerating code fences, prose around it and trailing commas."""
    text = (text or "").strip()
    fenced = re.search(r"```(?:json)?\s*(.*?)```", text, re.S)
    candidates = [fenced.group(1)] if fenced else []
    candidates.append(text)
    for cand in candidates:
        start = cand.find("{")
        while start != -1:
            depth = 0
            for end in range(start, len(cand)):
                depth += {"{": 1, "}": -1}.get(cand[end], 0)
                if depth == 0:
                    chunk = re.sub(r",\s*([}\]])", r"\1", cand[start:end + 1])
                    try:
                        obj = json.loads(chunk)
                    except json.JSONDecodeError:
                        break
                    if isinstance(obj, dict):
                        return obj
                    break
            start = cand.find("{", start + 1)
    return None


def parse_label(text: str) -> dict | None:
    """`{label, category, description}` from an LLM answer, or None when it holds no usable label."""
    obj = extract_json(text)
    if not obj:
        return None
    lowered = {str(k).lower(): v for k, v in obj.items()}
    label = str(lowered.get("label") or lowered.get("name") or "").strip()
    if not label:
        return None
    return {"label": label[:80], "category": str(lowered.get("category") or "").strip()[:40],
            "description": str(lowered.get("description") or "").strip()[:400]}
