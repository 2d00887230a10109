"""Data-parallel training under torchrun with 2 gloo processes on CPU: the ranks end with the weights one process
gets on the same global batches; a rank that dies fails the job with a message; mismatched configs fail fast."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mistudio_core.sae.model import SAE
from mistudio_core.sae.trainer import train_saes
from tests import dist_worker as w
from torchrun_run import run_torchrun  # noqa: E402

WORKER = Path(w.__file__)


def torchrun(mode: str, out: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "DIST_MODE": mode, "DIST_OUT": str(out), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(WORKER)]
    return run_torchrun(cmd, env=env, timeout=timeout)


def test_two_gloo_ranks_equal_one_process_on_the_global_batch(tmp_path):
    res = torchrun("train", tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    r0, r1 = load_file(str(tmp_path / "rank0.safetensors")), load_file(str(tmp_path / "rank1.safetensors"))
    torch.manual_seed(0)
    tcfg = w.train_config()
    single = train_saes(w.stream(0, 1), [tcfg.sae_config(w.D_IN, "h")], tcfg)[0].state_dict()
    for name, ref in single.items():
        assert torch.equal(r0[name], r1[name]), f"ranks diverged on {name}"
        assert torch.allclose(r0[name], ref, atol=2e-5, rtol=1e-4), (name, (r0[name] - ref).abs().max())
    init = SAE(tcfg.sae_config(w.D_IN, "h"), seed=tcfg.optim.seed).state_dict()
    assert (r0["W_enc"] - init["W_enc"]).abs().max() > 1e-3  # it trained: equal weights are not just equal inits


def test_mismatched_configs_fail_fast_naming_the_difference(tmp_path):
    t0 = time.time()
    res = torchrun("mismatch", tmp_path)
    assert res.returncode != 0 and time.time() - t0 < 90
    assert "differ in train.optim.lr: 0.001 vs 0.002" in res.stderr
    assert not list(tmp_path.glob("rank*.safetensors"))


def test_a_killed_rank_fails_the_job_with_a_message(tmp_path):
    t0 = time.time()
    res = torchrun("kill", tmp_path)
    assert res.returncode != 0 and time.time() - t0 < 100  # no hang in a collective
    lost = "lost the other ranks" in res.stderr or "another rank of the group failed" in res.stderr
    assert lost, res.stderr[-2000:]
    assert not list(tmp_path.glob("rank*.safetensors"))


@pytest.mark.slow
def test_torchrun_cli_train_runs_the_job_once_and_registers_one_sae(tmp_path):
    """`torchrun -m mistudio_core train ...`: rank 0 runs the registry job, rank 1 only trains."""
    import json

    from mistudio_core.jobs import JobRegistry
    from test_jobs_train import make_train_home

    store = make_train_home(tmp_path)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
           "mistudio_core", "--home", str(store.home), "--json", "train", "--model", "tiny-llama", "--dataset",
           "tiny-ds", "--hook", "blocks.1.hook_resid_post", "--architecture", "topk", "--d-sae", "64", "--k", "4",
           "--batch-tokens", "64", "--steps", "10", "--no-downstream", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parent.parent.parent)}
    res = run_torchrun(cmd, env=env, timeout=240, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "rank 0 of 2 (gloo) runs the job" in res.stderr
    assert '"role": "worker (rank 0 registers the SAEs)"' in res.stdout
    summary = json.loads(res.stdout[res.stdout.index('{\n  "job_id"'):].split("\n}")[0] + "\n}")
    assert len(summary["saes"]) == 1 and summary["tokens_trained"] == 640
    assert [m["id"] for m in store.list("saes")] == [summary["saes"][0]["sae_id"]]
    assert [r["status"] for r in JobRegistry(store).list("train")] == ["done"]
