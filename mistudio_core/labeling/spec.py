"""`LabelSpec`: what a labeling job does. Saved in the job registry as-is, so it holds no API key — only
`key_ref`, a meaningless reference to a key kept in this process's memory (see `keys.py`)."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

from ..platform.records import from_dict
from ..platform.errors import ValidationError
from .client import ProviderConfig
from .prompts import DEFAULT_SYSTEM, DEFAULT_TEMPLATE, check_template

SELECTIONS = ("live", "indices")


@dataclass
class LabelSpec:
    """Label (and score) a selection of one SAE's features with an LLM."""

    sae_id: str
    """The SAE whose extracted features are labeled (`saes/<sae_id>/features/` must exist)."""
    provider: dict = field(default_factory=lambda: ProviderConfig().to_dict())
    """`ProviderConfig.to_dict()`: base URL, model, prices, timeouts. Never a key."""
    key_ref: str | None = None
    """Reference to an in-memory key (`keys.remember_key`); None → `$OPENAI_API_KEY` or no key (local servers)."""
    selection: str = "live"
    """`live`: every feature that is not dead; `indices`: only `indices`."""
    indices: list[int] = field(default_factory=list)
    """Feature indices for `selection="indices"`."""
    only_unlabeled: bool = False
    """Skip features that already have any label (manual labels are always skipped)."""
    system_prompt: str = DEFAULT_SYSTEM
    """System message of the labeling prompt."""
    template: str = DEFAULT_TEMPLATE
    """User message template; see `prompts.py` for its placeholders."""
    n_top_examples: int = 10
    """Top-activating examples shown to the LLM (the rest are held out for scoring)."""
    n_quantile_examples: int = 1
    """Examples shown from each activation quantile (so the label covers weak activations too)."""
    score: bool = True
    """Run detection scoring after labeling (one more request per feature)."""
    fuzz: bool = True
    """Also run fuzzing scoring (are the highlighted tokens the right ones?) after detection."""
    n_score_examples: int = 5
    """Held-out activating snippets in the scoring prompt (as many non-activating ones are added)."""
    concurrency: int = 4
    """Requests in flight at once (threads)."""
    seed: int = 0
    """Seed of the scoring shuffles and negative-example picks."""

    def __post_init__(self):
        if not self.sae_id:
            raise ValidationError("No SAE chosen; pick an SAE with extracted features.")
        if self.selection not in SELECTIONS:
            raise ValidationError(f"Selection {self.selection!r} must be one of {SELECTIONS}.")
        self.indices = sorted({int(i) for i in self.indices or []})
        if self.selection == "indices" and not self.indices:
            raise ValidationError("Selection 'indices' needs feature indices, e.g. 3, 17, 40-45.")
        if any(i < 0 for i in self.indices):
            raise ValidationError("Feature indices cannot be negative.")
        ProviderConfig.from_dict(self.provider)  # validates
        check_template(self.template)
        if self.n_top_examples < 1 or self.n_quantile_examples < 0 or self.n_score_examples < 1:
            raise ValidationError("Show at least 1 top example and score with at least 1 example.")
        if not 1 <= self.concurrency <= 64:
            raise ValidationError("Concurrency must be between 1 and 64 requests.")

    @property
    def provider_config(self) -> ProviderConfig:
        return ProviderConfig.from_dict(self.provider)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "LabelSpec":
        return from_dict(cls, d or {})

    def fingerprint(self) -> str:
        """Identity of the labeling settings: a feature auto-labeled with the same fingerprint is done, so a
        resumed (or re-submitted) job skips it. Selection, concurrency, key and prices do not change a label."""
        p = self.provider_config
        keyed = {"sae": self.sae_id, "url": p.base_url, "model": p.model, "temperature": p.temperature,
                 "system": self.system_prompt, "template": self.template, "top": self.n_top_examples,
                 "quantile": self.n_quantile_examples, "score": self.score, "fuzz": self.score and self.fuzz,
                 "n_score": self.n_score_examples,
                 "seed": self.seed}
        return hashlib.sha256(json.dumps(keyed, sort_keys=True).encode()).hexdigest()[:16]


def parse_indices(text: str) -> list[int]:
    """`"3, 17, 40-45"` → [3, 17, 40, 41, 42, 43, 44, 45]."""
    out: set[int] = set()
    for part in (text or "").replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                if hi < lo or hi - lo > 1_000_000:
                    raise ValueError
                out.update(range(lo, hi + 1))
            else:
                out.add(int(part))
        except ValueError:
            raise ValidationError(f"Cannot read feature index {part!r}; write numbers and ranges like "
                                  "'3, 17, 40-45'.") from None
    return sorted(out)
