"""The app's multi-GPU path (sae/distributed_launch.py): with more than one GPU visible a queued train job runs as
a torchrun subprocess (one rank per GPU); with one GPU or none it trains in the runner as before. GPUs are faked
by patching torch.cuda.device_count; the torchrun child is replaced by a stub, except in the slow test, which runs
the real command with 2 gloo ranks on the CPU."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from mistudio_core.jobs import JobRegistry, Runner
from mistudio_core.sae import distributed_launch as launch
from test_jobs_train import make_train_home, spec, wait_until


@pytest.fixture()
def home(tmp_path):
    return make_train_home(tmp_path)


def run_job(store, job_spec, timeout=120):
    runner = Runner(store, poll_interval=0.05, lock_retry=0.1).start()
    try:
        job_id = runner.registry.submit("train", job_spec)
        return wait_until(lambda: (r := runner.registry.get(job_id))["status"] in ("done", "failed", "cancelled")
                          and r, timeout=timeout, what="the training job to end")
    finally:
        runner.stop(timeout=30)


def test_two_gpus_build_a_torchrun_command_with_one_rank_each(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert launch.torchrun_processes({"device": None}) == 2
    assert launch.torchrun_processes({"device": "cuda"}) == 2
    assert launch.torchrun_processes({"device": "cpu"}) == 0  # asked for the CPU: stays in-process
    cmd = launch.torchrun_command(tmp_path, "train-abc", 2, port=29555)
    assert cmd[:3] == [sys.executable, "-m", "torch.distributed.run"]
    flags = dict(zip(cmd[3:13:2], cmd[4:13:2]))
    assert flags == {"--nnodes": "1", "--nproc_per_node": "2", "--rdzv_backend": "c10d",
                     "--rdzv_endpoint": "127.0.0.1:29555", "--rdzv_id": "train-abc"}
    assert cmd[13:] == ["-m", "mistudio_core.sae.torchrun_entry", "--home", str(tmp_path), "--job", "train-abc"]


@pytest.mark.parametrize("gpus", [0, 1])
def test_one_gpu_or_none_trains_in_process(monkeypatch, gpus):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    assert launch.torchrun_processes({"device": None}) == 0


def test_the_runner_hands_a_multi_gpu_job_to_torchrun(home, monkeypatch):
    """The job thread starts the torchrun command and returns what rank 0 reported; nothing trains in-process."""
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    started = []

    def fake_spawn(cmd, log_path):  # stands in for rank 0: it writes the job's outcome where the parent reads it
        started.append(cmd)
        job_id = cmd[cmd.index("--job") + 1]
        outcome = {"result": {"sae_ids": ["from-rank-0"], "steps": 10}, "stopped": False}
        (JobRegistry(home).run_dir(job_id) / launch.RESULT).write_text(json.dumps(outcome))
        return subprocess.Popen([sys.executable, "-c", "pass"])

    monkeypatch.setattr(launch, "spawn", fake_spawn)
    rec = run_job(home, dict(spec(steps=10), device=None))
    assert rec["status"] == "done", rec.get("error")
    assert rec["result"]["sae_ids"] == ["from-rank-0"]
    (cmd,) = started
    assert cmd[cmd.index("--nproc_per_node") + 1] == "2" and cmd[cmd.index("--job") + 1] == rec["id"]
    assert home.list("saes") == []  # the parent did not train


def test_a_failed_torchrun_group_fails_the_job_with_its_message(home, monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(launch, "spawn", lambda cmd, log: subprocess.Popen([sys.executable, "-c", "exit(3)"]))
    rec = run_job(home, dict(spec(steps=10), device=None))
    assert rec["status"] == "failed"
    assert "2-GPU torchrun training failed: torchrun exited with code 3" in rec["error"]
    assert "Resume the job" in rec["error"]


def test_with_one_gpu_the_runner_trains_in_process(home, monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(launch, "spawn", lambda *a: pytest.fail("torchrun must not start with one GPU"))
    rec = run_job(home, dict(spec(steps=6), device=None))
    assert rec["status"] == "done", rec.get("error")
    assert [m["id"] for m in home.list("saes")] == rec["result"]["sae_ids"]


@pytest.mark.slow
def test_the_real_torchrun_child_trains_and_registers_once(home, monkeypatch):
    """The parent believes it sees 2 GPUs; the child really runs 2 ranks (gloo on the CPU, no GPU there)."""
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    rec = run_job(home, dict(spec(steps=6), device=None), timeout=300)
    assert rec["status"] == "done", (rec.get("error") or "")[-3000:]
    assert [m["id"] for m in home.list("saes")] == rec["result"]["sae_ids"] and len(rec["result"]["sae_ids"]) == 1
    run_dir = JobRegistry(home).run_dir(rec["id"])
    assert "2 GPUs: training data-parallel with torchrun" in (run_dir / "log.txt").read_text()
    assert (run_dir / launch.LOG).is_file() and rec["progress"]["step"] == 6


def test_the_training_form_says_it_will_use_torchrun_with_two_gpus(monkeypatch):
    import gradio as gr

    from pages.context import AppContext
    from pages.training_layout import layout

    def note_shown() -> str:
        with gr.Blocks() as demo:
            layout(AppContext(store=None, jobs=None, allowed_roots=[]))
        return next(b.value for b in demo.blocks.values() if getattr(b, "elem_id", None) == "training-gpus")

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert "2 GPUs: will train data-parallel with torchrun" in note_shown()
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert "torchrun" not in note_shown()
