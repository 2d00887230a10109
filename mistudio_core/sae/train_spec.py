"""The "train" job's spec: what it is (`TrainJobSpec`), how every door builds one (`build`), the one check
(`validate`) and the one estimate (`estimate`). The Training tab, `train` on the CLI, the JSON API / MCP,
templates and the torchrun launcher all come through `mistudio_core.spec`, which calls these.

    build(preset=None, store=None, **given) -> spec dict

Resolution, in order: the job's defaults; the preset (a named recipe in `presets.py`) or a saved template (a
partial spec of train settings); then the fields given. A given key is a `TrainJobSpec` field, a `TrainConfig`
field (flat), or `cache_mode` / `cache_dtype` / `cache_tokens`; anything else is refused naming the nearest
valid name. None means "not given". The record keeps the preset's name and, in `overrides`, exactly the given
fields whose value differs from what the preset (or the defaults) said.
"""
from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, field, fields

from ..actcache.job import cache_options
from ..model.compute import CHOICES
from ..platform.errors import NotFoundError, ValidationError
from ..platform.records import check_keys, from_dict, unknown_keys_message
from .config import AUTOCASTS, B_DEC_INITS, DTYPES, NORMALIZATIONS, TRAINABLE
from .train_config import FLAT_FIELDS, TrainConfig

CACHE_KEYS = {"cache_mode": "mode", "cache_dtype": "dtype", "cache_tokens": "tokens"}
DEFAULT_DATASET = "sotu"
# The fields whose value is one of a fixed set (a form shows a dropdown; the CLI lists them).
FIELD_CHOICES = {"architecture": TRAINABLE, "normalize_activations": NORMALIZATIONS, "b_dec_init": B_DEC_INITS,
                 "dtype": DTYPES, "autocast": AUTOCASTS, "model_dtype": CHOICES}


@dataclass
class TrainJobSpec:
    model_id: str
    """Registered model whose activations the SAEs read."""
    dataset_id: str
    """Dataset tokenized for that model; its train contexts feed the SAEs, its held-out slice evaluates them."""
    hook_names: list[str]
    """Hook points (TransformerLens names) captured in one pass; one SAE each unless `sae_configs` is given."""
    train: dict | list = field(default_factory=dict)
    """A `TrainConfig` record (nested parts; flat names are routed to their part) shared by all SAEs, or one per
    SAE."""
    sae_configs: list[dict] | None = None
    """`SAEConfig` dicts (one per SAE; `d_in` defaults to the model's width, `metadata.hook_name` must be set)."""
    name: str = "sae"
    """Base name of the library entries (`<name>-<hook>`)."""
    stream: dict = field(default_factory=dict)
    """`ActivationStream` options: seed (the training seed), buffer_contexts (sized to the run), skip_bos, ..."""
    device: str | None = None
    """Device for the model and SAEs; None: CUDA if available, else CPU."""
    checkpoint_seconds: float = 120.0
    """Save a periodic checkpoint at most this often (cancel and the end always save). 0: every time asked."""
    eval_contexts: int | None = None
    """Held-out contexts of the final evaluation; None: up to 64 (all the held-out slice has, if fewer)."""
    eval_datasets: list[str] = field(default_factory=list)
    """Other datasets (tokenized for the model) also evaluated on, on their held-out slice: out-of-domain text."""
    eval_downstream: bool = True
    """Include CE loss clean/spliced/zero-ablated, CE loss recovered and KL (3 model forwards per batch)."""
    preset: str | None = None
    """The preset or template the spec was built from (recorded; already applied)."""
    overrides: dict = field(default_factory=dict)
    """The fields given on top of the preset (or the defaults) that changed them, as given."""
    cache: dict = field(default_factory=dict)
    """Activation cache: {mode: "off" | "use" | "build", dtype: "bfloat16", tokens: n} (see actcache_job.py)."""
    model_dtype: str | None = None
    """Dtype the model computes in for capture and evaluation: "float32", "bfloat16" or "auto" (bf16 where this
    machine runs it faster). None: float32. The SAE always trains in float32."""

    def __post_init__(self):
        if not self.model_id or not self.dataset_id:
            raise ValidationError("A training job needs model_id and dataset_id; pick a model and a dataset.")
        if isinstance(self.hook_names, str):
            self.hook_names = [self.hook_names]
        if not self.hook_names:
            raise ValidationError("Choose at least one hook point (e.g. blocks.8.hook_resid_post).")
        if self.checkpoint_seconds < 0:
            raise ValidationError("checkpoint_seconds must be >= 0.")
        if self.eval_contexts is not None and (not isinstance(self.eval_contexts, int) or self.eval_contexts < 1):
            raise ValidationError(f"eval_contexts must be a whole number >= 1 or empty for the default (got "
                                  f"{self.eval_contexts!r}); every training ends with a held-out evaluation — "
                                  "use eval_downstream false to skip its CE/KL part.")
        if isinstance(self.eval_datasets, str):
            self.eval_datasets = [self.eval_datasets]
        self.eval_datasets = [d for d in dict.fromkeys(self.eval_datasets or []) if d and d != self.dataset_id]
        if self.model_dtype is not None and self.model_dtype not in CHOICES:
            raise ValidationError(f"model_dtype must be one of {', '.join(CHOICES)} or empty (got "
                                  f"{self.model_dtype!r}).")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainJobSpec":
        return from_dict(cls, d, "training spec")

    def train_configs(self) -> list[TrainConfig]:
        raw = self.train if isinstance(self.train, list) else [self.train]
        return [TrainConfig.from_dict(t, "train settings") for t in raw]


