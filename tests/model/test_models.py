"""Model registry and loading on tiny local models: manifests, cache, refusals, offline hub, CLI."""
from __future__ import annotations

import json
import shutil
import time

import pytest
import torch

from mistudio_core.model import models as md
from mistudio_core.cli import main as cli_main
from mistudio_core.platform.errors import NotFoundError, OfflineError, UnsupportedError, ValidationError
from tiny_models import save_tiny_model, tiny_model


@pytest.fixture(scope="module")
def tiny_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-models")
    for family in ("llama", "gpt2"):
        save_tiny_model(family, root / f"tiny-{family}")
    return root


@pytest.fixture(autouse=True)
def _fresh_cache():
    md.clear_cache()
    yield
    md.clear_cache()


@pytest.mark.parametrize("family,layers,d", [("llama", 3, 32), ("gpt2", 3, 48)])
def test_add_local_folder_describes_the_model(store, tiny_folders, family, layers, d):
    m = md.add_local_model(store, tiny_folders / f"tiny-{family}")
    assert m["id"] == f"tiny-{family}"
    assert m["source"] == {"type": "local", "path": str(tiny_folders / f"tiny-{family}")}
    assert (m["n_layers"], m["d_model"], m["vocab_size"]) == (layers, d, 512)
    assert m["n_params"] == sum(p.numel() for p in tiny_model(family).parameters())
    assert len(m["hook_points"]) == 4 * layers and "blocks.1.hook_resid_post" in m["hook_points"]
    assert [x["id"] for x in store.list("models")] == [f"tiny-{family}"]


@pytest.mark.parametrize("family", ["gemma2", "gemma3", "qwen3", "phi3", "gpt_neox"])
def test_every_family_loads_including_those_without_sdpa(store, tmp_path, family):
    save_tiny_model(family, tmp_path / family)  # Gemma-2 refuses a forced SDPA; it must still load (eager)
    md.add_local_model(store, tmp_path / family)
    loaded = md.load_model(store, family)
    assert loaded.model(input_ids=loaded.tokenizer("hello world", return_tensors="pt").input_ids).logits.ndim == 3


def test_load_model_defaults_and_cache(store, tiny_folders):
    md.add_local_model(store, tiny_folders / "tiny-llama")
    loaded = md.load_model(store, "tiny-llama")
    expected = ("cuda", "bfloat16") if torch.cuda.is_available() else ("cpu", "float32")
    assert (loaded.device, loaded.dtype) == expected and not loaded.model.training
    assert loaded.model.dtype == getattr(torch, expected[1]) and loaded.model.config._attn_implementation == "sdpa"
    assert loaded.tokenizer("hello world").input_ids
    assert md.load_model(store, "tiny-llama") is loaded  # cached in-process
    half = md.load_model(store, "tiny-llama", device="cpu", dtype="bfloat16")
    assert half is not loaded and half.model.dtype == torch.bfloat16
    # The weights are the saved ones: same logits as the model we saved.
    ids = torch.tensor([[1, 5, 9, 42]])
    with torch.no_grad():
        ref = tiny_model("llama")(ids).logits
        got = md.load_model(store, "tiny-llama", device="cpu", dtype="float32").model(ids).logits
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)


def test_cache_is_a_small_lru(store, tiny_folders, monkeypatch):
    monkeypatch.setattr(md, "CACHE_SIZE", 2)
    md.add_local_model(store, tiny_folders / "tiny-llama")
    a = md.load_model(store, "tiny-llama", device="cpu", dtype="float32")
    md.load_model(store, "tiny-llama", device="cpu", dtype="bfloat16")
    assert md.load_model(store, "tiny-llama", device="cpu", dtype="float32") is a  # touched: now most recent
    md.load_model(store, "tiny-llama", device="cpu", dtype="float16")  # evicts bfloat16, keeps a
    assert len(md._CACHE) == 2 and md.load_model(store, "tiny-llama", device="cpu", dtype="float32") is a


def test_refusals_are_clear(store, tiny_folders):
    md.add_local_model(store, tiny_folders / "tiny-llama")
    if not torch.cuda.is_available():
        with pytest.raises(UnsupportedError, match="needs a CUDA GPU"):
            md.load_model(store, "tiny-llama", quantization="4bit")
    with pytest.raises(ValidationError, match="none, 8bit or 4bit"):
        md.load_model(store, "tiny-llama", quantization="3bit")
    with pytest.raises(ValidationError, match="float32, bfloat16, float16"):
        md.load_model(store, "tiny-llama", dtype="int7")
    with pytest.raises(NotFoundError, match="tiny-llama"):
        md.load_model(store, "no-such-model")
    with pytest.raises(ValidationError, match="already registered"):
        md.add_local_model(store, tiny_folders / "tiny-llama")


