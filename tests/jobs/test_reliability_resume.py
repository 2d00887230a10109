"""The CLI kill matrix: `train --name X` SIGKILLed at each risky point, then *immediately* resumed from the CLI — by
name (`--resume X`, `--name X --resume`) and by job id — ends with that job done and its SAE in the library exactly
once, with the weights of an uninterrupted CLI run. An older stopped job with another name is never picked.

The CLI runs in a forked child (as `python -m mistudio_core train` would: `cli.main`, the job in the foreground
under the runner lock) that kills itself at the chosen point; the parent resumes through `cli.main` at once, while
the killed job's record still says `running`: nothing else marked it interrupted first.
"""
from __future__ import annotations

import json
import os
import signal

import pytest
import torch

from mistudio_core.model import models as md
from mistudio_core.cli import main
from mistudio_core.jobs import JobRegistry
from mistudio_core.jobs.resume import resume_target
from mistudio_core.platform.errors import NotFoundError, ValidationError
from test_jobs_train import HOOK, make_train_home, one_thread, spec  # noqa: F401  (one_thread: autouse)
from test_train_kill_points import STEPS, arm, die, weights

POINTS = ["capture", "mid-step", "mid-checkpoint", "after-last-step", "during-eval", "during-registration",
          "after-registration"]
WAYS = ["--resume NAME", "--name NAME --resume", "--resume JOB_ID"]
NAME = "kill-me"


def train_argv(home, name: str = NAME) -> list[str]:
    return ["--home", str(home.home), "--json", "train", "--model", "tiny-llama", "--dataset", "tiny-ds", "--hook",
            HOOK, "--name", name, "--device", "cpu", "--architecture", "topk", "--d-sae", "64", "--k", "4",
            "--batch-tokens", "64", "--steps", str(STEPS), "--lr", "0.001", "--seed", "3", "--metrics-every", "1",
            "--checkpoint-every", "4", "--eval-contexts", "4"]


def arm_point(point: str) -> None:
    """In the child: SIGKILL at `point` (the shared kill points, plus the first activation capture)."""
    if point == "capture":
        import mistudio_core.model.activations as act

        act.capture = die
    else:
        arm(point)


def cli_killed_at(home, point: str) -> None:
    pid = os.fork()
    if pid == 0:
        try:
            arm_point(point)
            md.clear_cache()
            main(train_argv(home))
        finally:
            os._exit(3)  # not killed: the point was never reached
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, f"child ended without the kill {status}"


def cli_json(capsys, argv: list[str]) -> dict:
    capsys.readouterr()
    md.clear_cache()
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 0, err[-2000:]
    return json.loads(out)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted CLI run's weights."""
    home = make_train_home(tmp_path_factory.mktemp("ref"))
    md.clear_cache()
    assert main(train_argv(home)) == 0
    (sae,) = home.list("saes")
    return weights(home, sae["id"])


def stopped_decoy(home, name: str = "decoy") -> str:
    """An older training with another name, interrupted: the old `--resume NAME` picked it."""
    reg = JobRegistry(home)
    job_id = reg.submit("train", spec(steps=STEPS), name=name)
    reg.update(job_id, status="interrupted", message="decoy")
    return job_id


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("point", POINTS)
def test_killed_cli_training_resumes_at_once_by_name_or_id(tmp_path, capsys, reference, point, way):
    home = make_train_home(tmp_path)
    decoy = stopped_decoy(home)
    cli_killed_at(home, point)
    reg = JobRegistry(home)
    (job,) = [r for r in reg.list("train") if r["name"] == NAME]
    assert job["status"] == "running", "the record still names the dead process: the resume must see through it"
    resume = {"--resume NAME": ["--resume", NAME], "--name NAME --resume": ["--name", NAME, "--resume"],
              "--resume JOB_ID": ["--resume", job["id"]]}[way]
    out = cli_json(capsys, ["--home", str(home.home), "--json", "train", *resume])
    assert out["job_id"] == job["id"], f"resumed {out['job_id']}, not the killed job"
    assert reg.get(job["id"])["status"] == "done"
    assert reg.get(decoy)["status"] == "interrupted", "another job was touched"
    saes = home.list("saes")
    assert len(saes) == 1 and [s["sae_id"] for s in out["saes"]] == [saes[0]["id"]], "registered exactly once"
    assert saes[0]["id"].endswith(job["id"].rsplit("-", 1)[-1]), "the SAE is that job's (its id carries the job's)"
    got = weights(home, saes[0]["id"])
    assert got.keys() == reference.keys()
    for k in got:
        assert torch.equal(got[k], reference[k]), f"{k} differs from the uninterrupted run ({point}, {way})"
    assert [h["step"] for h in reg.metrics_history(job["id"])] == list(range(1, STEPS + 1))


def test_a_name_never_picks_another_job_and_ambiguity_lists_the_ids(tmp_path):
    home = make_train_home(tmp_path)
    reg = JobRegistry(home)
    decoy = stopped_decoy(home, "other")
    with pytest.raises(NotFoundError, match="No train job with id or name 'mine'"):
        resume_target(reg, "train", "mine")
    with pytest.raises(NotFoundError, match="No train job with id or name 'mine'"):
        resume_target(reg, "train", "", name="mine")
    a, b = stopped_decoy(home, "mine"), stopped_decoy(home, "mine")
    with pytest.raises(ValidationError, match="ambiguous") as e:
        resume_target(reg, "train", "mine")
    assert a in str(e.value) and b in str(e.value) and decoy not in str(e.value)
    reg.update(a, status="done")
    assert resume_target(reg, "train", "mine") == b
    assert resume_target(reg, "train", "", name="mine") == b
    assert resume_target(reg, "train", a) == a, "an id is taken as given (resuming a done job is refused later)"
    reg.update(b, status="running", heartbeat=0)  # left running by a process that died: recovered at once
    assert resume_target(reg, "train", "mine") == b and reg.get(b)["status"] == "interrupted"
    with pytest.raises(ValidationError, match="not 'extract'"):
        resume_target(reg, "extract", b)
    long = "x" * 5000
    with pytest.raises(NotFoundError) as e:
        resume_target(reg, "train", long)
    assert len(str(e.value)) < 600, "a 5,000-character name is cut in the message"


def test_resume_with_no_target_takes_the_most_recently_attempted(tmp_path):
    home = make_train_home(tmp_path)
    reg = JobRegistry(home)
    old, new = stopped_decoy(home, "old"), stopped_decoy(home, "new")
    assert resume_target(reg, "train") == new
    reg.update(old, started=reg.get(new)["created"] + 10)  # the old one was resumed (and stopped) since
    assert resume_target(reg, "train") == old
    reg.update(old, status="done")
    reg.update(new, status="done")
    with pytest.raises(NotFoundError, match="No interrupted, cancelled or failed train job"):
        resume_target(reg, "train")
