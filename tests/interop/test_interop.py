"""Interop: Gemma Scope / sparsify / SAELens imports encode as their own formulas say; exports round-trip; hostile
files are refused with clear errors and nothing is written outside the data directory."""
from __future__ import annotations

import io
import json
import pickle
import tarfile
import zipfile

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from mistudio_core.platform.errors import MistudioError, ValidationError
from mistudio_core.interop.compare import compare_saes
from mistudio_core.interop.export_saelens import export_saelens
from mistudio_core.interop.importers import gemma_scope_config, import_sae
from mistudio_core.interop.safefiles import extract_archive, load_tensors
from mistudio_core.sae.io import load_sae
from mistudio_core.sae.library import load_library_sae

D_IN = 8


def make_gemma_scope(folder, d_sae=16 * 1024, seed=0):
    g = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    np.savez(folder / "params.npz", W_enc=g.normal(size=(D_IN, d_sae)).astype(np.float32),
             W_dec=g.normal(size=(d_sae, D_IN)).astype(np.float32), b_enc=g.normal(size=d_sae).astype(np.float32),
             b_dec=g.normal(size=D_IN).astype(np.float32), threshold=np.abs(g.normal(size=d_sae)).astype(np.float32))
    return folder


def test_gemma_scope_path_gives_hook_and_width():
    info = gemma_scope_config("google/gemma-scope-2b-pt-res", "layer_20/width_16k/average_l0_71")
    assert info == {"hook_name": "blocks.20.hook_resid_post", "d_sae": 16384, "model_name": "gemma-2-2b", "layer": 20}
    assert gemma_scope_config("google/gemma-scope-9b-pt-mlp", "layer_3/width_1m/average_l0_9")["hook_name"] == \
        "blocks.3.hook_mlp_out"


def test_gemma_scope_params_npz_encodes_as_jumprelu_formula(store, tmp_path):
    folder = make_gemma_scope(tmp_path / "gs")
    m = import_sae(store, folder, repo_id="google/gemma-scope-2b-pt-res",
                   path_in_repo="layer_20/width_16k/average_l0_71")
    assert (m["architecture"], m["d_sae"], m["hook_name"]) == ("jumprelu", 16384, "blocks.20.hook_resid_post")
    p = {k: torch.from_numpy(v) for k, v in np.load(folder / "params.npz").items()}
    x = torch.randn(64, D_IN)
    pre = x @ p["W_enc"] + p["b_enc"]
    expected = pre * (pre > p["threshold"])
    sae = load_library_sae(store, m["id"])
    assert torch.equal(sae.encode(x), expected)
    assert torch.allclose(sae.decode(expected), expected @ p["W_dec"] + p["b_dec"], atol=1e-5)


def test_sparsify_folder_encodes_as_topk_of_centred_input(store, tmp_path):
    folder = tmp_path / "layers.8"
    folder.mkdir()
    d_sae, k = 32, 4
    t = {"encoder.weight": torch.randn(d_sae, D_IN), "encoder.bias": torch.randn(d_sae),
         "W_dec": torch.randn(d_sae, D_IN), "b_dec": torch.randn(D_IN)}
    save_file(t, str(folder / "sae.safetensors"))
    (folder / "cfg.json").write_text(json.dumps({"k": k, "num_latents": d_sae, "expansion_factor": 4,
                                                 "normalize_decoder": True, "d_in": D_IN}))
    m = import_sae(store, folder)
    assert (m["architecture"], m["k"], m["hook_name"]) == ("topk", k, "blocks.8.hook_resid_post")
    x = torch.randn(16, D_IN)
    pre = torch.relu((x - t["b_dec"]) @ t["encoder.weight"].T + t["encoder.bias"])
    vals, idx = pre.topk(k, dim=-1)
    expected = torch.zeros_like(pre).scatter_(-1, idx, vals)
    assert torch.allclose(load_library_sae(store, m["id"]).encode(x), expected, atol=1e-6)


