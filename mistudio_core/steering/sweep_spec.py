"""The "sweep" kind's spec: one prompt generated at several strengths (and seeds) with one steering setting, each
output scored (`sweep.py`). The Steering tab's Sweep and `steer ... --sweep` build it through
`spec.build("sweep", ...)` and run it with `run`; it is checked (fields, then dead features with the store) before
a model loads.

`build` takes the sweep's own fields and, flat, those of its two parts — `SteeringConfig`'s (features, method,
normalize, positions, vectors) and `SamplingConfig`'s (max_new_tokens, temperature, top_p, seed, chat,
stop_at_eos) — or the parts whole as `steering=` / `sampling=` dicts. An unknown name is refused naming the nearest
of all of them.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from ..platform.errors import ValidationError
from ..platform.records import from_dict, unknown_keys_message
from .generate import SamplingConfig
from .methods import SteeringConfig
from .sweep import check_sweep, sweep


@dataclass
class SweepSpec:
    sae_id: str = ""
    """Library SAE whose features steer (its model and hook point come from its manifest)."""
    prompt: str = ""
    """The prompt every row continues."""
    strengths: list[float] = field(default_factory=list)
    """The strengths swept (1 to 16); row r sets every feature's strength to strengths[r]."""
    seeds: int = 1
    """Seeds per strength (1 to 32); the rows report means over them."""
    steering: dict = field(default_factory=lambda: SteeringConfig().to_dict())
    """What steers and how (`SteeringConfig`); the features' own strengths are replaced by each row's."""
    sampling: dict = field(default_factory=lambda: SamplingConfig().to_dict())
    """How tokens are picked (`SamplingConfig`); seed k of the sweep uses sampling seed + k."""

    def __post_init__(self):
        if not self.sae_id:
            raise ValidationError("No SAE selected. Train or import one, then pick it.")
        if not self.prompt:
            raise ValidationError("The prompt is empty. Type a prompt to continue.")
        self.steering = self.steering_config.to_dict()  # strict, and the nested parts normalised
        self.sampling = self.sampling_config.to_dict()
        self.strengths = check_sweep(self.steering_config, self.strengths, self.seeds)
        self.seeds = int(self.seeds)

    @property
    def steering_config(self) -> SteeringConfig:
        return SteeringConfig.from_dict(self.steering)

    @property
    def sampling_config(self) -> SamplingConfig:
        return SamplingConfig.from_dict(self.sampling)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "SweepSpec":
        return from_dict(cls, d, "sweep spec")


_PARTS = {"steering": SteeringConfig, "sampling": SamplingConfig}


def build(preset: str | None = None, store=None, **fields_given) -> dict:
    """The "sweep" spec (`spec.build("sweep", ...)`) from its fields, the parts' fields given flat laid over the
    parts given whole; checked with the store when one is given."""
    given = {k: v for k, v in fields_given.items() if v is not None}
    parts = {name: dict(given.pop(name, None) or {}) for name in _PARTS}
    for name, cls in _PARTS.items():
        for key in [k for k in given if k in cls.__dataclass_fields__]:
            parts[name][key] = given.pop(key)
    own = [f.name for f in fields(SweepSpec)]
    unknown = [k for k in given if k not in own]
    if unknown:
        valid = [n for n in own if n not in _PARTS] + [n for cls in _PARTS.values() for n in cls.__dataclass_fields__]
        raise ValidationError(unknown_keys_message(unknown, valid, "sweep"))
    spec = SweepSpec(**given, **parts).to_dict()
    validate(spec, store)
    return spec


def validate(spec: dict, store=None) -> SweepSpec:
    """The one check of a "sweep" spec: its fields (strict, the parts too); with a store, no dead feature."""
    from .loader import check_steerable, stats_for

    s = SweepSpec.from_dict(spec)
    if store is not None:
        check_steerable(stats_for(store, s.sae_id), s.steering_config.features)
    return s


def run(target, spec: dict, progress=None, effect_tokens: dict | None = None) -> dict:
    """Run the sweep `spec` describes on a loaded `target` (`loader.load_target`); the result is `sweep`'s."""
    s = SweepSpec.from_dict(spec)
    return sweep(target.model, target.tokenizer, target.sae, target.hook_name, s.prompt, s.steering_config,
                 s.strengths, s.sampling_config, progress=progress, seeds=s.seeds, effect_tokens=effect_tokens)
