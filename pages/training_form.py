"""The Training tab's form as a view of the "train" spec: which input is which spec field, and the conversions
between the form's values and `mistudio_core.spec.build`'s fields. The "Advanced" inputs are generated from the
spec's dataclasses (type → widget, field doc → its info line), so a new `TrainConfig` field appears here, on the
CLI and in the API schema without touching this file.

The inputs' order is the API's argument order: new inputs go at the end so callers that send the older, shorter
argument lists keep working (a missing trailing value means "not given").
"""
from __future__ import annotations

import dataclasses

import gradio as gr

from mistudio_core.platform.records import coerce, field_docs, field_type, optional
from mistudio_core.sae.train_config import PART_OF, PARTS, TrainConfig
from mistudio_core.sae.train_spec import FIELD_CHOICES, TrainJobSpec

FORM = ["architecture", "expansion_factor", "d_sae", "k", "l1_coefficient", "lr", "batch_tokens", "steps",
        "lr_warmup_steps", "seed", "lr_decay_steps", "target_l0"]
CACHE_FORM = ["cache_mode", "cache_dtype", "cache_tokens"]
PRECISION_FORM = ["autocast", "tf32"]
JOB_ADVANCED = ["eval_contexts", "eval_downstream", "model_dtype", "checkpoint_seconds"]
_NOT_IN_FORM = {"device", *FORM, *PRECISION_FORM}
# TrainConfig's flat field order before it was split into parts: the API's argument order, which older callers
# rely on. Fields added since follow in their parts' order.
_API_ORDER = ["architecture", "d_sae", "expansion_factor", "k", "l1_coefficient", "lr", "adam_betas", "batch_tokens",
              "steps", "tokens", "lr_warmup_steps", "lr_decay_steps", "l1_warmup_steps", "target_l0", "target_l0_steps",
              "dead_feature_window", "aux_k", "aux_coefficient", "normalize_activations", "b_dec_init",
              "batchtopk_threshold_lr", "seed", "dtype", "device", "autocast", "tf32", "metrics_every",
              "checkpoint_every", "token_noise_contexts", "token_noise_rate", "token_noise_rank_offset",
              "distribute_saes", "matryoshka_prefixes", "jumprelu_bandwidth", "jumprelu_l0_coefficient",
              "jumprelu_threshold_lr_scale", "jumprelu_init_threshold", "hook_out", "skip_transcoder"]
TRAIN_ADVANCED = [n for n in dict.fromkeys(_API_ORDER + list(PART_OF)) if n not in _NOT_IN_FORM]
PART_TITLES = {"sae": "The SAE", "optim": "Optimiser", "data": "Data: token noise", "runtime": "Runtime",
               "job": "The job"}
ADVANCED = TRAIN_ADVANCED + JOB_ADVANCED
# Every input after dataset, model, hooks (and name, for Start), in the API's order.
INPUTS = FORM + CACHE_FORM + ["eval_datasets"] + PRECISION_FORM + ["preset"] + ADVANCED
APPLIED = [k for k in INPUTS if k not in ("eval_datasets", "preset")]  # what picking a preset or template sets
NO_PRESET = ("— none: the fields as set —", "")
ZERO_MEANS_NONE = {"d_sae", "target_l0", "cache_tokens"}  # the main form's number boxes show 0 for "not set"


def _owner(name: str):
    """The dataclass that declares form field `name`: a part of TrainConfig or the job spec."""
    return PARTS[PART_OF[name]] if name in PART_OF else TrainJobSpec


def given_from_values(values: list) -> tuple[str | None, dict]:
    """(preset, fields for `spec.build`) from the form's values in INPUTS order."""
    raw = dict(zip(INPUTS, values))
    preset = raw.pop("preset", None) or None
    given: dict = {}
    for name, value in raw.items():
        if name in ZERO_MEANS_NONE and value in (0, 0.0, "0"):
            value = None
        if name == "eval_datasets":
            given[name] = [d for d in ([value] if isinstance(value, str) else value or []) if d] or None
        elif name in CACHE_FORM:
            given[name] = int(value) if name == "cache_tokens" and value is not None else value or None
        else:
            given[name] = coerce(_owner(name), name, value)
    if given.get("architecture") not in (None, "standard", "jumprelu"):
        given["target_l0"] = None  # the target-L0 box applies to the architectures that chase an L0
    if "cache_mode" not in raw and not preset:
        given["cache_mode"] = "off"  # older callers without the cache inputs meant no cache
    return preset, given


def values_from_spec(spec: dict) -> list:
    """The form's values (everything after `preset` in INPUTS is included) for a built spec."""
    train = spec["train"][0] if isinstance(spec["train"], list) else spec["train"]
    train = TrainConfig.flatten(train)
    cache = spec.get("cache") or {}
    out = []
    for name in INPUTS:
        if name == "preset":
            out.append(spec.get("preset"))
        elif name == "eval_datasets":
            out.append(list(spec.get(name) or []))
        elif name in CACHE_FORM:
            value = cache.get(name.removeprefix("cache_"))
            out.append({"cache_mode": "off", "cache_dtype": "bfloat16"}.get(name, 0) if value is None else value)
        elif name == "tokens":
            out.append("")  # the form shows the run's length as steps (tokens / batch, rounded up)
        elif name == "steps":
            out.append(TrainConfig.from_dict(train).optim.total_steps)
        elif name in train:
            value = train[name]
            out.append(0 if value is None and name in ZERO_MEANS_NONE else _shown(value))
        else:
            out.append(_shown(spec.get(name)))
    return out


def _shown(value):
    if value is None:
        return ""  # an empty box: the field's default
    return ", ".join(str(v) for v in value) if isinstance(value, (list, tuple)) else value


def advanced_widgets(ui: dict) -> None:
    """One input per ADVANCED field, typed from the dataclasses, with the field's doc as its info line, under a
    heading per part (the inputs' API order stays ADVANCED's)."""
    for part in [*PARTS, "job"]:
        names = [n for n in ADVANCED if PART_OF.get(n, "job") == part]
        if names:
            gr.Markdown(f"**{PART_TITLES[part]}**")
        for name in names:
            _widget(ui, name)


def _widget(ui: dict, name: str) -> None:
    owner = _owner(name)
    f, docs = owner.__dataclass_fields__[name], field_docs(owner)
    default = None if f.default is dataclasses.MISSING else f.default
    label, info = name.replace("_", " "), docs.get(name, "")
    kind = field_type(owner, name)
    if name in FIELD_CHOICES:
        choices = list(FIELD_CHOICES[name]) + ([""] if optional(owner, name) else [])
        ui[name] = gr.Dropdown(choices, value=default or "", label=label, info=info)
    elif kind is bool:
        ui[name] = gr.Checkbox(bool(default), label=label, info=info)
    elif kind in (int, float) and default is not None:
        ui[name] = gr.Number(default, label=label, info=info, precision=0 if kind is int else None)
    elif kind in (int, float):  # optional: a box left empty means "the default", which a number box can't say
        ui[name] = gr.Textbox("", label=label, info=info, placeholder="empty: the default")
    else:
        ui[name] = gr.Textbox(_shown(default) or "", label=label, info=info)
