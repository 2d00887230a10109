"""Stored evaluations: the "evaluate" job on any library SAE (imported ones included), records per (SAE, dataset,
split) with formulas and provenance, out-of-domain evaluation at the end of training, and bad input refused with
the fix named; a cancelled evaluation stores nothing."""
from __future__ import annotations

import pytest
from safetensors.torch import save_file

from mistudio_core import spec as spec_mod
from mistudio_core.platform.errors import MistudioError, ValidationError
from mistudio_core.jobs import JobRegistry, Runner
from mistudio_core.sae.eval_job import submit_eval
from mistudio_core.sae import evals
from mistudio_core.sae.config import SAEConfig
from mistudio_core.sae.library import register_sae
from mistudio_core.sae.model import SAE
from mistudio_core.platform.store import write_json_atomic
from test_jobs_train import make_train_home, spec, one_thread  # noqa: F401  (autouse: one thread)
from tiny_models import random_tokens

HOOK = "blocks.1.hook_resid_post"


def add_dataset(store, dataset_id: str, model_id: str, n: int, seed: int) -> None:
    """A dataset tokenized (directly, without a tokenizer) for `model_id`: n contexts of 16 random tokens."""
    with store.create("datasets", dataset_id, {"n_docs": n, "tokenizations": [model_id]}, artifact_id=dataset_id) as t:
        out = t / "tokenized" / model_id
        out.mkdir(parents=True)
        save_file({"tokens": random_tokens(n, 16, seed=seed).int()}, str(out / "tokens.safetensors"))
        write_json_atomic(out / "config.json", {"context_size": 16, "prepend_bos": True, "bos_token_id": 1})
        write_json_atomic(out / "stats.json", {"n_contexts": n, "n_tokens": n * 16})


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    store = make_train_home(tmp_path_factory.mktemp("evals"))
    add_dataset(store, "ood", "tiny-llama", 40, seed=7)  # 40 contexts: 10 held out
    add_dataset(store, "other-model-ds", "some-other-model", 40, seed=8)
    return store


def imported_sae(store, d_in: int = 32) -> str:
    sae = SAE(SAEConfig("topk", d_in, 64, k=4, metadata={"hook_name": HOOK}), seed=1)
    return register_sae(store, sae, "imported", {"model_id": "tiny-llama", "hook_name": HOOK, "source": "imported"},
                        metrics={"explained_variance": 0.5})["id"]


def run(store, job_id: str) -> dict:
    rec = Runner(store).run_here(job_id)
    assert rec is not None
    return rec


def test_evaluate_job_stores_a_record_per_dataset_and_split(home):
    sae_id = imported_sae(home)
    reg = JobRegistry(home)
    rec = run(home, submit_eval(reg, {"sae_id": sae_id, "dataset_id": "ood", "n_contexts": 6}))
    assert rec["status"] == "done", rec.get("traceback")
    assert rec["progress"]["step"] == 6 and rec["result"]["split"] == "heldout"
    record = evals.load_eval(home, sae_id, "ood", "heldout")
    assert record["n_contexts"] == 6 and record["n_tokens"] == 6 * 15 and record["model_id"] == "tiny-llama"
    for name in ("explained_variance", "fvu", "normalized_mse", "l0", "dead_fraction", "ce_clean", "ce_spliced",
                 "ce_zero_ablated", "ce_loss_recovered", "kl_divergence"):
        assert record["metrics"][name]["formula"], name
    ev = record["metrics"]["explained_variance"]["value"]
    assert record["metrics"]["fvu"]["value"] == pytest.approx(1 - ev)
    manifest = home.manifest("saes", sae_id)  # an imported SAE's first stored evaluation becomes its headline
    assert manifest["metrics_source"]["dataset_id"] == "ood" and manifest["metrics"]["explained_variance"] == ev
    assert manifest["unlabelled_metrics"] == {"explained_variance": 0.5}
    run(home, submit_eval(reg, {"sae_id": sae_id, "dataset_id": "tiny-ds", "split": "train", "n_contexts": 4}))
    assert [(r["dataset_id"], r["split"]) for r in evals.list_evals(home, sae_id)] == [("ood", "heldout"),
                                                                                       ("tiny-ds", "train")]
    assert ("ood", "heldout") in evals.evaluations(home)
    rows = evals.comparison(home, "ood", "heldout")
    assert [r["sae_id"] for r in rows] == [sae_id] and rows[0]["explained_variance"] == ev
    assert home.manifest("saes", sae_id)["metrics_source"]["dataset_id"] == "ood", "the headline stays put"
    assert evals.source_label(manifest["metrics_source"]) == "ood held-out"
    assert evals.source_label({"split": "train_batch"}) == "train batch"


