"""`jobs list|show|cancel|resume|delete|run` through the CLI entry point, as a user types them."""
from __future__ import annotations

import json

import jobs_support  # noqa: F401  (registers the synthetic kinds)
from mistudio_core.cli import main
from mistudio_core.jobs import JobRegistry


def cli(capsys, home, *argv, as_json=True):
    code = main(["--home", str(home), *(["--json"] if as_json else []), "jobs", *argv])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if as_json and code == 0 else out + err)


def test_list_show_cancel_resume_run_delete(store, capsys):
    reg = JobRegistry(store)
    job_id = reg.submit("test-counter", {"steps": 6, "ckpt_every": 2}, owner="cli-user")
    other = reg.submit("test-counter", {"steps": 3})
    code, rows = cli(capsys, store.home, "list")
    assert code == 0 and [(r["id"], r["status"], r["queue"]) for r in rows] == [(job_id, "queued", 1),
                                                                               (other, "queued", 2)]
    code, row = cli(capsys, store.home, "cancel", other)
    assert code == 0 and row["status"] == "cancelled"
    code, rows = cli(capsys, store.home, "run", "--timeout", "60")
    assert code == 0 and {r["id"]: r["status"] for r in rows} == {job_id: "done", other: "cancelled"}
    code, shown = cli(capsys, store.home, "show", job_id, "--log")
    assert shown["result"] == {"final": 6.0, "resumed_from": 0} and len(shown["history"]) == 6
    assert "checkpoint saved at step 6" in shown["log"]
    code, text = cli(capsys, store.home, "show", job_id, as_json=False)
    assert code == 0 and "(test-counter, done)" in text and "checkpoint: step 6" in text
    code, row = cli(capsys, store.home, "resume", other)
    assert row["status"] == "queued"
    code, _ = cli(capsys, store.home, "list", "--status", "queued")
    assert [r["id"] for r in _] == [other]
    code, out = cli(capsys, store.home, "delete", job_id)
    assert out == {"deleted": job_id} and not (store.home / "runs" / job_id).exists()


def test_errors_are_one_clear_line(store, capsys):
    reg = JobRegistry(store)
    code, text = cli(capsys, store.home, "show", "nope", as_json=False)
    assert code == 2 and text.startswith("error: No job with id 'nope'") and "Traceback" not in text
    job_id = reg.submit("test-counter", {"steps": 2})
    reg.update(job_id, status="done")
    code, text = cli(capsys, store.home, "resume", job_id, as_json=False)
    assert code == 2 and "submit a new job" in text


def test_list_recovers_jobs_of_a_dead_process(store, capsys):
    reg = JobRegistry(store)
    job_id = reg.submit("test-counter", {"steps": 2})
    reg.update(job_id, status="running", heartbeat=1.0)  # what a kill -9 leaves behind
    code, rows = cli(capsys, store.home, "list")
    assert rows[0]["status"] == "interrupted"
    code, text = cli(capsys, store.home, "list", as_json=False)
    assert job_id in text and "interrupted" in text
