"""The "train" job on the activation cache: it captures the TRAIN split once, a second job reuses it, rows carry
epochs, the card's line says what the job does, and cancel + resume on the cache equals an uninterrupted run."""
from __future__ import annotations

import pytest

from mistudio_core.actcache import cache as actcache
from mistudio_core.platform.errors import ValidationError
from mistudio_core.jobs import Runner
from test_jobs_train import (assert_same_weights, make_train_home, one_thread,  # noqa: F401  (autouse: one thread)
                             run_to_end, spec, weights)
from test_jobs_kill import wait_until


CACHE = {"mode": "use", "dtype": "float32", "tokens": 600}  # more than the train split holds: capped at it


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    r = Runner(make_train_home(tmp_path_factory.mktemp("cache")), poll_interval=0.05, lock_retry=0.1).start()
    yield r
    r.stop(timeout=30)


def cached_spec(**train):
    return {**spec(**{"steps": 24, **train}), "cache": dict(CACHE), "preset": "quick"}


@pytest.fixture(scope="module")
def reference(runner):
    reg = runner.registry
    rec = run_to_end(reg, reg.submit("train", cached_spec()))
    return rec, weights(runner.store, rec["result"]["sae_ids"][0])


def test_first_job_captures_the_train_split_once_and_trains_several_epochs(runner, reference):
    rec, _ = reference
    (cache,) = actcache.list_caches(runner.store)
    assert cache["n_tokens"] == 36 * 15 and cache["full_split"]  # 48 contexts less 12 held out, 15 kept each
    assert cache["bytes"] > 540 * 32 * 4
    assert cache["identity"]["contexts"] != "all"  # keyed by the train split's ids: held-out rows never cached
    history = runner.registry.metrics_history(rec["id"])
    assert history[-1]["epoch"] == pytest.approx(24 * 64 / 540)  # ~2.8 epochs
    log = runner.registry.log_text(rec["id"])
    assert "capturing 600 tokens" in log and "(100%)" in log  # capture progress on the card
    assert "epochs" in log and "evaluating" in log


def test_second_job_reuses_the_cache_and_gets_the_same_weights(runner, reference):
    rec = run_to_end(runner.registry, runner.registry.submit("train", cached_spec()))
    assert len(actcache.list_caches(runner.store)) == 1
    assert "reusing activation cache" in runner.registry.log_text(rec["id"])
    assert_same_weights(reference[1], weights(runner.store, rec["result"]["sae_ids"][0]))


def test_cancel_then_resume_on_the_cache_equals_uninterrupted(runner, reference, monkeypatch):
    from mistudio_core.sae import train_job

    reg = runner.registry
    armed = [True]
    report = train_job._Reporter.__call__

    def cancel_at_step_8(self, row):
        report(self, row)
        if row["step"] == 8 and armed[0]:
            reg.cancel(self.ctx.job_id)
            self.ctx._last_poll = 0.0

    monkeypatch.setattr(train_job._Reporter, "__call__", cancel_at_step_8)
    job_id = reg.submit("train", cached_spec())
    rec = wait_until(lambda: (r := reg.get(job_id))["status"] in ("cancelled", "done") and r, what="cancel")
    assert rec["status"] == "cancelled"
    armed[0] = False
    reg.resume(job_id)
    rec = run_to_end(reg, job_id)
    assert_same_weights(reference[1], weights(runner.store, rec["result"]["sae_ids"][0]))


def test_bad_cache_options_are_refused_at_submit(runner):
    with pytest.raises(ValidationError, match="cache.mode"):
        runner.registry.submit("train", {**spec(), "cache": {"mode": "sometimes"}})


def test_cli_preset_with_overrides_trains_on_a_cache_then_lists_and_deletes_it(tmp_path, capsys):
    import json

    from mistudio_core.cli import main
    from test_jobs_train import HOOK

    home = make_train_home(tmp_path)
    argv = ["--home", str(home.home), "--json", "train", "--model", "tiny-llama", "--dataset", "tiny-ds", "--hook",
            HOOK, "--preset", "quick", "--steps", "8", "--batch-tokens", "64", "--d-sae", "64", "--k", "4",
            "--lr-warmup-steps", "0", "--lr-decay-steps", "2", "--cache-tokens", "300", "--device", "cpu"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    from mistudio_core.jobs import JobRegistry
    spec = JobRegistry(home).get(out["job_id"])["spec"]  # the record says which preset and cache it used
    assert spec["preset"] == "quick" and spec["cache"] == {"mode": "use", "dtype": "bfloat16", "tokens": 300}
    from mistudio_core.sae.presets import get_preset
    lr = get_preset("quick").train["lr"]
    assert spec["train"]["optim"]["steps"] == 8 and spec["train"]["optim"]["lr"] == lr  # flag wins, preset's lr kept
    assert main(["--home", str(home.home), "--json", "cache", "list"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["n_tokens"] == 300 and row["bytes"] > 0 and row["hook_names"] == [HOOK]
    assert main(["--home", str(home.home), "--json", "cache", "delete", row["key"]]) == 0
    capsys.readouterr()
    assert actcache.list_caches(home) == []


def test_a_bf16_model_gets_its_own_cache_and_its_evaluation_says_so(runner, reference):
    """model_dtype bfloat16: activations of a bf16 model are never mixed with an fp32 model's cache."""
    from mistudio_core.sae.evals import EVALS_DIR

    before = {c["id"] for c in actcache.list_caches(runner.store)}
    rec = run_to_end(runner.registry, runner.registry.submit("train", {**cached_spec(), "model_dtype": "bfloat16"}))
    new = [c for c in actcache.list_caches(runner.store) if c["id"] not in before]
    assert len(new) == 1 and new[0]["identity"]["model_dtype"] == "bfloat16"
    assert "(bfloat16)" in runner.registry.log_text(rec["id"])
    folder = runner.store.path("saes", rec["result"]["sae_ids"][0]) / EVALS_DIR
    (record,) = [__import__("json").loads(p.read_text()) for p in folder.glob("*.json")]
    assert record["model_dtype"] == "bfloat16"


def test_model_dtype_is_checked_at_submit(runner):
    with pytest.raises(ValidationError, match="model_dtype must be one of"):
        runner.registry.submit("train", {**cached_spec(), "model_dtype": "int8"})


def test_auto_dtype_takes_bf16_on_a_cpu_only_when_it_is_faster(monkeypatch):
    from mistudio_core.model import compute

    monkeypatch.setattr(compute, "cpu_bf16_speedup", lambda: 2.6)
    assert compute.resolve_model_dtype("auto", "cpu") == "bfloat16"
    monkeypatch.setattr(compute, "cpu_bf16_speedup", lambda: 0.4)  # emulated bf16 on an older CPU
    assert compute.resolve_model_dtype("auto", "cpu") == "float32"
    assert compute.resolve_model_dtype(None, "cpu") == "float32"  # jobs that never asked keep fp32
    assert compute.resolve_model_dtype("bfloat16", "cpu") == "bfloat16"


def test_a_noised_cache_is_kept_apart_from_the_clean_one(runner, reference):
    before = {c["id"] for c in actcache.list_caches(runner.store)}
    run_to_end(runner.registry, runner.registry.submit("train", cached_spec(token_noise_contexts=0.5)))
    new = [c for c in actcache.list_caches(runner.store) if c["id"] not in before]
    assert len(new) == 1 and new[0]["identity"]["token_noise"] == [0.5, 0.15]
