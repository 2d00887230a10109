"""SAEs tab: library columns that name where each number comes from, "Evaluate on…" as a job (status, cancel, bad
input explained), and the table comparing SAEs on one evaluation. Handlers are called directly on a tiny model."""
from __future__ import annotations

import asyncio

import gradio as gr
import pytest
import torch

from mistudio_core.model import models as md
from mistudio_core.jobs import JobRegistry, Runner
from mistudio_core.sae.config import SAEConfig
from mistudio_core.sae.library import register_sae
from mistudio_core.sae.model import SAE
from pages import saes, saes_eval, training
from pages.context import AppContext
from test_jobs_train import HOOK, make_train_home, spec
from test_sae_evals import add_dataset


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    torch.set_num_threads(1)
    md.clear_cache()
    store = make_train_home(tmp_path_factory.mktemp("saes-page"))
    add_dataset(store, "elsewhere", "another-model", 20, seed=3)
    reg = JobRegistry(store)
    rec = Runner(store, registry=reg).run_here(reg.submit("train", dict(spec(steps=4), name="trained")))
    assert rec["status"] == "done", rec.get("traceback")
    sae = SAE(SAEConfig("topk", 32, 64, k=4, metadata={"hook_name": HOOK}), seed=5)
    register_sae(store, sae, "imported", {"model_id": "tiny-llama", "hook_name": HOOK, "source": "imported"},
                 metrics={"explained_variance": 0.25}, sae_id="imported-sae")
    c = AppContext(store=store, jobs=reg, allowed_roots=[store.home])
    c.trained = rec["result"]["sae_ids"][0]
    c.train_job = rec["id"]
    return c


def run_eval(ctx, sae_id: str, n: int = 6) -> str:
    status, job_id = saes_eval.start(ctx, sae_id, "tiny-ds", "heldout", n)
    assert status.startswith("✓ Queued"), status
    assert Runner(ctx.store, registry=ctx.jobs).run_here(job_id)["status"] == "done"
    return job_id


def test_library_columns_name_dataset_and_split(ctx):
    lib = saes.library(ctx)
    assert {"EV (tiny-ds held-out)", "CE rec. (tiny-ds held-out)", "L0 (tiny-ds held-out)", "EV (train batch)",
            "EV (source unknown)"} <= set(lib.columns)
    trained = lib[lib["id"] == ctx.trained].iloc[0]
    assert trained["CE rec. (tiny-ds held-out)"] != "" and trained["EV (train batch)"] != ""
    imported = lib[lib["id"] == "imported-sae"].iloc[0]
    assert imported["EV (source unknown)"] == "0.25" and imported["EV (tiny-ds held-out)"] == ""
    _, head, _, record = saes.detail(ctx, ctx.trained)
    assert "CE rec." in head and "on tiny-ds held-out" in head
    shown = record["evals"]["tiny-ds held-out"]
    assert shown["n_contexts"] == 12 and "CE_zero_ablated" in shown["metrics"]["ce_loss_recovered"]["formula"]


def test_training_card_shows_held_out_ce_recovered(ctx):
    text, _ = training.card(ctx, ctx.train_job)
    assert "tiny-ds held-out" in text and "CE loss recovered" in text


def test_evaluate_on_runs_a_job_and_compares_saes(ctx):
    job_a = run_eval(ctx, ctx.trained)
    line = saes_eval.job_status(ctx, job_a)
    assert line.startswith("✓") and "explained variance" in line and "tiny-ds held-out" in line
    run_eval(ctx, "imported-sae")
    updates = asyncio.run(_collect(saes_eval.watch(ctx, job_a, None)))
    assert len(updates) == 1 and updates[0][0] == line  # a finished job: one update, then the stream ends
    choices = saes_eval.compare_choices(ctx, None)
    assert ("tiny-ds held-out", "tiny-ds__heldout") in choices["choices"] and choices["value"] == "tiny-ds__heldout"
    table = saes_eval.compare(ctx, "tiny-ds__heldout")
    assert set(table["SAE"]) == {ctx.trained, "imported-sae"} and (table["contexts"] == 6).all()
    assert table.iloc[0]["SAE"] == ctx.trained, "sorted by CE loss recovered: the trained SAE beats a random one"
    lib = saes.library(ctx)  # the imported SAE's first stored evaluation became its headline
    assert lib[lib["id"] == "imported-sae"].iloc[0]["EV (tiny-ds held-out)"] != ""


async def _collect(gen) -> list:
    return [u async for u in gen]


def test_bad_input_and_cancel_are_explained(ctx):
    status, _ = saes_eval.start(ctx, ctx.trained, "elsewhere", "heldout", 4)
    assert status.startswith("⚠") and "Tokenize it for tiny-llama" in status
    status, _ = saes_eval.start(ctx, ctx.trained, "tiny-ds", "heldout", 500)
    assert status.startswith("⚠") and "at most 12" in status
    assert saes_eval.cancel(ctx, None).startswith("⚠")
    status, job_id = saes_eval.start(ctx, ctx.trained, "tiny-ds", "train", 4)
    assert "is now cancelled" in saes_eval.cancel(ctx, job_id)
    assert saes_eval.datasets_for(ctx, ctx.trained, None)["choices"] == ["tiny-ds"]  # only its model's datasets


def test_page_builds_with_unique_named_events(ctx):
    with gr.Blocks() as demo:
        saes.build(ctx)
    names = [d.api_name for d in demo.fns.values() if d.api_name]
    assert len(names) == len(set(names))
    assert {"saes_eval_start", "saes_eval_watch", "saes_eval_cancel", "saes_eval_datasets",
            "saes_compare"} <= set(names)
