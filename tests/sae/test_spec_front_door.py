"""One front door (#24): every door builds a training through `mistudio_core.spec.build`, so the Training tab's
Start and `train --preset NAME` submit the same spec field by field; a misspelt field from any door is refused
naming the nearest valid one; Validate and Start give the same estimate."""
from __future__ import annotations

import argparse

import pytest

from mistudio_core import spec
from mistudio_core.platform.errors import ValidationError
from mistudio_core.jobs import JobRegistry
from mistudio_core.sae.presets import PRESETS
from mistudio_core.sae.train_config import TrainConfig
from pages import training
from pages.context import AppContext
from pages.training_form import INPUTS


def _cli_spec(store, *argv) -> dict:
    from mistudio_core.cli.train import register, train_spec

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["train", *argv])
    args.store = store
    return train_spec(args)


def _tab_start(ctx, preset: str) -> dict:
    """What a user gets by picking `preset` in the tab (the form fills in) and pressing Start."""
    values = dict(zip(training.APPLIED, training.template_apply(ctx, preset)))
    values.update(preset=preset, eval_datasets=[])
    form = [values[k] for k in INPUTS]
    hooks = training.hooks_for(ctx, "smollm2-135m-instruct")["value"] if preset != "circuits" else \
        list(PRESETS[preset].hooks)
    status, _ = training.start(ctx, "sotu", "smollm2-135m-instruct", hooks, "", *form)
    assert status.startswith("✓ Queued"), status
    return ctx.jobs.list("train")[-1]["spec"]


@pytest.mark.integration
@pytest.mark.parametrize("preset", list(PRESETS))
def test_the_tab_and_the_cli_submit_the_same_spec_for_every_preset(real_store, tmp_path, preset, monkeypatch):
    from mistudio_core.sae import plan

    monkeypatch.setattr(plan, "_rates", lambda *a, **k: None)  # the FLOP-count estimate: no model load here
    jobs = JobRegistry(real_store)
    ctx = AppContext(store=real_store, jobs=jobs, allowed_roots=[real_store.home])
    before = {r["id"] for r in jobs.list("train")}
    try:
        tab = _tab_start(ctx, preset)
        cli = _cli_spec(real_store, "--preset", preset)
        assert tab == cli, {k: (tab[k], cli.get(k)) for k in tab if tab[k] != cli.get(k)}
        assert tab["preset"] == preset and tab["overrides"] == {}
        flat = TrainConfig.flatten(tab["train"])
        assert flat == {**flat, **PRESETS[preset].train}  # token noise and all
    finally:
        for r in jobs.list("train"):
            if r["id"] not in before:
                jobs.cancel(r["id"]) if r["status"] in ("queued", "running") else None
                jobs.delete(r["id"])


def test_overrides_are_recorded_and_misspelt_fields_are_refused_naming_the_nearest():
    built = spec.build("train", preset="quick", model_id="m", steps=100, lr=4e-3)
    assert built["preset"] == "quick"
    assert built["overrides"] == {"model_id": "m", "steps": 100}  # lr 4e-3 is the preset's own value
    assert built["train"]["data"]["token_noise_rank_offset"] == 1000
    assert built["stream"]["seed"] == built["train"]["optim"]["seed"]
    with pytest.raises(ValidationError, match="'lr_warmup_step' \\(did you mean 'lr_warmup_steps'\\?\\)"):
        spec.build("train", preset="quick", lr_warmup_step=3)
    bad = dict(built, train=dict(built["train"], token_noise_rat=0.3))
    with pytest.raises(ValidationError, match="did you mean 'token_noise_rate'"):
        spec.validate("train", bad)
    with pytest.raises(ValidationError, match="did you mean 'eval_contexts'"):
        spec.validate("train", dict(built, eval_context=3))


def test_eval_contexts_zero_is_refused_with_the_fix(real_store):
    with pytest.raises(ValidationError, match="eval_contexts must be a whole number >= 1"):
        _cli_spec(real_store, "--preset", "quick", "--eval-contexts", "0")


def test_validate_and_start_show_one_estimate_and_the_card_repeats_it(real_store, monkeypatch):
    from mistudio_core.sae import plan

    monkeypatch.setattr(plan, "_rates", lambda *a, **k: None)
    jobs = JobRegistry(real_store)
    ctx = AppContext(store=real_store, jobs=jobs, allowed_roots=[real_store.home])
    values = dict(zip(training.APPLIED, training.template_apply(ctx, "quick")), preset="quick", eval_datasets=[])
    form = [values[k] for k in INPUTS]
    hooks = ["blocks.8.hook_resid_post"]
    said = training.check(ctx, "sotu", "smollm2-135m-instruct", hooks, *form).removeprefix("✓ Ready to train: ")
    status, _ = training.start(ctx, "sotu", "smollm2-135m-instruct", hooks, "", *form)
    job = jobs.list("train")[-1]
    try:
        assert said.split("\n")[0] in status
        card, _ = training.card(ctx, job["id"])
        assert said.split("\n")[0] in card and "step 0 / ?" not in card
    finally:
        jobs.cancel(job["id"])
        jobs.delete(job["id"])


def test_a_transcoder_output_hook_the_model_lacks_is_refused_before_queueing(real_store):
    with pytest.raises(ValidationError, match="blocks.99.hook_mlp_out"):
        _cli_spec(real_store, "--preset", "quick", "--hook-out", "blocks.99.hook_mlp_out")
