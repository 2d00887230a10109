"""The bf16 TopK search with fp32 rescore (`sparse_encode.LowPrecisionSearch`) keeps the fp32 codes: the same
(token, latent) pairs as the fp32 encode on random data, at fp32 values; a planted near-tie that bf16 cannot
tell apart still goes to the fp32 winner; other architectures and old jobs keep the plain fp32 encode; the
extraction records which dtypes it used."""
from __future__ import annotations

import pytest
import torch

from mistudio_core.platform.errors import ValidationError
from mistudio_core.features import extract as extract_mod
from mistudio_core.features.extract import ExtractConfig, extract_features, resolve_search_dtype
from mistudio_core.features.sparse_encode import prepare_search, sparse_codes
from mistudio_core.sae.config import SAEConfig
from mistudio_core.sae.model import SAE
from tests.features_helpers import HOOK, tiny_setup

BIG = 1 << 24


def topk_sae(d_in: int, d_sae: int, k: int, seed: int = 0) -> SAE:
    """A random TopK SAE with every input step of `SAE.pre_acts` in use (scale, b_dec, b_enc)."""
    sae = SAE(SAEConfig(architecture="topk", d_in=d_in, d_sae=d_sae, k=k, apply_b_dec_to_input=True,
                        metadata={"hook_name": HOOK}), seed=seed).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        sae.b_enc.copy_(torch.randn(d_sae, generator=g) * 0.1)
        sae.b_dec.copy_(torch.randn(d_in, generator=g) * 0.2)
        sae.norm_scale.fill_(0.7)
    return sae


def as_dict(tok, feat, vals) -> dict[tuple[int, int], float]:
    return dict(zip(zip(tok.tolist(), feat.tolist()), vals.tolist()))


