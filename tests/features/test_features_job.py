"""The "extract" job end to end through the library: tiny model folder + tokenized text + registered SAE,
submitted to the registry and run by the runner; plus the CLI and the wrong-model error."""
from __future__ import annotations

import time

import pytest
import torch
import transformers as tf

from mistudio_core.platform.errors import NotFoundError
from mistudio_core.features.extract import ExtractConfig
from mistudio_core.features.job import run_extraction
from mistudio_core.features.results import FeatureResults
from tests.features_helpers import HOOK, tiny_sae
from tests.tiny_models import tiny_config
from tests.tiny_tokenizer import _CORPUS, make_tiny_tokenizer


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    """A store with a tiny Llama (vocab matching the tiny tokenizer), a dataset tokenized for it, and an SAE."""
    from mistudio_core.data import datasets, tokenize
    from mistudio_core.model import models
    from mistudio_core.sae.library import register_sae
    from mistudio_core.platform.store import Store

    root = tmp_path_factory.mktemp("lib")
    store = Store(root / "home")
    folder = root / "tiny-llama"
    tok = make_tiny_tokenizer(folder)
    cfg = tiny_config("llama")
    cfg.vocab_size = len(tok)
    cfg.bos_token_id, cfg.eos_token_id, cfg.pad_token_id = tok.bos_token_id, tok.eos_token_id, tok.pad_token_id
    torch.manual_seed(0)
    tf.AutoModelForCausalLM.from_config(cfg, attn_implementation="eager").save_pretrained(folder)
    model_id = models.add_local_model(store, folder)["id"]
    text = root / "speeches.txt"
    text.write_text("\n\n".join(_CORPUS * 6), encoding="utf-8")
    ds_id = datasets.add_local(store, text, name="speeches")["id"]
    tokenize.tokenize_dataset(store, ds_id, model_id, tokenize.TokenizeConfig(context_size=16))
    other_id = datasets.add_local(store, text, name="untokenized")["id"]
    sae = tiny_sae(cfg.hidden_size)
    sae_id = register_sae(store, sae, "tiny-sae", provenance={"model_id": model_id, "hook_name": HOOK,
                                                              "dataset_id": ds_id})["id"]
    return store, sae_id, ds_id, other_id


def test_job_runs_and_saves(lib):
    from mistudio_core.jobs import JobRegistry, Runner

    store, sae_id, ds_id, _ = lib
    runner = Runner(store, poll_interval=0.05, lock_retry=0.1, heartbeat_interval=0.2).start()
    try:
        reg = JobRegistry(store)
        job = reg.submit("extract", ExtractConfig(sae_id=sae_id, dataset_id=ds_id, n_tokens=400, top_k=3,
                                                  batch_contexts=4).to_dict())
        end = time.time() + 120
        while reg.get(job)["status"] in ("queued", "running") and time.time() < end:
            time.sleep(0.1)
        rec = reg.get(job)
    finally:
        runner.stop(timeout=30)
    assert rec["status"] == "done", rec.get("error")
    assert rec["result"]["saved"] and rec["result"]["n_features"] == 24
    assert rec["progress"]["fraction"] == 1.0
    res = FeatureResults.load(store, sae_id)
    assert res.meta["dataset_id"] == ds_id and 0 < res.n_tokens <= 400
    alive = int(res.t["count"].argmax())
    assert res.feature(alive)["top_examples"]
    assert [m["step"] for m in reg.metrics_history(job)] == sorted(m["step"] for m in reg.metrics_history(job))


def test_dataset_of_another_model_is_refused(lib):
    store, sae_id, _, other_id = lib
    with pytest.raises(NotFoundError, match="tokenize"):
        run_extraction(store, ExtractConfig(sae_id=sae_id, dataset_id=other_id, n_tokens=100))


def test_cli_run_table_feature_search(lib, capsys):
    from mistudio_core.cli import main

    store, sae_id, ds_id, _ = lib
    home = str(store.home)
    assert main(["--home", home, "--json", "extract", "run", "--sae", sae_id, "--dataset", ds_id,
                 "--n-tokens", "200", "--top-k", "2", "--filters", "special", "punctuation"]) == 0
    assert '"n_features": 24' in capsys.readouterr().out
    assert main(["--home", home, "extract", "table", "--sae", sae_id, "--limit", "3"]) == 0
    assert capsys.readouterr().out.count("index=") == 3
    f = int(FeatureResults.load(store, sae_id).t["count"].argmax())
    assert main(["--home", home, "extract", "feature", "--sae", sae_id, "--index", str(f)]) == 0
    out = capsys.readouterr().out
    assert f"feature {f}" in out and "[[" in out and "top logits" in out
    assert main(["--home", home, "extract", "feature", "--sae", sae_id, "--index", "999"]) == 2
