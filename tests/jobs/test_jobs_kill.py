"""Crash consistency: runners in subprocesses killed with SIGKILL at random moments.

After each kill a fresh registry (new SQLite connection, the killer's process) must open; every stored record must
decode as JSON with a valid status; `metrics.jsonl` must parse apart from a torn last line; the latest checkpoint
must be complete (old or new, never half: the synthetic job's tensors encode its step, so a mix is detectable);
recovery must mark the job `interrupted`; and resuming must finish it with each step in the history exactly once.
"""
from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest

import jobs_support
from mistudio_core.jobs import STATUSES, JobRegistry
from mistudio_core.jobs.checkpoint import load_checkpoint
from mistudio_core.platform.store import Store

TESTS = Path(__file__).resolve().parent.parent
RUNNER_SCRIPT = f"""
import sys, time
sys.path.insert(0, {str(TESTS)!r})
import jobs_support
from mistudio_core.platform.store import Store
from mistudio_core.jobs import Runner
Runner(Store(sys.argv[1]), poll_interval=0.02, lock_retry=0.05, heartbeat_interval=0.1).start()
print("ready", flush=True)
while True:
    time.sleep(1)
"""


def spawn_runner(home: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(TESTS.parent), OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-c", RUNNER_SCRIPT, str(home)], env=env, stdout=subprocess.PIPE)


def wait_until(predicate, timeout=60.0, what="condition"):
    end = time.time() + timeout
    while time.time() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def check_consistent(home: Path, job_id: str) -> dict:
    """Everything a fresh process can read after the kill; returns the checkpoint state (or {})."""
    con = sqlite3.connect(home / "jobs" / "cache.db")
    for key, value, mode in con.execute("SELECT key, value, mode FROM Cache"):
        assert mode == 1, "values are inline zlib'd JSON bytes, never pickle"
        record = json.loads(zlib.decompress(value))
        assert json.loads(zlib.decompress(key)) == record["id"] and record["status"] in STATUSES
    con.close()
    reg = JobRegistry(Store(home))
    lines = (reg.run_dir(job_id) / "metrics.jsonl").read_text().splitlines()
    for line in lines[:-1]:
        json.loads(line)  # only the last line may be torn
    resumed = load_checkpoint(reg.run_dir(job_id) / "checkpoint")
    if resumed is None:
        return {}
    tensors, state = resumed
    assert jobs_support.checkpoint_consistent(tensors, state), "checkpoint mixes two saves"
    return state


def kill_and_resume(tmp_path, seed: int, iterations: int, steps: int) -> None:
    rng = random.Random(seed)
    home = tmp_path / "home"
    reg = JobRegistry(Store(home))
    job_id = reg.submit("test-counter", {"steps": steps, "ckpt_every": 3, "size": 100_000, "delay": 0.003})
    last_ckpt = 0
    for i in range(iterations):
        proc = spawn_runner(home)
        try:
            rec = wait_until(lambda: (r := reg.get(job_id))["runner_pid"] == proc.pid
                             and r["status"] == "running" and r, what="the subprocess to run the job")
            time.sleep(rng.uniform(0.0, 0.4))
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        state = check_consistent(home, job_id)
        assert state.get("step", 0) >= last_ckpt, "a kill lost an already completed checkpoint"
        last_ckpt = state.get("step", 0)
        fresh = JobRegistry(Store(home))
        assert fresh.recover() == [job_id]
        assert fresh.get(job_id)["status"] == "interrupted"
        fresh.resume(job_id)
    proc = spawn_runner(home)
    try:
        rec = wait_until(lambda: (r := reg.get(job_id))["status"] in ("done", "failed") and r, what="completion")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert rec["status"] == "done", rec.get("traceback")
    assert rec["result"]["final"] == steps and rec["attempts"] == iterations + 1
    assert [row["step"] for row in reg.metrics_history(job_id)] == list(range(1, steps + 1))


def test_sigkill_at_random_points_keeps_everything_consistent(tmp_path):
    kill_and_resume(tmp_path, seed=1234, iterations=3, steps=400)


@pytest.mark.slow
def test_sigkill_many_times(tmp_path):
    kill_and_resume(tmp_path, seed=99, iterations=15, steps=1500)


def test_second_process_takes_over_when_the_runner_dies(tmp_path):
    home = tmp_path / "home"
    reg = JobRegistry(Store(home))
    marker = tmp_path / "ran-by.txt"
    spec = {"steps": 400, "delay": 0.005, "ckpt_every": 10, "marker": str(marker)}
    a = spawn_runner(home)
    wait_until(lambda: a.stdout.readline(), what="runner A to start")
    wait_until(lambda: reg.runner_owner(), what="runner A to take the lock")
    b = spawn_runner(home)
    try:
        wait_until(lambda: b.stdout.readline(), what="runner B to start")
        first = reg.submit("test-counter", spec)
        second = reg.submit("test-counter", dict(spec, steps=20))
        wait_until(lambda: reg.get(first)["status"] == "running", what="the first job to start")
        assert reg.get(first)["runner_pid"] == a.pid and reg.runner_owner()["pid"] == a.pid
        assert reg.get(second)["queue_position"] == 1
        os.kill(a.pid, signal.SIGKILL)
        a.wait()
        # B takes the lock, marks A's job interrupted, and runs the queue.
        wait_until(lambda: reg.get(second)["status"] == "done", what="B to run the queued job")
        assert reg.get(first)["status"] == "interrupted" and reg.get(second)["runner_pid"] == b.pid
        reg.resume(first)
        wait_until(lambda: reg.get(first)["status"] == "done", what="B to finish the resumed job")
        assert marker.read_text().split() == [str(b.pid), str(b.pid)]  # each job completed once, by B
    finally:
        for proc in (a, b):
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.mark.parametrize("kill_at", ["mid-tensors", "replace-1", "replace-2", "replace-3", "sweep"])
def test_kill_at_each_stage_of_a_checkpoint_save(tmp_path, kill_at):
    """Deterministic companion of the random kills: SIGKILL a forked child at every stage of `save_checkpoint`
    (mid tensor file, before each rename, during the sweep); the latest checkpoint is the old or the new one."""
    import torch

    from mistudio_core.jobs import checkpoint as ck

    folder = tmp_path / "checkpoint"
    ck.save_checkpoint(folder, {"x": torch.full((1000,), 1.0), "y": torch.full((1000,), 2.0)}, {"step": 1}, step=1)
    pid = os.fork()
    if pid == 0:  # child: start saving step 2 and die at the chosen point
        die = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)  # noqa: E731
        calls, real_replace = [0], os.replace

        def replace(src, dst):
            calls[0] += 1
            if kill_at == f"replace-{calls[0]}":
                die()
            real_replace(src, dst)
        os.replace = replace
        if kill_at == "mid-tensors":
            import safetensors.torch as st
            st.save_file = lambda tensors, path: (open(path, "wb").write(b"\x00" * 100), die())
        if kill_at == "sweep":
            ck._sweep = die
        ck.save_checkpoint(folder, {"x": torch.full((1000,), 2.0), "y": torch.full((1000,), 4.0)}, {"step": 2}, 2)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    tensors, state = ck.load_checkpoint(folder)
    assert jobs_support.checkpoint_consistent(tensors, state)
    assert state["step"] == (2 if kill_at == "sweep" else 1)
    ck.save_checkpoint(folder, {"x": torch.full((3,), 3.0), "y": torch.full((3,), 6.0)}, {"step": 3}, step=3)
    assert ck.load_checkpoint(folder)[1] == {"step": 3}
    assert len([p for p in folder.iterdir() if p.name != "LATEST.json"]) == 1, "leftovers are swept"