@pytest.mark.parametrize("d_sae,k", [(2048, 16), (4608, 32)])
def test_bf16_search_keeps_the_fp32_pairs_and_values(d_sae, k):
    sae = topk_sae(128, d_sae, k)
    acts = torch.randn(16, 64, 128, generator=torch.Generator().manual_seed(1)) * 3  # 1024 tokens
    exact = as_dict(*sparse_codes(sae, acts, BIG))
    search = prepare_search(sae, "bfloat16")
    assert search is not None and search.dtype == torch.bfloat16
    fast = as_dict(*sparse_codes(sae, acts, BIG // 8, search))  # several chunks, as in a real pass
    assert len(exact) > 0.99 * 1024 * k  # nearly every top-k pre-activation is positive here
    shared = exact.keys() & fast.keys()
    assert len(shared) >= 0.999 * len(exact) and len(fast) <= len(exact) + 0.001 * len(exact)
    for pair in shared:
        assert fast[pair] == pytest.approx(exact[pair], rel=1e-5, abs=1e-5)
    with torch.no_grad():  # and they are SAE.encode's own values
        dense = sae.encode(acts).reshape(-1, d_sae)
    t, f = torch.tensor(list(shared)).T
    assert torch.allclose(torch.tensor([fast[p] for p in shared]), dense[t, f], rtol=1e-5, atol=1e-5)


def test_rescore_picks_the_fp32_winner_of_a_bf16_tie():
    """Two planted pairs of latents whose pre-activations differ by 0.2%, less than bf16's 0.8% step at 1.0:
    in bf16 all four are 1.0. The winners sit once below and once above their rival's index, so no tie-break
    rule of the bf16 selection gets both right: without the margin it must miss one; with it, the fp32 rescore
    of all candidates keeps both, at their fp32 values."""
    d_in, d_sae, k = 16, 1024, 2  # 32 blocks ≥ 2·(k + margin): select_topk's block search runs
    sae = topk_sae(d_in, d_sae, k, seed=2)
    winners, losers = (10, 40), (20, 30)
    with torch.no_grad():
        sae.norm_scale.fill_(1.0)
        sae.b_dec.zero_()
        sae.b_enc.zero_()
        sae.W_enc.mul_(0.05)  # every other latent stays far below 1
        sae.W_enc[:, winners + losers] = 0
        sae.W_enc[0, list(winners)] = 1.002
        sae.W_enc[0, list(losers)] = 1.0
    acts = torch.zeros(2, 8, d_in)
    acts[..., 0] = 1.0
    acts[..., 1:] = torch.randn(2, 8, d_in - 1, generator=torch.Generator().manual_seed(0)) * 0.1
    want = {(t, f): 1.002 for t in range(16) for f in winners}
    assert {p: round(v, 6) for p, v in as_dict(*sparse_codes(sae, acts, BIG)).items()} == want
    got = as_dict(*sparse_codes(sae, acts, BIG, prepare_search(sae, "bfloat16")))
    assert got.keys() == want.keys()
    assert all(v == pytest.approx(1.002, abs=1e-6) for v in got.values())
    blind = as_dict(*sparse_codes(sae, acts, BIG, prepare_search(sae, "bfloat16", margin=0)))
    assert blind.keys() != want.keys()  # the margin is what saves it


def test_other_architectures_and_fp32_keep_the_plain_encode():
    standard = SAE(SAEConfig(architecture="standard", d_in=32, d_sae=256), seed=0).eval()
    assert prepare_search(standard, "bfloat16") is None
    assert prepare_search(topk_sae(32, 256, 4), "float32") is None
    acts = torch.randn(3, 5, 32)
    tok, feat, vals = sparse_codes(standard, acts, BIG, prepare_search(standard, "bfloat16"))
    with torch.no_grad():
        dense = standard.encode(acts).reshape(-1, 256)
    rows, cols = dense.nonzero(as_tuple=True)
    assert torch.equal(tok, rows) and torch.equal(feat, cols) and torch.equal(vals, dense[rows, cols])


def test_search_dtype_choice(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(extract_mod, "cpu_bf16_speedup", lambda: 3.0)  # an AMX CPU
    assert resolve_search_dtype(ExtractConfig(), torch.float32, cpu) == "float32"  # old jobs: unchanged
    assert resolve_search_dtype(ExtractConfig(model_dtype="float32"), torch.float32, cpu) == "bfloat16"
    assert resolve_search_dtype(ExtractConfig(model_dtype="auto", search_dtype="float32"), torch.bfloat16,
                                cpu) == "float32"
    monkeypatch.setattr(extract_mod, "cpu_bf16_speedup", lambda: 0.8)  # bf16 emulated: slower
    assert resolve_search_dtype(ExtractConfig(model_dtype="auto"), torch.float32, cpu) == "float32"
    assert resolve_search_dtype(ExtractConfig(model_dtype="auto"), torch.bfloat16, cpu) == "bfloat16"
    with pytest.raises(ValidationError, match="model_dtype"):
        ExtractConfig(model_dtype="fp16")
    with pytest.raises(ValidationError, match="search_dtype"):
        ExtractConfig(search_dtype="int8")


def test_extraction_in_bf16_search_matches_fp32_and_says_so(tmp_path):
    loaded, _, tokens = tiny_setup(tmp_path)
    sae = topk_sae(loaded.model.config.hidden_size, 1024, 8, seed=3)
    cfg = dict(n_tokens=10_000, top_k=3, window_before=2, window_after=1, batch_contexts=16, n_logits=3,
               cooc_features=0, model_dtype="float32")
    exact = extract_features(loaded, sae, tokens, ExtractConfig(**cfg, search_dtype="float32"))
    fast = extract_features(loaded, sae, tokens, ExtractConfig(**cfg, search_dtype="bfloat16"))
    assert exact.meta["dtypes"] == {"model": "float32", "search": "float32", "values": "float32",
                                    "search_margin": 0, "logits_search": "float32"}
    assert fast.meta["dtypes"] == {"model": "float32", "search": "bfloat16", "values": "float32",
                                   "search_margin": 8, "logits_search": "bfloat16"}
    assert torch.equal(fast.t["top_logit_ids"], exact.t["top_logit_ids"])  # bf16-searched logits: same lists
    assert torch.allclose(fast.t["top_logit_vals"], exact.t["top_logit_vals"], atol=1e-5)
    n_codes = int(exact.t["count"].sum())
    assert n_codes > 0 and int((fast.t["count"] - exact.t["count"]).abs().sum()) <= 0.001 * n_codes
    assert torch.allclose(fast.t["max"], exact.t["max"], rtol=1e-5, atol=1e-5)
    assert torch.allclose(fast.t["sum"], exact.t["sum"], rtol=1e-4, atol=1e-4)


def test_cli_and_job_load_the_model_in_the_resolved_dtype(tmp_path, monkeypatch):
    """`extract run` asks for model_dtype "auto" (unless told otherwise); `run_extraction` loads the model in
    `resolve_model_dtype` of it, and in the default dtype for a job spec from before the option."""
    from types import SimpleNamespace

    from mistudio_core.model import models
    from mistudio_core.cli import main
    from mistudio_core.features import job as job_mod

    seen = []  # the spec each `extract run` builds, through the one front door
    monkeypatch.setattr(job_mod, "sae_model_and_hook", lambda store, sae_id: ("m", HOOK))
    monkeypatch.setattr(job_mod, "load_tokens_for", lambda store, ds, model: None)
    monkeypatch.setattr("mistudio_core.cli.foreground.run_foreground",
                        lambda store, kind, spec, **kw: seen.append(spec) or {"status": "done", "result": {}})
    results = SimpleNamespace(n_tokens=1, n_features=2, frequencies=lambda: torch.zeros(2))
    monkeypatch.setattr("mistudio_core.features.results.FeatureResults.load", lambda store, sae: results)
    assert main(["--home", str(tmp_path), "extract", "run", "--sae", "s", "--dataset", "d"]) == 0
    assert main(["--home", str(tmp_path), "extract", "run", "--sae", "s", "--dataset", "d", "--model-dtype",
                 "float32"]) == 0
    assert [s["model_dtype"] for s in seen] == ["auto", "float32"]
    monkeypatch.undo()

    class Loaded(Exception):
        pass

    def fake_load(store, model_id, device=None, dtype=None, quantization=None):
        raise Loaded(dtype)

    monkeypatch.setattr(job_mod, "sae_model_and_hook", lambda store, sae_id: ("m", HOOK))
    monkeypatch.setattr(job_mod, "load_tokens_for", lambda store, ds, model: None)
    monkeypatch.setattr(models, "load_model", fake_load)
    monkeypatch.setattr("mistudio_core.model.compute.cpu_bf16_speedup", lambda: 3.0)
    for asked, want in ((None, None), ("auto", "bfloat16"), ("float32", "float32")):
        with pytest.raises(Loaded) as e:
            job_mod.run_extraction(None, ExtractConfig(sae_id="s", dataset_id="d", model_dtype=asked), device="cpu")
        assert e.value.args[0] == want