JOB_FIELDS = [f.name for f in fields(TrainJobSpec) if f.name not in ("train", "preset", "overrides")]
TRAIN_FIELDS = FLAT_FIELDS
GIVEN_FIELDS = list(dict.fromkeys(JOB_FIELDS + TRAIN_FIELDS + list(CACHE_KEYS)))


def buffer_contexts(tcfg: TrainConfig) -> int:
    """Shuffle buffer (contexts per refill) no bigger than the run needs: the default 512 contexts (65k tokens
    through the model before step 1) would keep a short run at step 0 for minutes on a CPU (~96 tokens a
    context kept is a safe guess)."""
    return max(32, min(512, -(-tcfg.optim.total_steps * tcfg.optim.batch_tokens // 96)))


def preset_base(preset: str | None, store=None) -> dict:
    """The partial spec a preset (or a saved template) stands for: job fields plus `train` settings."""
    from ..data.defaults import BUILTIN_MODEL_ID
    from .presets import PRESETS

    if not preset:
        return {"train": {}}
    if preset in PRESETS:
        p = PRESETS[preset]
        base = {"model_id": BUILTIN_MODEL_ID, "dataset_id": DEFAULT_DATASET, "train": dict(p.train),
                "cache": dict(p.cache), "model_dtype": p.model_dtype, "eval_contexts": p.eval_contexts}
        if p.hooks or p.hook:
            base["hook_names"] = list(p.hooks or [p.hook])
        return base
    if store is not None:
        from .templates import list_templates, load_template

        if preset in list_templates(store):
            return {"train": load_template(store, preset)}
    raise NotFoundError(f"Unknown preset or template {preset!r}; choose one of "
                          f"{', '.join([*PRESETS, *(_templates(store))])}.")


def _templates(store) -> list[str]:
    from .templates import list_templates

    return list_templates(store) if store is not None else []


def resolve(preset: str | None = None, store=None, **given) -> dict:
    """The preset (or template) with `given` on top, as a partial spec: every job default, a whole TrainConfig
    dict in `train`, the `cache`; model, dataset and hooks only where the preset or `given` say them."""
    given = {k: v for k, v in given.items() if v is not None}
    unknown = [k for k in given if k not in GIVEN_FIELDS]
    if unknown:
        raise ValidationError(unknown_keys_message(unknown, GIVEN_FIELDS, "training"))
    base = preset_base(preset, store)
    train = {**TrainConfig.flatten(base["train"]), **{k: given[k] for k in TRAIN_FIELDS if k in given}}
    out = {k: v for k, v in _job_defaults().items() if k not in ("model_id", "dataset_id", "hook_names")}
    out.update({k: base[k] for k in JOB_FIELDS if k in base and k != "cache"})
    out.update({k: given[k] for k in JOB_FIELDS if k in given and k not in ("cache", "stream")})
    out["cache"] = cache_options({**base.get("cache", {}), **(given.get("cache") or {}),
                                  **{CACHE_KEYS[k]: given[k] for k in CACHE_KEYS if k in given}})
    out["train"] = TrainConfig.from_dict(train).to_dict()  # refuses a bad value now, naming the field
    out["preset"] = preset or None
    out["overrides"] = _overrides(given, base)
    return out


def build(preset: str | None = None, store=None, **given) -> dict:
    """The "train" spec a preset plus the given fields describe (see the module doc), as a dict: its fields
    checked, and with a store the library too (`validate`)."""
    job = resolve(preset, store, **given)
    tcfg = TrainConfig.from_dict(job["train"])
    if not given.get("name"):
        job["name"] = f"{preset or tcfg.sae.architecture}-{job.get('dataset_id') or 'data'}"
    job["stream"] = {"seed": tcfg.optim.seed, "buffer_contexts": buffer_contexts(tcfg), **(given.get("stream") or {})}
    if given.get("eval_contexts") is None and job.get("eval_contexts") and store is not None:
        job["eval_contexts"] = _cap_to_heldout(store, job, job["eval_contexts"])  # a preset's size is "up to"
    spec = TrainJobSpec(**job).to_dict()
    if store is not None:
        validate(spec, store)  # every door refuses what cannot run before anything is queued
    return spec


def _job_defaults() -> dict:
    return {f.name: f.default if f.default is not MISSING else
            f.default_factory() if f.default_factory is not MISSING else None
            for f in fields(TrainJobSpec) if f.name in JOB_FIELDS}


def _overrides(given: dict, base: dict) -> dict:
    """The given fields whose value differs from the preset's (or the default)."""
    defaults, job_defaults = TrainConfig().flat(), _job_defaults()
    preset_train = TrainConfig.flatten(base["train"])
    out = {}
    for key, value in given.items():
        if key in TRAIN_FIELDS:
            before = preset_train.get(key, defaults[key])
        elif key in CACHE_KEYS:
            before = cache_options(base.get("cache"))[CACHE_KEYS[key]]
        else:
            before = base.get(key, job_defaults.get(key))
        if _normal(value) != _normal(before):
            out[key] = value
    return out


def _normal(value):
    return list(value) if isinstance(value, tuple) else value


def _cap_to_heldout(store, job: dict, wanted: int) -> int:
    """`wanted` held-out contexts, or all the dataset's held-out slice has if that is fewer."""
    from ..platform.errors import MistudioError
    from ..platform.store import read_json
    from ..data.tokenize import heldout_of, tokenized_dir

    try:
        folder = tokenized_dir(store, job["dataset_id"], job["model_id"])
        n = int(read_json(folder / "stats.json")["n_contexts"])
        return max(1, min(wanted, heldout_of(read_json(folder / "config.json"), n)["n_contexts"]))
    except (MistudioError, KeyError, ValueError, TypeError):
        return wanted  # validate() names the problem with this dataset


def validate(spec: dict, store=None) -> TrainJobSpec:
    """The one check of a "train" spec, at Validate, at submit and at worker start: fields and values always;
    with a store, also the library (model, hooks, tokenization, enough tokens, held-out contexts)."""
    check_keys(TrainJobSpec, spec, "training spec")
    s = TrainJobSpec.from_dict(spec)
    tcfgs = s.train_configs()
    cache_options(s.cache)
    if store is not None:
        from .plan import check_library

        check_library(store, s, tcfgs[0])
    return s


def estimate(store, spec: dict, probe: bool = True):
    """The one estimate (time per phase, memory, disk) of a "train" spec made by `build` (which checked it
    against the library): Validate, Start's message and the job card all show this (`plan.Plan`)."""
    from .plan import estimate_plan

    s = TrainJobSpec.from_dict(spec)
    return estimate_plan(store, s, s.train_configs()[0], probe=probe)
