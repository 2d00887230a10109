"""Training tab handlers on a tiny model: validation catches wrong datasets/hooks/sizes before a job starts,
Start queues a job the runner finishes into the library, the card and the watch stream show it, templates
round-trip."""
from __future__ import annotations

import asyncio
import shutil
import time

import pytest

from mistudio_core.jobs import JobRegistry, Runner
from mistudio_core.data.tokenize import tokenized_dir
from pages import training
from pages.context import AppContext
from pages.training_charts import METRICS
from pages.training_form import APPLIED, CACHE_FORM, FORM as FORM_FIELDS
from test_jobs_train import HOOK, make_train_home

FORM = dict(architecture="topk", expansion_factor=2, d_sae=64, k=4, l1_coefficient=5.0, lr=1e-3, batch_tokens=64,
            steps=12, lr_warmup_steps=0, seed=0, lr_decay_steps=0, target_l0=0, cache_mode="off",
            cache_dtype="bfloat16", cache_tokens=0)


def values(**over):
    return [dict(FORM, **over)[k] for k in FORM_FIELDS + CACHE_FORM]


@pytest.fixture
def ctx(tmp_path):
    store = make_train_home(tmp_path)
    return AppContext(store=store, jobs=JobRegistry(store), allowed_roots=[store.home])


def test_validation_names_the_problem(ctx):
    assert training.check(ctx, "tiny-ds", "tiny-llama", [HOOK], *values()).startswith("✓ Ready to train")
    bad_hook = training.check(ctx, "tiny-ds", "tiny-llama", ["blocks.99.hook_resid_post"], *values())
    assert bad_hook.startswith("⚠") and "blocks.0.hook_resid_pre" in bad_hook
    assert "larger than the SAE width" in training.check(ctx, "tiny-ds", "tiny-llama", [HOOK], *values(k=100))
    with ctx.store.create("datasets", "other", {"tokenizations": []}, artifact_id="other-ds"):
        pass
    msg = training.check(ctx, "other-ds", "tiny-llama", [HOOK], *values())
    assert "not tokenized for 'tiny-llama'" in msg
    assert "fewer than one batch" in training.check(ctx, "tiny-ds", "tiny-llama", [HOOK], *values(batch_tokens=10**6))
    assert ctx.jobs.list() == []


def test_start_runs_to_the_library_and_the_card_shows_it(ctx):
    status, _ = training.start(ctx, "tiny-ds", "tiny-llama", [HOOK], "page-test", *values())
    assert status.startswith("✓ Queued")
    job_id = ctx.jobs.list("train")[0]["id"]
    runner = Runner(ctx.store).start()
    try:
        deadline = time.time() + 120
        while ctx.jobs.get(job_id)["status"] in training.ACTIVE and time.time() < deadline:
            time.sleep(0.5)
    finally:
        runner.stop()
    assert ctx.jobs.get(job_id)["status"] == "done", ctx.jobs.get(job_id).get("error")
    md, fig = training.card(ctx, job_id)
    sae_id = ctx.store.list("saes")[0]["id"]
    assert "In the SAE library" in md and sae_id in md
    assert len(fig.data) == len(METRICS) and len(fig.data[0].x) >= 2
    table = training.jobs_table(ctx)
    assert table.iloc[0]["status"] == "done" and table.iloc[0]["progress"] == "100%"

    async def drain():
        return [u async for u in training.watch(ctx, None)]

    updates = asyncio.run(drain())
    assert len(updates) == 1  # nothing active: one update, then the stream ends


def test_templates_save_apply_export_import(ctx, tmp_path):
    status, _ = training.template_save(ctx, "my small", *values(k=7))
    assert status.startswith("✓")
    assert training.template_apply(ctx, "my-small")[APPLIED.index("k")] == 7
    quick = dict(zip(APPLIED, training.template_apply(ctx, "quick")))
    assert quick["steps"] == 120 and [quick[k] for k in CACHE_FORM] == ["use", "bfloat16", 131_072]
    assert (quick["token_noise_contexts"], quick["token_noise_rate"], quick["eval_contexts"]) == (0.5, 0.7, 32)
    status, path = training.template_export(ctx, "exported", *values(k=9))
    status, _ = training.template_import(ctx, path)
    assert status.startswith("✓") and training.template_apply(ctx, "exported")[APPLIED.index("k")] == 9
    bad = tmp_path / "bad.json"
    bad.write_text('{"train": {"lr": 1e-3, "warp_speed": 9}}')
    assert "warp_speed" in training.template_import(ctx, str(bad))[0]


