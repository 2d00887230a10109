"""Evaluation by splicing on a tiny Llama, and the `train` / `eval` CLI end to end."""
import json

import pytest
import torch
from safetensors.torch import save_file

from mistudio_core.model import models as md
from mistudio_core.cli import main
from mistudio_core.sae.config import SAEConfig
from mistudio_core.sae.evaluate import evaluate_sae
from mistudio_core.sae.model import SAE
from mistudio_core.platform.store import Store, write_json_atomic
from tests.sae_synthetic import one_thread  # noqa: F401
from tests.tiny_models import random_tokens, save_tiny_model, tiny_model
from tests.tiny_tokenizer import make_tiny_tokenizer

pytestmark = pytest.mark.usefixtures("one_thread")
HOOK = "blocks.1.hook_resid_post"


def _exact_sae(d: int) -> SAE:
    """relu(x) − relu(−x) = x: a standard SAE that reconstructs perfectly."""
    sae = SAE(SAEConfig("standard", d, 2 * d, apply_b_dec_to_input=False))
    eye = torch.eye(d)
    with torch.no_grad():
        sae.W_enc.copy_(torch.cat([eye, -eye], 1))
        sae.W_dec.copy_(torch.cat([eye, -eye], 0))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae


def test_perfect_and_zero_reconstructions_bracket_the_metrics():
    model = tiny_model("llama")
    tokens = random_tokens(8, 16, seed=2)
    good = evaluate_sae(model, _exact_sae(32), HOOK, tokens, n_contexts=8)
    assert good["explained_variance"]["value"] == pytest.approx(1.0, abs=1e-6)
    assert good["ce_loss_recovered"]["value"] == pytest.approx(1.0, abs=1e-4)
    assert good["kl_divergence"]["value"] == pytest.approx(0.0, abs=1e-5)
    assert good["shrinkage"]["value"] == pytest.approx(1.0, abs=1e-5)
    assert "CE_zero_ablated" in good["ce_loss_recovered"]["formula"]
    zero = _exact_sae(32)
    with torch.no_grad():
        zero.W_dec.zero_()
    bad = evaluate_sae(model, zero, HOOK, tokens, n_contexts=8)
    assert bad["ce_loss_recovered"]["value"] == pytest.approx(0.0, abs=1e-4)
    assert bad["explained_variance"]["value"] < 0.1 and bad["kl_divergence"]["value"] > 0


def _home(root) -> Store:
    store = Store(root / "home")
    save_tiny_model("llama", root / "tiny-llama")
    make_tiny_tokenizer(root / "tiny-llama")
    md.add_local_model(store, root / "tiny-llama")
    with store.create("datasets", "tiny ds", {"n_docs": 64, "tokenizations": ["tiny-llama"]},
                      artifact_id="tiny-ds") as tmp:
        out = tmp / "tokenized" / "tiny-llama"
        out.mkdir(parents=True)
        save_file({"tokens": random_tokens(64, 16, seed=1).int()}, str(out / "tokens.safetensors"))
        write_json_atomic(out / "config.json", {"context_size": 16, "prepend_bos": True, "bos_token_id": 1})
        write_json_atomic(out / "stats.json", {"n_contexts": 64, "n_tokens": 64 * 16})
    return store


def test_cli_train_then_eval(tmp_path, capsys):
    home = str(_home(tmp_path).home)
    rc = main(["--home", home, "--json", "train", "--model", "tiny-llama", "--dataset", "tiny-ds",
               "--hook", HOOK, "--hook", "blocks.0.hook_resid_post", "--architecture", "topk", "--d-sae", "64",
               "--k", "4", "--steps", "30", "--batch-tokens", "128", "--lr", "3e-3", "--metrics-every", "10",
               "--eval-contexts", "8", "--device", "cpu"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    summary = json.loads(out.out)
    assert "[30/30]" in out.err and summary["job_id"] in out.err  # progress on stderr, summary alone on stdout
    assert [s["hook_name"] for s in summary["saes"]] == [HOOK, "blocks.0.hook_resid_post"]
    first = summary["saes"][0]
    assert 0.3 < first["metrics"]["explained_variance"] <= 1 and first["metrics"]["l0"] <= 4
    assert "ce_loss_recovered" in first["metrics"] and summary["tokens_per_s"] > 0
    assert first["metrics_source"] == {"dataset_id": "tiny-ds", "split": "heldout", "n_contexts": 8,
                                       "n_tokens": 8 * 15}
    assert first["train_batch_metrics"]["step"] == 30 and "explained_variance" in first["train_batch_metrics"]
    rc = main(["--home", home, "--json", "eval", "--sae", first["sae_id"], "--dataset", "tiny-ds",
               "--n-contexts", "8", "--split", "train", "--device", "cpu"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    record = json.loads(out.out)
    assert record["split"] == "train" and record["metrics"]["explained_variance"]["formula"].startswith("1 −")
    rc = main(["--home", home, "train", "--model", "tiny-llama", "--dataset", "tiny-ds", "--hook", "blocks.9.x",
               "--steps", "2", "--device", "cpu"])
    assert rc == 2 and "blocks.1.hook_resid_post" in capsys.readouterr().err  # lists the valid hooks
