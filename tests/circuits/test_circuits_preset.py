"""The `circuits` training preset: the quick recipe at every third layer of the built-in model, in one job."""
from mistudio_core.sae.presets import get_preset


def test_the_circuits_preset_trains_every_third_residual_layer_with_the_quick_recipe():
    p, quick = get_preset("circuits"), get_preset("quick")
    assert p.hooks == tuple(f"blocks.{layer}.hook_resid_post" for layer in (2, 5, 8, 11, 14, 17, 20, 23, 26, 29))
    assert p.hook == p.hooks[0] and p.train == quick.train and p.cache == quick.cache
    assert get_preset("quality").hooks is None, "single-hook presets are unchanged"