def test_local_folder_validation(store, tmp_path, tiny_folders):
    with pytest.raises(NotFoundError):
        md.add_local_model(store, tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValidationError, match="config.json"):
        md.add_local_model(store, tmp_path / "empty")
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    shutil.copy(tiny_folders / "tiny-llama" / "config.json", pickled)
    (pickled / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(UnsupportedError, match="safetensors"):
        md.add_local_model(store, pickled)
    assert store.list("models") == []


def test_moved_local_folder_is_a_clear_error(store, tiny_folders, tmp_path):
    folder = tmp_path / "mine"
    shutil.copytree(tiny_folders / "tiny-gpt2", folder)
    md.add_local_model(store, folder)
    shutil.rmtree(folder)
    with pytest.raises(NotFoundError, match="no longer holds a model"):
        md.load_model(store, "mine")


def test_hub_offline_fails_fast(store, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.perf_counter()
    with pytest.raises(OfflineError, match="HF_HUB_OFFLINE"):
        md.add_hub_model(store, "someone/not-cached-model-xyz", token="hf_secret")
    assert time.perf_counter() - t0 < 5
    with pytest.raises(ValidationError, match="owner/name"):
        md.add_hub_model(store, "not a repo id!")
    assert store.list("models") == []
    assert "hf_secret" not in "".join(p.read_text() for p in store.home.rglob("*.json"))


def test_delete_keeps_the_users_folder(store, tiny_folders):
    md.add_local_model(store, tiny_folders / "tiny-gpt2")
    md.load_model(store, "tiny-gpt2")
    md.delete_model(store, "tiny-gpt2")
    assert store.list("models") == [] and not md._CACHE
    assert (tiny_folders / "tiny-gpt2" / "config.json").is_file()
    with pytest.raises(NotFoundError):
        md.delete_model(store, "tiny-gpt2")


def test_model_summary_from_manifest_and_loaded(store, tiny_folders):
    manifest = md.add_local_model(store, tiny_folders / "tiny-llama")
    summary = md.model_summary(manifest)
    n = manifest["n_params"]
    assert summary["memory_bytes"]["float32"] == 4 * n and summary["memory_bytes"]["bfloat16"] == 2 * n
    loaded = md.model_summary(md.load_model(store, "tiny-llama", device="cpu"))
    assert loaded["n_layers"] == 3 and loaded["hook_points"] == manifest["hook_points"]
    assert loaded["dtype"] == "float32" and loaded["n_params"] == n


def test_cli_add_list_show_delete(store, tiny_folders, capsys):
    home = ["--home", str(store.home)]

    def run(*argv):
        code = cli_main([*home, "--json", *argv])
        out = capsys.readouterr()
        return code, (json.loads(out.out) if code == 0 else out.err)

    assert run("models", "add", "local", str(tiny_folders / "tiny-gpt2"), "--name", "g2")[1]["id"] == "g2"
    assert [r["id"] for r in run("models", "list")[1]] == ["g2"]
    code, shown = run("models", "show", "g2")
    assert code == 0 and shown["n_layers"] == 3 and len(shown["hook_points"]) == 12
    code, err = run("models", "show", "nope")
    assert code == 2 and "Known models: g2" in err
    assert cli_main([*home, "models", "show", "g2"]) == 0
    assert "blocks.2.hook_resid_post" in capsys.readouterr().out
    assert run("models", "delete", "g2")[1] == {"deleted": "g2"} and run("models", "list")[1] == []


def test_hub_model_is_downloaded_once_and_loaded_from_the_cache(store, tiny_folders, monkeypatch):
    """The hub path with the network faked: the token reaches the download only, later loads read the cache."""
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    snapshot = tiny_folders / "tiny-llama"
    calls = []

    def fake_snapshot_download(repo_id, revision=None, token=None, allow_patterns=None, local_files_only=False):
        calls.append({"repo": repo_id, "token": token, "local": local_files_only})
        if local_files_only and len(calls) == 1:
            raise LocalEntryNotFoundError("not cached yet")
        assert "*.safetensors" in allow_patterns and not any("bin" in p for p in allow_patterns)
        return str(snapshot)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    monkeypatch.setattr("mistudio_core.platform.hub.hub_offline_reason", lambda: None)
    m = md.add_hub_model(store, "someone/tiny-llama", token="hf_secret")
    assert m["id"] == "someone--tiny-llama" and m["source"]["repo_id"] == "someone/tiny-llama"
    assert calls[1] == {"repo": "someone/tiny-llama", "token": "hf_secret", "local": False}
    assert "hf_secret" not in (store.path("models", m["id"]) / "manifest.json").read_text()
    loaded = md.load_model(store, m["id"], device="cpu")
    assert calls[-1]["local"] and calls[-1]["token"] is None and loaded.model.config.num_hidden_layers == 3


def test_cache_tells_stores_and_re_added_models_apart(tmp_path, tiny_folders):
    from mistudio_core.platform.store import Store

    a, b = Store(tmp_path / "a"), Store(tmp_path / "b")
    md.add_local_model(a, tiny_folders / "tiny-llama", name="m")
    md.add_local_model(b, tiny_folders / "tiny-gpt2", name="m")
    assert md.load_model(a, "m", device="cpu").model.config.model_type == "llama"
    assert md.load_model(b, "m", device="cpu").model.config.model_type == "gpt2"
    md.delete_model(a, "m")
    md.add_local_model(a, tiny_folders / "tiny-gpt2", name="m")
    assert md.load_model(a, "m", device="cpu").model.config.model_type == "gpt2"
    if not torch.cuda.is_available():
        with pytest.raises(UnsupportedError, match="no CUDA GPU"):
            md.load_model(a, "m", device="cuda")