@pytest.mark.parametrize("change, fix", [
    ({"dataset_id": "other-model-ds"}, "Tokenize it for tiny-llama"),
    ({"n_contexts": 13}, "has 12 held-out contexts.*fewer than the 13.*at most 12"),
    ({"split": "test"}, "use one of heldout, train"),
])
def test_bad_input_names_the_fix_before_queueing(home, change, fix):
    sae_id = imported_sae(home)
    reg = JobRegistry(home)
    before = len(reg.list())
    with pytest.raises(MistudioError, match=fix):
        submit_eval(reg, {"sae_id": sae_id, "dataset_id": "tiny-ds", **change})
    assert len(reg.list()) == before, "nothing was queued"


def test_an_sae_of_another_width_is_refused(home):
    narrow = imported_sae(home, d_in=16)
    with pytest.raises(MistudioError, match="(?i)width 16.*evaluate it with the model it was trained on"):
        submit_eval(JobRegistry(home), {"sae_id": narrow, "dataset_id": "tiny-ds"})


def test_cancelled_evaluation_stores_nothing(home, monkeypatch):
    from mistudio_core.jobs.context import JobContext

    sae_id = imported_sae(home)
    reg = JobRegistry(home)
    report = JobContext.report

    def cancel_on_first_report(self, step, total=None, **metrics):
        report(self, step, total, **metrics)
        reg.cancel(self.job_id)
        self._last_poll = 0.0
    monkeypatch.setattr(JobContext, "report", cancel_on_first_report)
    rec = run(home, submit_eval(reg, {"sae_id": sae_id, "dataset_id": "tiny-ds", "n_contexts": 12,
                                      "batch_size": 2}))
    assert rec["status"] == "cancelled" and rec["progress"]["step"] < 12
    assert evals.list_evals(home, sae_id) == [] and "metrics_source" not in home.manifest("saes", sae_id)


def test_training_evaluates_held_out_and_out_of_domain(home):
    reg = JobRegistry(home)
    rec = run(home, reg.submit("train", dict(spec(steps=6), eval_datasets=["ood"], eval_contexts=8)))
    assert rec["status"] == "done", rec.get("traceback")
    (sae_id,) = rec["result"]["sae_ids"]
    m = home.manifest("saes", sae_id)
    assert m["metrics_source"] == {"dataset_id": "tiny-ds", "split": "heldout", "n_contexts": 8, "n_tokens": 120}
    assert {(r["dataset_id"], r["split"]) for r in evals.list_evals(home, sae_id)} == {("tiny-ds", "heldout"),
                                                                                       ("ood", "heldout")}
    assert m["train_batch_metrics"]["step"] == 6 and "ce_loss_recovered" in m["metrics"]
    (line,) = evals.headline_lines(home, [sae_id])
    assert "tiny-ds held-out" in line and "CE loss recovered" in line


def test_training_with_too_few_held_out_contexts_fails_before_training(home):
    reg = JobRegistry(home)
    with pytest.raises(ValidationError, match="eval_contexts 50 is more than the 12 held-out contexts"):
        spec_mod.validate("train", dict(spec(steps=4), eval_contexts=50), home)  # what every door runs first
    rec = run(home, reg.submit("train", dict(spec(steps=4), eval_contexts=50)))  # a raw submit: the worker's check
    assert rec["status"] == "failed" and "eval_contexts 50 is more than the 12 held-out contexts" in rec["error"]
    assert rec["checkpoint"] is None and reg.metrics_history(rec["id"]) == []
