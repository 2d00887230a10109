"""Checkpoint/resume under torchrun on the real job path (`torchrun ... -m mistudio_core train`, 2 gloo ranks, a tiny
Llama): a training cancelled after a checkpoint and resumed under torchrun ends with the weights of an
uninterrupted run and registers its SAE once — data parallel, and with one SAE group per rank (distribute_saes),
whose SAEs also equal a single-process job's. Each torchrun start imports torch twice: slow on 2 shared cores."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mistudio_core.jobs import JobRegistry
from test_jobs_train import make_train_home, weights

ROOT = Path(__file__).resolve().parent.parent.parent
HOOKS = ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]
TRAIN = ["--architecture", "topk", "--d-sae", "64", "--k", "4", "--batch-tokens", "64", "--steps", "10",
         "--checkpoint-every", "2", "--dead-feature-window", "100000", "--metrics-every", "1", "--seed", "3"]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]  # 3 torchrun starts: ~5 min each on a loaded machine


def torchrun(store, *args, stop_at: int = 0, nproc: int = 2) -> subprocess.CompletedProcess:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    cmd = [*(launcher if nproc > 1 else [sys.executable]), str(ROOT / "tests" / "dist_cli_stop.py"),
           "--home", str(store.home), "--json", "train", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "STOP_AT_STEP": str(stop_at), "PYTHONPATH": str(ROOT)}
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, cwd=store.home)


def new_job(store, *args) -> list[str]:
    return ["--model", "tiny-llama", "--dataset", "tiny-ds", "--no-downstream", "--device", "cpu", "--name", "t",
            *TRAIN, *args]


def job_id_of(res: subprocess.CompletedProcess) -> str:
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout[res.stdout.index('{\n  "job_id"'):].split("\n}")[0] + "\n}")["job_id"]


def sae_weights(store, job_id: str) -> list[dict]:
    rec = JobRegistry(store).get(job_id)
    assert rec["status"] == "done", rec.get("error")
    return [weights(store, sae_id) for sae_id in rec["result"]["sae_ids"]]


def cancel_then_resume(store, *args) -> str:
    """Run a job cancelled at step 4 (checkpoint there), then resume it under torchrun; returns the job id."""
    res = torchrun(store, *new_job(store, *args), stop_at=4)
    assert res.returncode != 0 and "is cancelled" in res.stderr, res.stderr[-3000:]
    (rec,) = [r for r in JobRegistry(store).list("train") if r["status"] == "cancelled"]
    assert rec["checkpoint"]["step"] in (4, 5), rec["checkpoint"]
    res = torchrun(store, "--resume", rec["id"])
    assert res.returncode == 0, res.stderr[-3000:]
    return rec["id"]


def assert_close(a: dict, b: dict, atol: float) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=atol, rtol=1e-4), (k, (a[k] - b[k]).abs().max())


def test_data_parallel_cancel_and_resume_equals_uninterrupted(tmp_path):
    store = make_train_home(tmp_path)
    reference = job_id_of(torchrun(store, *new_job(store, "--hook", HOOKS[1])))
    job_id = cancel_then_resume(store, "--hook", HOOKS[1])
    (got,), (ref,) = sae_weights(store, job_id), sae_weights(store, reference)
    assert_close(got, ref, atol=1e-5)
    reg = JobRegistry(store)
    ids = [i for j in (reference, job_id) for i in reg.get(j)["result"]["sae_ids"]]
    assert len(ids) == 2 and sorted(m["id"] for m in store.list("saes")) == sorted(ids)  # each registered once


def test_distribute_saes_cancel_resume_equals_a_single_process_job(tmp_path):
    store = make_train_home(tmp_path)
    job_id = cancel_then_resume(store, "--hook", HOOKS[0], "--hook", HOOKS[1], "--distribute-saes", "true")
    run_dir = JobRegistry(store).run_dir(job_id) / "checkpoint"
    assert sorted(p.name for p in run_dir.glob("sae-*")) == ["sae-0", "sae-1"]  # each owner saved its own SAE
    single = job_id_of(torchrun(store, *new_job(store, "--hook", HOOKS[0], "--hook", HOOKS[1]), nproc=1))
    got, ref = sae_weights(store, job_id), sae_weights(store, single)
    assert len(got) == 2 and len(store.list("saes")) == 4  # two per job, each registered once
    for mine, theirs in zip(got, ref):
        assert_close(mine, theirs, atol=1e-5)
