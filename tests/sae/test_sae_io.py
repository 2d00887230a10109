"""SAELens v6 format: round trip, exact cfg fields, pre-v6 configs, batchtopk → jumprelu, clear errors, library."""
import json

import pytest
import torch
from safetensors.torch import load_file

from mistudio_core.platform.errors import NotFoundError, ValidationError
from mistudio_core.sae.config import SAEConfig
from mistudio_core.sae.io import load_sae, save_sae
from mistudio_core.sae.library import load_library_sae, register_sae, training_record
from mistudio_core.sae.model import SAE
from tests.sae_synthetic import one_thread  # noqa: F401

pytestmark = pytest.mark.usefixtures("one_thread")

META = dict(model_name="smollm2-135m-instruct", hook_name="blocks.8.hook_resid_post", context_size=128)


def _sae(arch="topk", **kw):
    sae = SAE(SAEConfig(arch, 16, 64, k=4 if arch in ("topk", "batchtopk") else None, metadata=dict(META), **kw),
              seed=0)
    with torch.no_grad():
        sae.b_dec.normal_()
        sae.b_enc.normal_(std=0.1)
    return sae


def test_topk_round_trip_and_v6_fields(tmp_path):
    sae = _sae("topk", normalize_activations="expected_average_only_in")
    sae.norm_scale.fill_(2.5)
    save_sae(sae, tmp_path, sparsity=torch.full((64,), 0.01))
    cfg = json.loads((tmp_path / "cfg.json").read_text())
    assert cfg["architecture"] == "topk" and cfg["k"] == 4 and cfg["rescale_acts_by_decoder_norm"] is False
    assert cfg["normalize_activations"] == "none" and cfg["reshape_activations"] == "none"
    assert cfg["metadata"]["hook_name"] == META["hook_name"] and cfg["metadata"]["sae_lens_version"].startswith("6")
    w = load_file(str(tmp_path / "sae_weights.safetensors"))
    assert w["W_enc"].shape == (16, 64) and w["W_dec"].shape == (64, 16) and "threshold" not in w
    assert torch.allclose(load_file(str(tmp_path / "sparsity.safetensors"))["sparsity"], torch.tensor(-2.0))
    back = load_sae(tmp_path)
    x = torch.randn(8, 16) * 3
    torch.testing.assert_close(back(x), sae(x), atol=1e-5, rtol=1e-5)


def test_batchtopk_saves_as_jumprelu_with_threshold(tmp_path):
    sae = _sae("batchtopk")
    sae.threshold.fill_(0.2)
    save_sae(sae, tmp_path)
    assert json.loads((tmp_path / "cfg.json").read_text())["architecture"] == "jumprelu"
    back = load_sae(tmp_path)
    assert back.cfg.architecture == "jumprelu" and torch.allclose(back.threshold, torch.tensor(0.2))
    x = torch.randn(8, 16)
    torch.testing.assert_close(back.encode(x), sae.encode(x))


def test_pre_v6_flat_topk_config_loads(tmp_path):
    sae = _sae("topk")
    save_sae(sae, tmp_path)
    flat = dict(d_in=16, d_sae=64, dtype="torch.float32", model_name="gpt2", hook_point="blocks.8.hook_resid_pre",
                activation_fn_str="topk", activation_fn_kwargs={"k": 4}, normalize_activations=False,
                apply_b_dec_to_input=True, context_size=128)
    (tmp_path / "cfg.json").write_text(json.dumps(flat))
    back = load_sae(tmp_path)
    assert back.cfg.architecture == "topk" and back.cfg.k == 4
    assert back.cfg.metadata["hook_name"] == "blocks.8.hook_resid_pre" and back.cfg.metadata["model_name"] == "gpt2"
    flat.pop("activation_fn_str"), flat.pop("activation_fn_kwargs")
    (tmp_path / "cfg.json").write_text(json.dumps(flat))
    assert load_sae(tmp_path).cfg.architecture == "standard"


def test_shape_mismatch_names_both_shapes_and_the_file(tmp_path):
    save_sae(_sae("standard"), tmp_path)
    cfg = json.loads((tmp_path / "cfg.json").read_text())
    cfg["d_sae"] = 32
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    with pytest.raises(ValidationError) as err:
        load_sae(tmp_path)
    msg = str(err.value)
    assert "(64, 16)" in msg and "(32, 16)" in msg and "sae_weights.safetensors" in msg
    with pytest.raises(NotFoundError, match="cfg.json"):
        load_sae(tmp_path / "nowhere")


def test_library_register_and_load(store):
    sae = _sae("topk")
    sae.feature_frequency = torch.rand(64)
    man = register_sae(store, sae, "my topk", provenance=dict(model_id="m", hook_name=META["hook_name"],
                                                             dataset_id="sotu", tokens_seen=1000),
                       metrics={"explained_variance": {"value": 0.9, "formula": "…"}}, record={"train": {"lr": 1}})
    assert man["architecture"] == "topk" and man["metrics"]["explained_variance"] == 0.9
    assert man["dataset_id"] == "sotu" and man["source"] == "trained"
    folder = store.path("saes", man["id"])
    assert {"cfg.json", "sae_weights.safetensors", "sparsity.safetensors", "training_record.json"} <= \
        {p.name for p in folder.iterdir()}
    assert training_record(store, man["id"])["provenance"]["tokens_seen"] == 1000
    x = torch.randn(4, 16)
    torch.testing.assert_close(load_library_sae(store, man["id"])(x), sae(x), atol=1e-5, rtol=1e-5)
