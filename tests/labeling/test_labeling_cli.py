"""`label` CLI on real extraction results (tiny model + SAE) against a local fake OpenAI server: the job reads
the real `FeatureResults`, and its labels show up in the Features table."""
from __future__ import annotations

import json

import pytest

from fake_openai_server import FakeOpenAI
from mistudio_core.cli import main
from mistudio_core.features.results import FeatureResults
from tests.features_helpers import D_SAE, saved_features


@pytest.fixture
def server():
    s = FakeOpenAI().start()
    yield s
    s.stop()


def run_cli(capsys, home, *argv):
    code = main(["--home", str(home), "--json", *argv])
    out = capsys.readouterr()
    return code, (json.loads(out.out) if out.out.strip().startswith(("{", "[")) else out.out), out.err


def test_label_run_on_real_features_then_list_set_and_prompt(store, tmp_path, server, capsys, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    saved_features(store, tmp_path / "tok")
    live = [r["index"] for r in FeatureResults.load(store, "tiny-sae").table() if not r["dead"]]
    assert live

    code, info, _ = run_cli(capsys, store.home, "label", "test", "--base-url", server.url, "--model", "fake-model")
    assert code == 0 and info["model_found"] is True

    code, result, err = run_cli(capsys, store.home, "label", "run", "--sae", "tiny-sae", "--base-url", server.url,
                                "--model", "fake-model", "--n-top", "2", "--concurrency", "2", "--price-in", "1")
    assert code == 0, err
    assert result["labeled"] == len(live) and result["failed"] == 0 and result["cost_usd"] > 0
    assert "labeled" in err  # progress lines go to stderr

    table = {r["index"]: r for r in FeatureResults.load(store, "tiny-sae").table()}
    assert all(table[i]["label"] == f"word{i}" for i in live)

    code, rows, _ = run_cli(capsys, store.home, "label", "list", "--sae", "tiny-sae")
    assert [r["index"] for r in rows] == live and all(r["chance"] is not None for r in rows)
    sent = [r["body"]["messages"][-1]["content"] for r in server.requests if r["body"]]
    assert any("<<" in s and f"Feature {live[0]} fires" in s for s in sent)  # marked tokens from real windows

    i = live[0]
    code, _, _ = run_cli(capsys, store.home, "label", "set", "--sae", "tiny-sae", "--index", str(i),
                         "--label", "my name for it")
    assert code == 0
    code, rows, _ = run_cli(capsys, store.home, "label", "list", "--sae", "tiny-sae", "--search", "my name")
    assert [r["index"] for r in rows] == [i] and rows[0]["source"] == "manual"

    code, prompt, _ = run_cli(capsys, store.home, "label", "prompt", "--sae", "tiny-sae", "--index", str(i))
    assert code == 0 and f"Feature {i} fires" in prompt and "[system]" in prompt

    code, _, err = run_cli(capsys, store.home, "label", "run", "--sae", "tiny-sae", "--indices", f"{D_SAE + 5}",
                           "--base-url", server.url, "--model", "fake-model")
    assert code == 2 and "out of range" in err
