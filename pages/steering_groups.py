"""Steering tab, feature groups part: save the filled slots as a named group, load a group back into the slots (to
steer with all its features together), generate with a whole group (any number of features, past the slots), export
it as JSON. Also the slot parsing the whole tab shares."""
from __future__ import annotations

import functools

import gradio as gr

from mistudio_core.platform.errors import MistudioError, ValidationError
from mistudio_core.steering import groups as sg
from mistudio_core.steering.generate import SamplingConfig, compare_stream
from mistudio_core.steering.loader import check_steerable, load_target, stats_for
from mistudio_core.steering.methods import SteerFeature, SteeringConfig

from .common import failed, guarded, ok, require_writable
from .context import AppContext
from .steering_layout import N_SLOTS
from .steering_lock import GENERATE_LOCK
from .steering_sweep import readings_md


def empty_slot(index) -> bool:
    return index is None or str(index).strip() == ""


def slot_features(slots: tuple) -> list[SteerFeature]:
    """(index, strength) × N_SLOTS → the features of the filled slots (an empty index box is an unused slot)."""
    feats = []
    for k in range(0, len(slots), 2):
        index, strength = slots[k], slots[k + 1]
        if empty_slot(index):
            continue
        try:
            i = int(str(index).strip())
        except ValueError:
            raise ValidationError(f"Feature slot {k // 2 + 1} holds {str(index)!r}, not a feature index. Type a "
                                  "whole number such as 123, or empty the box to leave the slot unused.") from None
        feats.append(SteerFeature(i, 0.0 if strength is None or strength == "" else strength))  # NaN/inf refused
    return feats


def _group_choices(ctx: AppContext, sae_id) -> list:
    return [(g["name"], g["id"]) for g in sg.list_groups(ctx.store, sae_id or None)]


@guarded(2)
def save_group(ctx: AppContext, name, sae_id, method, positions, normalize, *slots) -> tuple:
    """Save the slots' features and strengths (with the method) as a named feature group of this SAE."""
    """Save the filled slots (features + strengths, method) as a named group; dead features are refused."""
    require_writable(ctx)
    feats = slot_features(slots)
    steering = SteeringConfig(feats, method=method, normalize=bool(normalize), positions=positions)
    rec = sg.save_group(ctx.store, name, sae_id, steering, stats=stats_for(ctx.store, sae_id) if sae_id else {})
    return (ok(f"Saved group `{rec['name']}` ({len(feats)} feature(s)); load it to steer with all of them."),
            gr.update(choices=_group_choices(ctx, sae_id), value=rec["id"]))


@guarded(4 + 2 * N_SLOTS)
def load_group(ctx: AppContext, group_id) -> tuple:
    """Put a saved feature group's SAE, method, positions, features and strengths back into the slots."""
    """A saved group into the slots (and its SAE and method): Generate then steers with all of them together."""
    if not group_id:
        raise ValidationError("Pick a saved group first.")
    rec = sg.load_group(ctx.store, group_id)
    cfg = sg.group_config(rec)
    if len(cfg.features) > N_SLOTS:
        raise ValidationError(f"Group `{rec['name']}` has {len(cfg.features)} features but the tab has {N_SLOTS} "
                              "slots; steer with all of them by **Generate with group** (or the CLI's `steer SAE "
                              "PROMPT --group ID`).")
    slots: list = ["", 0.0] * N_SLOTS
    for k, f in enumerate(cfg.features):
        slots[2 * k], slots[2 * k + 1] = str(f.index), f.strength
    return (ok(f"Loaded group `{rec['name']}` into the slots."), rec["sae_id"], cfg.method, cfg.positions, *slots)


def generate_group(ctx: AppContext, group_id, prompt, max_new, temperature, top_p, seed, chat):
    """Stream (status, baseline, steered, readings) steered by every feature of a saved group — any number of them
    (the slots hold `N_SLOTS`) — with the group's method and positions, on the tab's prompt and sampling knobs."""
    try:
        if not group_id:
            raise ValidationError("Pick a saved group first.")
        rec = sg.load_group(ctx.store, group_id)
        steering = sg.group_config(rec)
        check_steerable(stats_for(ctx.store, rec["sae_id"]), steering.features)   # before the model loads
        sampling = SamplingConfig(max_new_tokens=int(max_new), temperature=float(temperature), top_p=float(top_p),
                                  seed=int(seed), chat=bool(chat))
        t = load_target(ctx.store, rec["sae_id"])
        with GENERATE_LOCK:
            for st in compare_stream(t.model, t.tokenizer, t.sae, t.hook_name, prompt, steering, sampling):
                done = ok(f"done · group `{rec['name']}`, {len(steering.features)} feature(s)")
                yield (done if st["done"] else "generating…"), st["baseline"], st["steered"], readings_md(st)
    except MistudioError as e:  # a generator cannot use `guarded`: report the problem as the status
        yield failed(str(e)), gr.skip(), gr.skip(), gr.skip()


@guarded(2)
def export_group(ctx: AppContext, group_id) -> tuple:
    """Export a saved feature group as a JSON file (format `mistudio.feature_group`) to download or share."""
    if not group_id:
        raise ValidationError("Pick a saved group first.")
    path = sg.export_group(ctx.store, group_id)
    return ok(f"Exported to `{path}`."), str(path)


def wire_groups(ctx: AppContext, c: dict) -> None:
    bind, sae, status, slots = functools.partial, c["sae"], c["status"], c["slots"]
    c["save_group"].click(bind(save_group, ctx), [c["group_name"], sae, c["method"], c["positions"], c["normalize"],
                                                   *slots], [status, c["group"]], api_name="steering_save_group")
    c["load_group"].click(bind(load_group, ctx), [c["group"]], [status, sae, c["method"], c["positions"], *slots],
                          api_name="steering_load_group")
    c["export_group"].click(bind(export_group, ctx), [c["group"]], [status, c["group_file"]],
                            api_name="steering_export_group")
    c["group_generate"].click(bind(generate_group, ctx), [c["group"], c["prompt"], *[c[k] for k in (
        "max_new", "temperature", "top_p", "seed", "chat")]], [status, c["baseline"], c["steered"], c["readings"]],
                              api_name="steering_group_generate")
    sae.change(lambda s: gr.update(choices=_group_choices(ctx, s)), [sae], [c["group"]],
               api_name="steering_list_groups", api_visibility="undocumented")
