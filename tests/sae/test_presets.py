"""Presets shared by the Training tab and `train --preset`: valid configs, tuned at the tutorial's hook, short runs
that still see dead latents, and (slow) the quick preset end to end on the built-in model through the CLI."""
import json
import time

import pytest

from mistudio_core.platform.errors import NotFoundError, ValidationError
from mistudio_core.sae.train_config import TrainConfig
from mistudio_core.sae.presets import BUILTIN_HOOK, PRESETS, get_preset
from mistudio_core.sae.train_spec import resolve


def _config(name: str, **given) -> TrainConfig:
    return TrainConfig.from_dict(resolve(name, **given)["train"])


def test_every_preset_is_a_valid_train_config_with_cache_options():
    for name, p in PRESETS.items():
        cfg = _config(name)
        assert cfg.optim.total_steps > 0 and resolve(name)["cache"]["mode"] in ("off", "use", "build")
    assert get_preset("quality").hook == BUILTIN_HOOK and _config("quality").sae.k == 32


def test_quick_and_quality_replay_their_cache_and_report_dead_latents():
    for name in ("quick", "quality"):
        p = get_preset(name)
        cfg = _config(name)
        tokens = cfg.optim.total_steps * cfg.optim.batch_tokens
        assert tokens / p.cache["tokens"] >= 3, "several epochs over the cache"
        assert cfg.optim.dead_window < tokens, "the dead window fits in the run, so AuxK acts"


def test_overrides_win_and_unknown_names_are_refused():
    assert _config("quick", steps=70, lr=None).optim.steps == 70
    with pytest.raises(ValidationError, match="quick"):
        get_preset("fastest")
    with pytest.raises(NotFoundError, match="quick"):
        resolve("fastest")


@pytest.mark.slow
@pytest.mark.integration
def test_quick_preset_end_to_end_on_the_builtin_model(real_store, capsys):
    from mistudio_core.cli import main

    t0 = time.perf_counter()
    assert main(["--home", str(real_store.home), "--json", "train", "--preset", "quick", "--name", "quick-test"]) == 0
    out = json.loads(capsys.readouterr().out)
    (sae,) = out["saes"]
    assert sae["metrics"]["explained_variance"] > 0.6 and sae["metrics"]["ce_loss_recovered"] > 0.8
    print(f"quick preset: {time.perf_counter() - t0:.0f} s wall (this machine, as loaded as it is)")