def test_saelens_export_loads_back_identically_and_has_a_model_card(store, tmp_path):
    m = import_sae(store, make_gemma_scope(tmp_path / "gs", d_sae=64), repo_id="google/gemma-scope-2b-pt-res",
                   path_in_repo="layer_2/width_64/x")
    out = export_saelens(store, m["id"])
    folder = tmp_path / "unused"
    bundle = store.path("exports", out["id"])
    sae_dir = bundle / "blocks.2.hook_resid_post"
    assert {p.name for p in sae_dir.iterdir()} >= {"cfg.json", "sae_weights.safetensors"}
    card = (bundle / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: saelens") and "jumprelu" in card
    x = torch.randn(10, D_IN)
    assert torch.equal(load_sae(sae_dir).encode(x), load_library_sae(store, m["id"]).encode(x))
    assert not folder.exists()


def test_compare_finds_identical_features(store, tmp_path):
    where = dict(repo_id="x/y-res", path_in_repo="layer_2/width_64/")
    a = import_sae(store, make_gemma_scope(tmp_path / "a", d_sae=64), **where)
    b = import_sae(store, make_gemma_scope(tmp_path / "b", d_sae=64), **where)
    same = compare_saes(store, a["id"], b["id"])
    assert same["fraction_above_0.9"] == 1.0 and sum(same["histogram"]["counts"]) == 64
    c = import_sae(store, make_gemma_scope(tmp_path / "c", d_sae=64, seed=7), repo_id="x/y-res",
                   path_in_repo="layer_2/width_64/")
    assert compare_saes(store, a["id"], c["id"])["mean_best_cosine"] < 0.99


# ---- hostile files ---------------------------------------------------------------------------------------------
class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_payload_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "weights.pt"
    path.write_bytes(pickle.dumps({"W_enc": _Payload(str(marker))}))
    with pytest.raises(ValidationError, match="weights.pt"):
        load_tensors(path)
    (tmp_path / "w.pkl").write_bytes(b"x")
    with pytest.raises(ValidationError, match="pickle"):
        load_tensors(tmp_path / "w.pkl")
    assert not marker.exists()


def test_truncated_safetensors_names_the_file(store, tmp_path):
    folder = tmp_path / "layers.1"
    folder.mkdir()
    save_file({"encoder.weight": torch.randn(16, D_IN)}, str(folder / "sae.safetensors"))
    data = (folder / "sae.safetensors").read_bytes()
    (folder / "sae.safetensors").write_bytes(data[: len(data) // 2])
    (folder / "cfg.json").write_text(json.dumps({"k": 2}))
    with pytest.raises(ValidationError, match="sae.safetensors.*(corrupt|truncated)"):
        import_sae(store, folder)
    assert store.list("saes") == []


def test_mismatched_shapes_name_both_shapes(store, tmp_path):
    folder = tmp_path / "layers.1"
    folder.mkdir()
    save_file({"encoder.weight": torch.randn(16, D_IN), "encoder.bias": torch.randn(16),
               "W_dec": torch.randn(16, D_IN + 1), "b_dec": torch.randn(D_IN)}, str(folder / "sae.safetensors"))
    (folder / "cfg.json").write_text(json.dumps({"k": 2}))
    with pytest.raises(ValidationError, match=r"\(16, 9\).*\(16, 8\)"):
        import_sae(store, folder)
    assert store.list("saes") == []


def test_path_traversal_archives_are_refused(store, tmp_path):
    evil_zip = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil_zip, "w") as zf:
        zf.writestr("../../escaped.txt", "x")
    with pytest.raises(ValidationError, match="outside"):
        import_sae(store, evil_zip)
    evil_tar = tmp_path / "evil.tar.gz"
    with tarfile.open(evil_tar, "w:gz") as tf:
        info = tarfile.TarInfo("/etc/escaped")
        info.size = 1
        tf.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(ValidationError, match="outside"):
        extract_archive(evil_tar, tmp_path / "out")
    link_tar = tmp_path / "link.tar"
    with tarfile.open(link_tar, "w") as tf:
        info = tarfile.TarInfo("cfg.json")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(info)
    with pytest.raises(ValidationError, match="link"):
        extract_archive(link_tar, tmp_path / "out2")
    assert not (tmp_path.parent / "escaped.txt").exists() and not list((tmp_path / "out").iterdir())
    assert store.list("saes") == []


def test_zip_of_a_saelens_folder_imports(store, tmp_path):
    m = import_sae(store, make_gemma_scope(tmp_path / "gs", d_sae=64), repo_id="x/y-res",
                   path_in_repo="layer_1/width_64/")
    out = export_saelens(store, m["id"])
    archive = tmp_path / "bundle.zip"
    sae_dir = store.path("exports", out["id"]) / "blocks.1.hook_resid_post"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in sae_dir.iterdir():
            zf.write(f, f"sae/{f.name}")
    again = import_sae(store, archive, name="from-zip")
    assert again["hook_name"] == "blocks.1.hook_resid_post" and again["d_sae"] == 64


def test_offline_hub_import_fails_fast_with_a_clear_message(store, monkeypatch):
    import time

    from mistudio_core.platform.errors import OfflineError
    from mistudio_core.interop.hub import import_from_hub, upload_bundle

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.time()
    with pytest.raises(OfflineError, match="HF_HUB_OFFLINE"):
        import_from_hub(store, "google/gemma-scope-2b-pt-res", "layer_20/width_16k/average_l0_71")
    with pytest.raises(OfflineError):
        upload_bundle(store.home, "me/my-sae", token="hf_x")
    assert time.time() - start < 10
    with pytest.raises(MistudioError, match="owner/name"):
        import_from_hub(store, "not-a-repo", "")


def test_runtime_names_a_space_and_the_accelerator(monkeypatch):
    from mistudio_core.platform import runtime

    runtime.describe_runtime.cache_clear()
    monkeypatch.setenv("SPACE_ID", "me/mistudio")
    info = runtime.describe_runtime()
    assert info["on_space"] and info["summary"].startswith("Hugging Face Space me/mistudio")
    assert info["accelerator"]["device"] in ("cpu", "cuda", "mps")
    runtime.describe_runtime.cache_clear()
    monkeypatch.delenv("SPACE_ID")
    assert runtime.describe_runtime()["summary"].startswith("local machine")
    runtime.describe_runtime.cache_clear()
