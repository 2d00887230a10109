"""`python -m mistudio_core steer`: both activations, named, in `--json` and in the human output; a sweep's
suggested strength and effect share. The SAE+model loader is swapped for a tiny Llama and SAE."""
from __future__ import annotations

import json

import pytest

import mistudio_core.cli.steer as steer_cli
from mistudio_core.cli import main
from steering_helpers import tiny_target


@pytest.fixture
def cli(store, tmp_path, monkeypatch, capsys):
    target = tiny_target(tmp_path / "tok")
    monkeypatch.setattr(steer_cli, "load_target", lambda store, sae_id, device=None: target)

    def run(*argv, as_json=True):
        rc = main(["--home", str(store.home), *(["--json"] if as_json else []), "steer", "tiny", *argv])
        out = capsys.readouterr()
        assert rc == 0, out.err
        return json.loads(out.out) if as_json else out.out
    return run


def test_single_run_reports_the_two_activations(cli):
    out = cli("The state of the union", "--feature", "3:40", "--max-new-tokens", "5", "--temperature", "0")
    assert set(out["steered_feature_mean"]) == set(out["feature_mean"]) == {"3"}
    assert out["steered_feature_mean"]["3"] > out["baseline_feature_mean"]["3"]   # +40·W_dec[3] at the hook
    human = cli("The state of the union", "--feature", "3:40", "--max-new-tokens", "5", as_json=False)
    assert "activation in the steered model (at the hook)" in human and "unsteered model reading" in human


def test_sweep_json_has_baseline_suggestion_and_effect(cli):
    out = cli("We the people", "--feature", "3:1", "--sweep", "0,4,16", "--seeds", "2", "--max-new-tokens", "4")
    assert [r["strength"] for r in out["rows"]] == [0.0, 4.0, 16.0] and out["seeds"] == 2
    assert all("steered_feature_mean" in r and "effect_share" in r for r in out["rows"])
    assert "effect_share" in out["baseline"] and out["suggestion"] and "unembedding" in out["effect_source"]
    human = cli("We the people", "--feature", "3:1", "--sweep", "0,4", "--max-new-tokens", "3", as_json=False)
    assert "suggested strength" in human and "baseline" in human
