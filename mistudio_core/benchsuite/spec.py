"""`BenchSpec`: what one benchmark run measures, and the checks that refuse bad input before any work."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..platform.errors import NotFoundError, ValidationError
from .tasks import LICENSES, TASK_NAMES

PARTS = ("core", "absorption", "probing", "autointerp")
LOCAL_LABELER = {"base_url": "local://in-process", "model": "smollm2-135m-instruct"}


def available_tasks() -> list[str]:
    """The shipped probing tasks whose data is on this machine (the licenses task needs Debian's texts)."""
    return [t for t in TASK_NAMES if t != "docs-vs-licenses" or LICENSES.is_dir()]


@dataclass
class BenchSpec:
    sae_id: str
    """Library SAE to benchmark."""
    dataset_id: str = "sotu"
    """Dataset (tokenized for the SAE's model) of the core metrics, shrinkage and auto-interp examples."""
    split: str = "heldout"
    """Split of `dataset_id` those parts read: "heldout" (never trained on) or "train"."""
    parts: list[str] = field(default_factory=lambda: list(PARTS))
    """Parts to run: core (EV, CE, L0, … + shrinkage), absorption, probing, autointerp."""
    n_contexts: int = 64
    """Contexts of the split for core metrics, shrinkage and auto-interp examples."""
    downstream: bool = True
    """Core metrics include CE loss recovered and KL (3 full model forwards per batch)."""
    absorption_words: int = 1500
    """Vocabulary words for the first-letter task (70% fit the probes and find letter latents, 30% are scored)."""
    probing_tasks: list[str] | None = None
    """Probing tasks (see benchsuite/tasks.py); None: every shipped task whose data is on this machine."""
    probing_per_doc: int = 4
    """Snippets taken from each document of a probing task."""
    probing_tokens: int = 64
    """Tokens per probing snippet (mean-pooled)."""
    autointerp_latents: int = 12
    """Live latents labeled and scored by detection and fuzzing."""
    labeler: dict = field(default_factory=lambda: dict(LOCAL_LABELER))
    """Labeler (`labeling.client.ProviderConfig` fields): an OpenAI-compatible server or local://in-process."""
    key_ref: str | None = None
    """Reference to an in-memory API key (`labeling.keys.remember_key`); never the key itself."""
    seed: int = 0
    """Seed of every sample and split."""
    batch_size: int = 8
    """Contexts per forward pass in the core metrics."""
    model_id: str | None = None
    """Model to run; None: the SAE's own."""
    device: str | None = None
    """Device; None: CUDA if available, else CPU."""

    def __post_init__(self):
        from ..labeling.client import ProviderConfig

        if not self.sae_id or not self.dataset_id:
            raise ValidationError("A benchmark needs an SAE and a dataset; pick both.")
        bad = sorted(set(self.parts or ()) - set(PARTS))
        self.parts = [p for p in PARTS if p in set(self.parts or ())]  # run order, duplicates dropped
        if bad or not self.parts:
            raise ValidationError(f"Choose benchmark parts among {', '.join(PARTS)} (got {bad or 'none'}).")
        if self.probing_tasks is not None:
            unknown = sorted(set(self.probing_tasks) - set(TASK_NAMES))
            if unknown or not self.probing_tasks:
                raise ValidationError(f"Unknown probing tasks {unknown or '(none)'}; choose from "
                                      f"{', '.join(TASK_NAMES)}.")
        for name in ("n_contexts", "absorption_words", "probing_per_doc", "probing_tokens", "autointerp_latents",
                     "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValidationError(f"{name} must be a whole number >= 1 (got {value!r}).")
        if self.absorption_words < 200:
            raise ValidationError("absorption_words must be at least 200 (about 8 words per letter); use 1500.")
        ProviderConfig.from_dict(self.labeler)  # names a bad URL or model

    @property
    def tasks(self) -> list[str]:
        return list(self.probing_tasks) if self.probing_tasks is not None else available_tasks()

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "BenchSpec":
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValidationError(f"Unknown benchmark spec fields {unknown}; valid: "
                                  f"{sorted(cls.__dataclass_fields__)}.")
        return cls(**d)


def check_inputs(store, spec: BenchSpec) -> str:
    """Everything that can be refused before a model loads: the evaluation's own checks (model, width, enough
    contexts), each probing task (two classes, ≥ 20 snippets per class) and a local labeler's model. Returns the
    model id."""
    from ..sae.eval_job import EvalJobSpec
    from ..sae.eval_job import check_inputs as check_eval
    from ..labeling.client import ProviderConfig

    model_id = check_eval(store, EvalJobSpec(sae_id=spec.sae_id, dataset_id=spec.dataset_id, split=spec.split,
                                             n_contexts=spec.n_contexts, model_id=spec.model_id))
    check_tasks(spec)
    cfg = ProviderConfig.from_dict(spec.labeler)
    if "autointerp" in spec.parts and cfg.is_local and not store.exists("models", cfg.model):
        raise NotFoundError(f"The local labeler model {cfg.model!r} is not in the model library. Add it (Models "
                            "tab), pick an OpenAI-compatible server instead, or leave out the autointerp part.")
    return model_id


def check_tasks(spec: BenchSpec) -> None:
    """Each probing task of `spec` as it will be built: two classes at least, ≥ 20 snippets per class."""
    from .tasks import build_task, check_task

    if "probing" in spec.parts:
        for name in spec.tasks:
            check_task(build_task(name, spec.probing_per_doc))
