"""Hook pickers offer a transcoder's input hook (blocks.L.hook_mlp_in) beside the stored hook points (#27)."""
from types import SimpleNamespace

from mistudio_core.model.hooks import with_transcoder_inputs


def test_mlp_in_is_offered_just_before_each_mlp_out():
    stored = ["blocks.0.hook_resid_pre", "blocks.0.hook_attn_out", "blocks.0.hook_mlp_out", "blocks.0.hook_resid_post",
              "blocks.1.hook_mlp_out"]
    assert with_transcoder_inputs(stored) == [
        "blocks.0.hook_resid_pre", "blocks.0.hook_attn_out", "blocks.0.hook_mlp_in", "blocks.0.hook_mlp_out",
        "blocks.0.hook_resid_post", "blocks.1.hook_mlp_in", "blocks.1.hook_mlp_out"]
    assert with_transcoder_inputs(["blocks.3.hook_resid_pre", "blocks.3.hook_resid_post"]) == [
        "blocks.3.hook_resid_pre", "blocks.3.hook_resid_post"]  # no MLP branch hooks: nothing to add


def test_the_training_tab_lists_mlp_in():
    from pages import training

    manifest = {"hook_points": ["blocks.8.hook_mlp_out", "blocks.8.hook_resid_post"]}
    ctx = SimpleNamespace(store=SimpleNamespace(manifest=lambda kind, mid: manifest))
    update = training.hooks_for(ctx, "some-model")
    assert update["choices"] == ["blocks.8.hook_mlp_in", "blocks.8.hook_mlp_out", "blocks.8.hook_resid_post"]
