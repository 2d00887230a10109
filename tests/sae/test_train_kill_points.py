"""A training killed (SIGKILL) at each risky moment, then resumed, ends with its SAE in the library exactly once,
with the weights of an uninterrupted run and its held-out evaluation.

The job runs in a forked child (`Runner.run_here`, as `python -m mistudio_core train` runs it) that kills itself
at the chosen point; the parent then recovers the job and resumes it in-process. Points: mid-step (inside the
trainer's forward/backward), mid-checkpoint (the final checkpoint's files half-renamed), after the last step
(before evaluation), during the evaluation, during registration (weights half-written into the library's temp
folder), and after registration (the library folder in place, the job not yet done).
"""
from __future__ import annotations

import os
import signal

import pytest
import torch

from mistudio_core.model import models as md
from mistudio_core.jobs import JobRegistry, Runner
from mistudio_core.sae.library import load_library_sae
from mistudio_core.platform.store import Store
from test_jobs_train import make_train_home, one_thread, spec  # noqa: F401  (one_thread: autouse)

STEPS = 12
POINTS = ["mid-step", "mid-checkpoint", "after-last-step", "during-eval", "during-registration",
          "after-registration"]


def job_spec() -> dict:
    return spec(steps=STEPS, checkpoint_every=4)


def die(*_a, **_k):
    os.kill(os.getpid(), signal.SIGKILL)


def arm(point: str) -> None:
    """In the child: make the job SIGKILL itself at `point`."""
    import mistudio_core.jobs.context as jc
    import mistudio_core.sae.train_finish as tf
    import mistudio_core.sae.evaluate as ev
    import mistudio_core.sae.library as lib
    from mistudio_core.sae import trainer

    if point == "mid-step":
        step = trainer._Run.step
        trainer._Run.step = lambda self, x, s, *a, **k: die() if s == STEPS - 3 else step(self, x, s, *a, **k)
    elif point == "mid-checkpoint":
        save = jc.save_checkpoint

        def half_save(folder, tensors, state, step=None):
            if state["step"] >= STEPS:
                os.replace = lambda *a: die()  # dies at the first rename: files written, nothing swapped in
            return save(folder, tensors, state, step=step)
        jc.save_checkpoint = half_save
    elif point == "after-last-step":
        tf.finish = die
    elif point == "during-eval":
        ev._downstream = die
    elif point == "during-registration":
        save_sae = lib.save_sae
        lib.save_sae = lambda sae, folder, **kw: (save_sae(sae, folder, **kw), die())
    elif point == "after-registration":
        log = jc.JobContext.log
        jc.JobContext.log = lambda self, msg: die() if msg.startswith("registered SAE") else log(self, msg)


def run_child(home: Store, job_id: str, point: str) -> None:
    pid = os.fork()
    if pid == 0:
        try:
            arm(point)
            md.clear_cache()
            Runner(Store(home.home)).run_here(job_id)
        finally:
            os._exit(3)  # not killed: the point was never reached
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, f"child ended without the kill {status}"


def weights(store: Store, sae_id: str) -> dict:
    return {k: v.detach().clone() for k, v in load_library_sae(store, sae_id).state_dict().items()}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    home = make_train_home(tmp_path_factory.mktemp("ref"))
    reg = JobRegistry(home)
    md.clear_cache()
    rec = Runner(home, registry=reg).run_here(reg.submit("train", job_spec()))
    assert rec["status"] == "done", rec.get("traceback")
    (sae_id,) = rec["result"]["sae_ids"]
    return weights(home, sae_id), home.manifest("saes", sae_id)


@pytest.mark.parametrize("point", POINTS)
def test_kill_then_resume_registers_the_sae_exactly_once(tmp_path, reference, point):
    home = make_train_home(tmp_path)
    reg = JobRegistry(home)
    job_id = reg.submit("train", job_spec())
    run_child(home, job_id, point)
    assert reg.recover() == [job_id] and reg.get(job_id)["status"] == "interrupted"
    listed = [m["id"] for m in home.list("saes")]
    assert listed == ([] if point != "after-registration" else listed[:1]), "nothing half-written is listed"
    reg.resume(job_id)
    md.clear_cache()
    rec = Runner(home, registry=reg).run_here(job_id)
    assert rec["status"] == "done", rec.get("traceback")
    saes = home.list("saes")
    assert [m["id"] for m in saes] == rec["result"]["sae_ids"] and len(saes) == 1, "in the library exactly once"
    assert not [p for p in home.dir("saes").iterdir() if p.name.startswith(".")], "no temp folder left behind"
    ref_weights, ref_manifest = reference
    got = weights(home, saes[0]["id"])
    assert got.keys() == ref_weights.keys()
    for k in got:
        assert torch.equal(got[k], ref_weights[k]), f"{k} differs from the uninterrupted run"
    assert saes[0]["metrics_source"] == ref_manifest["metrics_source"]
    assert saes[0]["metrics"]["ce_loss_recovered"] == pytest.approx(ref_manifest["metrics"]["ce_loss_recovered"])
    assert saes[0]["train_batch_metrics"]["step"] == STEPS
    assert [h["step"] for h in reg.metrics_history(job_id)] == list(range(1, STEPS + 1))


@pytest.mark.slow  # a CLI subprocess plus two runs: ~20 s idle, a minute on a loaded 2-core box
def test_ctrl_c_in_the_cli_stops_resumably_and_resume_matches(tmp_path):
    """A user's Ctrl-C in `python -m mistudio_core train` checkpoints and leaves the job resumable; `train --resume`
    finishes it with the uninterrupted weights."""
    import subprocess
    import sys
    import time

    from mistudio_core.cli import main

    home = make_train_home(tmp_path)
    s = job_spec()
    t = s["train"]
    argv = ["--home", str(home.home), "--json", "train", "--model", "tiny-llama", "--dataset", "tiny-ds", "--hook",
            s["hook_names"][0], "--name", "tiny", "--device", "cpu", "--architecture", "topk", "--d-sae", "64",
            "--k", "4", "--batch-tokens", "64", "--steps", str(STEPS), "--lr", str(t["lr"]), "--seed", "3",
            "--metrics-every", "1", "--checkpoint-every", "4"]
    slow = "import time, mistudio_core.sae.trainer as tr; step = tr._Run.step; " \
           "tr._Run.step = lambda self, x, s: (time.sleep(0.3), step(self, x, s))[1]; "
    root = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(root))
    proc = subprocess.Popen([sys.executable, "-c", slow + "import sys, torch; torch.set_num_threads(1); "
                             "from mistudio_core.cli import main; sys.exit(main(sys.argv[1:]))", *argv],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    reg = JobRegistry(home)
    deadline = time.time() + 120
    while not any((r["checkpoint"] or {}).get("step", 0) >= 4 for r in reg.list("train")) and time.time() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and "train --resume" in err, err
    (job,) = reg.list("train")
    assert job["status"] in ("interrupted", "cancelled") and job["checkpoint"]["step"] < STEPS
    md.clear_cache()
    assert main(["--home", str(home.home), "--json", "train", "--resume"]) == 0
    other = make_train_home(tmp_path / "uninterrupted")
    md.clear_cache()
    assert main(["--home", str(other.home), *argv[2:]]) == 0
    (sae,), (ref_sae,) = home.list("saes"), other.list("saes")
    got, ref = weights(home, sae["id"]), weights(other, ref_sae["id"])
    assert all(torch.equal(got[k], ref[k]) for k in ref), "resumed weights equal the uninterrupted run's"
