"""docs/WORKSHOP.md quotes the numbers the UI uses (#24): the quick preset's width, k, steps and cached tokens, the
tutorial's hook, and the extraction's default token count — so the guide and the product cannot drift apart."""
from __future__ import annotations

import re
from pathlib import Path

from mistudio_core.features.extract import ExtractConfig
from mistudio_core.sae.presets import BUILTIN_HOOK, PRESETS

DOC = (Path(__file__).resolve().parent.parent.parent / "docs" / "WORKSHOP.md").read_text(encoding="utf-8")
PART_B = DOC[DOC.index("## B. CPU laptop"):]


def _number(text: str) -> int:
    return int(text.replace(",", ""))


def test_the_quick_preset_numbers_are_the_presets():
    quick = PRESETS["quick"]
    m = re.search(r"Preset: \*\*quick\*\* \(TopK (\d+)× = ([\d,]+) features, k = (\d+), (\d+) steps on ([\d,]+)\s+"
                  r"cached tokens\)", PART_B)
    assert m, "WORKSHOP.md no longer describes the quick preset in the expected words"
    factor, width, k, steps, tokens = (_number(g) for g in m.groups())
    assert (quick.train["architecture"], factor, k, steps, tokens) == (
        "topk", quick.train["expansion_factor"], quick.train["k"], quick.train["steps"], quick.cache["tokens"])
    assert width == factor * 576  # SmolLM2-135M's d_model


def test_the_hook_and_the_extraction_size_are_the_uis():
    assert f"Layer: **`{BUILTIN_HOOK}`**" in PART_B
    step = re.search(r"\*\*Extract\*\* on `sotu` \(the default ([\d,]+) tokens", PART_B)
    assert step and _number(step.group(1)) == ExtractConfig.__dataclass_fields__["n_tokens"].default
