"""One training path: the Training tab's Start and `python -m mistudio_core train` make the same job record, run
folder and library entry (held-out metrics with their source, train-batch numbers labelled)."""
from __future__ import annotations

import json

import torch

from mistudio_core.model import models as md
from mistudio_core.cli import main
from mistudio_core.jobs import JobRegistry, Runner
from pages import training
from pages.context import AppContext
from test_jobs_train import HOOK, make_train_home

FORM = dict(architecture="topk", expansion_factor=2, d_sae=64, k=4, l1_coefficient=5.0, lr=1e-3, batch_tokens=64,
            steps=8, lr_warmup_steps=0, seed=0)


def test_tab_and_cli_make_the_same_record(tmp_path, capsys):
    torch.set_num_threads(1)
    store = make_train_home(tmp_path)
    reg = JobRegistry(store)
    ctx = AppContext(store=store, jobs=reg, allowed_roots=[store.home])
    from pages.training_form import FORM as FORM_FIELDS

    values = [FORM[k] for k in FORM_FIELDS[:10]]  # an older caller's shorter list: the rest at their defaults
    status, _ = training.start(ctx, "tiny-ds", "tiny-llama", [HOOK], "tab", *values)
    assert status.startswith("✓ Queued"), status
    tab = Runner(store, registry=reg).run_here(reg.list("train")[0]["id"])
    md.clear_cache()
    assert main(["--home", str(store.home), "--json", "train", "--model", "tiny-llama", "--dataset", "tiny-ds",
                 "--hook", HOOK, "--architecture", "topk", "--d-sae", "64", "--k", "4", "--batch-tokens", "64",
                 "--steps", "8", "--device", "cpu", "--name", "cli"]) == 0
    cli = reg.get(json.loads(capsys.readouterr().out)["job_id"])
    assert tab["status"] == cli["status"] == "done" and tab["kind"] == cli["kind"] == "train"
    assert set(tab) - {"estimate"} == set(cli)  # the tab also keeps the estimate Start showed
    assert set(tab["result"]) == set(cli["result"])
    assert set(tab["spec"]) <= set(cli["spec"])  # the CLI names every field; the tab relies on defaults
    for rec in (tab, cli):
        run = reg.run_dir(rec["id"])
        assert (run / "metrics.jsonl").is_file() and (run / "checkpoint" / "LATEST.json").is_file()
        assert [h["step"] for h in reg.metrics_history(rec["id"])][-1] == 8
    a, b = (store.manifest("saes", r["result"]["sae_ids"][0]) for r in (tab, cli))
    assert set(a) == set(b) and set(a["metrics"]) == set(b["metrics"])
    assert a["metrics_source"]["split"] == b["metrics_source"]["split"] == "heldout"
    assert "ce_loss_recovered" in a["metrics"] and a["train_batch_metrics"]["step"] == 8
