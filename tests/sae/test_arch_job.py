"""The new architectures through the real "train" job on a tiny Llama (same job, cache, checkpoint and evaluation
path as TopK), and a transcoder's evaluation splices its output hook with its input hook's activation."""
from __future__ import annotations

import pytest
import torch

from mistudio_core.model import hooks
from mistudio_core.model import models as md
from mistudio_core.jobs import Runner
from mistudio_core.sae.train_config import TrainConfig
from mistudio_core.sae.evaluate import evaluate_sae
from mistudio_core.sae.library import load_library_sae
from mistudio_core.sae.model import SAE
from test_jobs_train import make_train_home, run_to_end
from tiny_models import random_tokens, tiny_model

IN, OUT = "blocks.1.hook_mlp_in", "blocks.1.hook_mlp_out"


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    torch.set_num_threads(1)
    md.clear_cache()
    r = Runner(make_train_home(tmp_path_factory.mktemp("arch")), poll_interval=0.05, lock_retry=0.1).start()
    yield r
    r.stop(timeout=30)
    md.clear_cache()


def spec(hook: str, cache: str = "off", **train) -> dict:
    cfg = dict(d_sae=64, k=4, batch_tokens=64, steps=30, lr=3e-3, metrics_every=1, checkpoint_every=4, seed=3)
    return {"name": "arch", "model_id": "tiny-llama", "dataset_id": "tiny-ds", "hook_names": [hook],
            "train": {**cfg, **train}, "stream": {"contexts_per_forward": 8, "buffer_contexts": 16},
            "device": "cpu", "checkpoint_seconds": 0, "eval_contexts": 8, "cache": {"mode": cache}}


@pytest.mark.parametrize("hook, cache, train, saved", [
    ("blocks.1.hook_resid_post", "off", dict(architecture="matryoshka_batchtopk", matryoshka_prefixes=[8, 32]),
     "jumprelu"),
    ("blocks.1.hook_resid_post", "off", dict(architecture="jumprelu", target_l0=6), "jumprelu"),
    (IN, "build", dict(architecture="batchtopk", hook_out="hook_mlp_out", skip_transcoder=True),
     "jumprelu_skip_transcoder"),
])
def test_train_job_trains_evaluates_and_registers(runner, hook, cache, train, saved):
    reg, store = runner.registry, runner.store
    rec = run_to_end(reg, reg.submit("train", spec(hook, cache, **train)))
    (sae_id,) = rec["result"]["sae_ids"]
    manifest = store.manifest("saes", sae_id)
    assert manifest["architecture"] == saved and manifest["hook_name"] == hook
    history = reg.metrics_history(rec["id"])
    assert history[-1]["mse"] < history[0]["mse"]
    assert "ce_loss_recovered" in manifest["metrics"] and "explained_variance" in manifest["metrics"]
    sae = load_library_sae(store, sae_id)
    if "hook_out" in train:  # the activation cache held both hooks; the SAE writes the MLP output
        assert manifest["hook_name_out"] == OUT == sae.cfg.hook_name_out and sae.W_skip is not None
        assert any(set(c["hook_names"]) == {IN, OUT} for c in store.list("activations"))


def test_transcoder_job_with_a_hook_of_another_model_is_refused_before_training(runner):
    reg = runner.registry
    job = reg.submit("train", spec(IN, architecture="topk", hook_out="blocks.9.hook_mlp_out"))
    rec = run_to_end_or_fail(reg, job)
    assert rec["status"] == "failed" and "blocks.9.hook_mlp_out'] do not exist on tiny-llama" in rec["error"]
    assert not reg.metrics_history(job)


def run_to_end_or_fail(reg, job_id):
    from test_jobs_kill import wait_until
    return wait_until(lambda: (r := reg.get(job_id))["status"] in ("done", "failed") and r, timeout=120,
                      what="the job to end")