def test_read_only_refuses_start(ctx):
    ctx.read_only = True
    status, _ = training.start(ctx, "tiny-ds", "tiny-llama", [HOOK], "", *values())
    assert "read-only" in status and ctx.jobs.list() == []


def test_old_api_argument_lists_still_work_and_mean_no_cache(ctx):
    old = values()[:10]  # the form before lr_decay_steps, target_l0 and the cache options existed
    assert training.check(ctx, "tiny-ds", "tiny-llama", [HOOK], *old).startswith("✓ Ready to train")
    assert training.form_spec(ctx, "tiny-ds", "tiny-llama", [HOOK], "", old)["cache"]["mode"] == "off"


def test_validate_estimates_capture_and_disk_and_warns_about_lambda(ctx):
    msg = training.check(ctx, "tiny-ds", "tiny-llama", [HOOK], *values(cache_mode="use", steps=40))
    assert "captures" in msg and "activation cache" in msg and "disk" in msg and "measured on this machine" in msg
    tiny_l1 = training.check(ctx, "tiny-ds", "tiny-llama", [HOOK], *values(architecture="standard",
                                                                            l1_coefficient=0.001))
    assert "far below the useful range" in tiny_l1 and "target L0" in tiny_l1
    with_target = training.check(ctx, "tiny-ds", "tiny-llama", [HOOK], *values(architecture="standard",
                                                                                l1_coefficient=0.001, target_l0=8))
    assert "useful range" not in with_target


def test_builtin_model_defaults_to_the_tutorial_hook(ctx):
    from mistudio_core.data.defaults import BUILTIN_MODEL_ID

    hooks = [f"blocks.{i}.hook_resid_post" for i in range(30)]
    with ctx.store.create("models", "b", {"hook_points": hooks}, artifact_id=BUILTIN_MODEL_ID):
        pass
    assert training.hooks_for(ctx, BUILTIN_MODEL_ID)["value"] == ["blocks.8.hook_resid_post"]


def test_after_a_restart_the_latest_training_is_selected(ctx):
    tiny = {"model_id": "tiny-llama", "dataset_id": "tiny-ds", "hook_names": [HOOK], "train": {"batch_tokens": 64}}
    first = ctx.jobs.submit("train", tiny)
    ctx.jobs.cancel(first)
    second = ctx.jobs.submit("train", tiny)
    ctx.jobs.cancel(second)

    async def first_update():
        return [u async for u in training.watch(ctx, None)][0]

    assert asyncio.run(first_update())[3]["value"] == second


def test_topk_chart_says_l0_is_fixed_and_a_single_point_shows():
    fig = training.metrics_figure([{"step": 1, "loss": 2.0, "mse": 2.0, "l0": 4.0}], "j", "topk", 4)
    titles = [a.text for a in fig.layout.annotations]
    assert "L0 (fixed at k=4)" in titles and "MSE" in " ".join(titles) and titles.count("loss") == 0
    assert all("markers" in t.mode for t in fig.data) and fig.layout.xaxis.title.text == "step"



def test_start_adds_the_out_of_domain_datasets_to_the_final_evaluation(ctx):
    with ctx.store.create("datasets", "recipes", {"n_docs": 1, "tokenizations": []}, artifact_id="recipes"):
        pass
    status, _ = training.start(ctx, "tiny-ds", "tiny-llama", [HOOK], "ood", *values(), ["recipes"])
    assert "not tokenized for 'tiny-llama'" in status and ctx.jobs.list() == []  # refused at Start, not after
    ctx.store.update_manifest("datasets", "recipes", tokenizations=["tiny-llama"])
    shutil.copytree(tokenized_dir(ctx.store, "tiny-ds", "tiny-llama"),
                    tokenized_dir(ctx.store, "recipes", "tiny-llama"))
    assert "recipes" in training.eval_choices(ctx, "tiny-llama", "tiny-ds")["choices"]
    status, _ = training.start(ctx, "tiny-ds", "tiny-llama", [HOOK], "ood", *values(), ["recipes"])
    assert status.startswith("✓"), status
    assert ctx.jobs.list()[0]["spec"]["eval_datasets"] == ["recipes"]
