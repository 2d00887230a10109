"""The held-out split is real: every tokenization records it, and no training stream — job or CLI, first run or
resumed — ever feeds a held-out context to the model. A spy on the stream's `capture` maps every row the stream
runs through the model back to its context id."""
from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from mistudio_core.model import activations as acts
from mistudio_core.data import datasets as ds
from mistudio_core.cli import main
from mistudio_core.jobs import JobRegistry, Runner
from mistudio_core.data.tokenize import (TokenizeConfig, heldout_split, load_tokenized, split_ids, tokenize_dataset)
from test_jobs_train import make_train_home, spec, one_thread  # noqa: F401  (autouse: one thread)
from tiny_models import random_tokens, tiny_model
from tiny_tokenizer import TINY_MODEL_ID, register_tiny_tokenizer_model

HOOK = "blocks.1.hook_resid_post"


def test_default_rule_is_documented_and_deterministic():
    assert heldout_split(48)["n_contexts"] == 12  # min(16, n // 4) for small tokenizations
    assert heldout_split(1000)["n_contexts"] == 50  # 5%
    assert heldout_split(10**6)["n_contexts"] == 4096  # capped
    assert heldout_split(1)["n_contexts"] == 0 and heldout_split(2)["n_contexts"] == 1  # one context always trains
    h = heldout_split(1000)
    assert h["method"] == "tail" and h["first_context"] == 950 and "ceil" in h["rule"]
    assert heldout_split(1000, 0.2)["n_contexts"] == 200


def test_tokenize_records_the_split_and_old_tokenizations_get_the_same_default(store, tmp_path):
    register_tiny_tokenizer_model(store)
    pd.DataFrame({"text": ["the state of the union is strong " * 40] * 30}).to_parquet(tmp_path / "d.parquet")
    did = ds.add_local(store, tmp_path / "d.parquet")["id"]
    stats = tokenize_dataset(store, did, TINY_MODEL_ID, TokenizeConfig(context_size=16))
    tok = load_tokenized(store, did, TINY_MODEL_ID)
    n = stats["n_contexts"]
    assert tok.config["heldout"] == heldout_split(n) and tok.heldout == heldout_split(n)
    train_ids, held_ids = split_ids(tok)
    assert len(train_ids) + len(held_ids) == n and set(train_ids.tolist()).isdisjoint(held_ids.tolist())
    assert torch.equal(tok.heldout_tokens(), tok.tokens[held_ids]) and len(tok.heldout_tokens(3)) == 3
    legacy = dict(tok.config)
    del legacy["heldout"]  # a tokenization written before the split existed
    tok.config = legacy
    assert tok.heldout == heldout_split(n) and torch.equal(tok.split_ids()[1], held_ids)


def test_stream_reads_only_its_context_ids_and_defaults_to_all():
    model = tiny_model("llama")
    tokens = random_tokens(20, 8, seed=4)
    full = acts.ActivationStream(model, tokens, HOOK, batch_tokens=16, buffer_contexts=6, contexts_per_forward=3)
    same = acts.ActivationStream(model, tokens, HOOK, batch_tokens=16, buffer_contexts=6, contexts_per_forward=3,
                                 context_ids=torch.arange(20))
    assert torch.equal(next(full)[HOOK], next(same)[HOOK])  # the default is "every row", batch for batch
    sub = acts.ActivationStream(model, tokens, HOOK, batch_tokens=16, buffer_contexts=6, context_ids=range(5))
    assert sub.tokens_per_epoch == 5 * 7
    assert sorted(set(torch.cat([sub._contexts(r) for r in range(5)]).tolist())) == list(range(5))
    with pytest.raises(Exception, match="context_ids"):
        acts.ActivationStream(model, tokens, HOOK, context_ids=[3, 99])


class Spy:
    """Replaces the stream's `capture`: records which contexts (by their token rows) went through the model."""

    def __init__(self, tokens: torch.Tensor):
        self.index = {tuple(row.tolist()): i for i, row in enumerate(tokens)}
        self.seen: list[int] = []
        self.real = acts.capture

    def __call__(self, model, input_ids, hook_names, **kw):
        self.seen += [self.index[tuple(row.tolist())] for row in input_ids]
        return self.real(model, input_ids, hook_names, **kw)


@pytest.fixture
def spied(tmp_path, monkeypatch):
    home = make_train_home(tmp_path)
    tok = load_tokenized(home, "tiny-ds", "tiny-llama")
    spy = Spy(tok.tokens)
    monkeypatch.setattr(acts, "capture", spy)
    return home, spy, [set(ids.tolist()) for ids in split_ids(tok)]


def cancel_at(monkeypatch, step: int):
    """Cancel the running train job from inside it at `step` (once)."""
    from mistudio_core.sae import train_job

    armed, report = [True], train_job._Reporter.__call__

    def reporter(self, row):
        report(self, row)
        if row["step"] == step and armed[0]:
            armed[0] = False
            self.ctx.registry.cancel(self.ctx.job_id)
            self.ctx._last_poll = 0.0
    monkeypatch.setattr(train_job._Reporter, "__call__", reporter)


def assert_only_train(spy: Spy, train: set, held: set) -> None:
    assert spy.seen, "the spy saw the stream"
    assert held and not (set(spy.seen) & held), "a held-out context reached the trainer"
    assert set(spy.seen) == train, "every train context is read (the run spans several epochs)"


def test_train_job_never_reads_heldout_contexts_first_run_and_resumed(spied, monkeypatch):
    home, spy, (train, held) = spied
    reg = JobRegistry(home)
    cancel_at(monkeypatch, 12)
    job_id = reg.submit("train", spec())
    rec = Runner(home, registry=reg).run_here(job_id)
    assert rec["status"] == "cancelled", rec.get("traceback")
    first = len(spy.seen)
    rec = Runner(home, registry=reg).run_here(reg.resume(job_id)["id"])
    assert rec["status"] == "done", rec.get("traceback")
    assert len(spy.seen) > first, "the resumed run read more contexts"
    assert_only_train(spy, train, held)
    (sae_id,) = rec["result"]["sae_ids"]
    m = home.manifest("saes", sae_id)
    assert m["metrics_source"] == {"dataset_id": "tiny-ds", "split": "heldout", "n_contexts": 12,
                                   "n_tokens": 12 * 15}


def test_cli_train_never_reads_heldout_contexts_first_run_and_resumed(spied, monkeypatch, capsys):
    home, spy, (train, held) = spied
    argv = ["--home", str(home.home), "--json", "train", "--model", "tiny-llama", "--dataset", "tiny-ds",
            "--hook", HOOK, "--architecture", "topk", "--d-sae", "64", "--k", "4", "--steps", "40",
            "--batch-tokens", "64", "--metrics-every", "1", "--checkpoint-every", "2", "--device", "cpu",
            "--name", "cli-run", "--no-downstream"]
    cancel_at(monkeypatch, 10)
    assert main(argv) == 2 and "--resume" in capsys.readouterr().err  # stopped, and told how to continue
    assert main(["--home", str(home.home), "--json", "train", "--resume", "cli-run"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert_only_train(spy, train, held)
    assert len(summary["saes"]) == 1 and summary["saes"][0]["metrics_source"]["split"] == "heldout"