def test_transcoder_evaluation_splices_the_output_hook():
    """Scored against the MLP output, fed the MLP input of the same pass: a transcoder writing zeros splices like
    zero-ablating the MLP output; one copying its input (W_skip = I) has exactly ‖in − out‖² / ‖out‖² as NMSE."""
    model = tiny_model("llama")
    tcfg = TrainConfig.of(architecture="topk", d_sae=32, k=4, hook_out="hook_mlp_out", skip_transcoder=True)
    sae = SAE(tcfg.sae_config(32, IN), seed=0)
    with torch.no_grad():
        sae.W_dec.zero_()
    tokens = random_tokens(4, 12, seed=2)
    m = evaluate_sae(model, sae, IN, tokens, n_contexts=4, batch_size=2)
    assert m["ce_spliced"]["value"] == pytest.approx(m["ce_zero_ablated"]["value"], rel=1e-6)
    assert m["normalized_mse"]["value"] == pytest.approx(1.0, rel=1e-5)  # ‖0 − mlp_out‖² / ‖mlp_out‖²
    with torch.no_grad():
        sae.W_skip.copy_(torch.eye(32))
    m = evaluate_sae(model, sae, IN, tokens, n_contexts=4, batch_size=2)
    acts = hooks.capture(model, tokens, [IN, OUT])
    x, y = acts[IN][:, 1:].double(), acts[OUT][:, 1:].double()
    expected = float((x - y).pow(2).sum() / y.pow(2).sum())
    assert expected > 0.1 and m["normalized_mse"]["value"] == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("train", [dict(architecture="jumprelu"), dict(architecture="matryoshka_batchtopk"),
                                   dict(architecture="batchtopk", hook_out="hook_mlp_out", skip_transcoder=True)])
def test_extraction_reads_the_input_hook_of_every_architecture(tmp_path, train):
    """Feature extraction encodes the hook the SAE reads (a transcoder's input) with the architecture's encode:
    the top activations it stores are the codes `sae.encode` gives on those contexts."""
    from types import SimpleNamespace

    from mistudio_core.features.extract import ExtractConfig, extract_features
    from tiny_tokenizer import make_tiny_tokenizer

    model = tiny_model("llama")
    loaded = SimpleNamespace(model=model, tokenizer=make_tiny_tokenizer(tmp_path), model_id="tiny-llama")
    sae = SAE(TrainConfig.of(d_sae=64, k=4, **train).sae_config(32, IN), seed=1).eval()
    with torch.no_grad():
        if sae.threshold is not None:
            sae.threshold.fill_(0.05)
    tokens = random_tokens(16, 12, seed=3)
    tokens[tokens == 2] = 5
    cfg = ExtractConfig(sae_id="x", dataset_id="tiny-ds", n_tokens=10_000, top_k=4, batch_contexts=8,
                        n_quantiles=2, quantile_examples=2)
    res = extract_features(loaded, sae, tokens, cfg, hook_name=IN)
    with torch.no_grad():
        codes = sae.encode(hooks.capture(model, tokens, IN)[IN][:, 1:])
    expected = codes.reshape(-1, 64).amax(0)
    torch.testing.assert_close(res.t["max"].float(), expected, atol=1e-4, rtol=1e-4)


def test_a_trained_transcoder_steers_at_its_output_reading_its_input(runner):
    """The Steering tab's target of a trained skip transcoder writes at the MLP output and reads the MLP input: a clamp
    through the public `compare` reports the clamped value, and strength 0 is the baseline token for token."""
    from mistudio_core.steering.generate import SamplingConfig, compare
    from mistudio_core.steering.loader import load_target
    from mistudio_core.steering.methods import SteerFeature, SteeringConfig

    sae_id = next(m["id"] for m in runner.store.list("saes") if m.get("hook_name_out"))
    t = load_target(runner.store, sae_id)
    assert (t.hook_name, t.read_hook) == (OUT, IN)
    s = SamplingConfig(max_new_tokens=6, temperature=0.8, seed=1, stop_at_eos=False)
    r = compare(t.model, t.tokenizer, t.sae, t.hook_name, "a b c", SteeringConfig([SteerFeature(3, 2.0)], "clamp"), s)
    assert r["steered_feature_mean"][3] == pytest.approx(2.0, abs=1e-4)
    zero = compare(t.model, t.tokenizer, t.sae, t.hook_name, "a b c", SteeringConfig([SteerFeature(3, 0.0)]), s)
    assert zero["steered_tokens"] == zero["baseline_tokens"]
