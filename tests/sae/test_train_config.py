"""TrainConfig in four parts (#24): one strict reader for nested records, flat names and records written before
the split; the doors keep speaking flat names in the API's historical order."""
from __future__ import annotations

import pytest

from mistudio_core.platform.errors import ValidationError
from mistudio_core.sae.train_config import FLAT_FIELDS, PART_OF, PARTS, TrainConfig

# A "train" record as the app wrote it before the split (every field at the top), from a job spec of 2026-12-06.
OLD_RECORD = {"architecture": "topk", "d_sae": None, "expansion_factor": 8, "k": 32, "l1_coefficient": 2.0,
              "lr": 0.004, "adam_betas": [0.9, 0.999], "batch_tokens": 4096, "steps": 120, "tokens": None,
              "lr_warmup_steps": 10, "lr_decay_steps": 36, "l1_warmup_steps": 0, "target_l0": None,
              "target_l0_steps": None, "dead_feature_window": None, "aux_k": None, "aux_coefficient": 0.03125,
              "normalize_activations": "expected_average_only_in", "b_dec_init": "mean",
              "batchtopk_threshold_lr": 0.01, "seed": 0, "dtype": "float32", "device": None, "autocast": "off",
              "tf32": False, "metrics_every": 5, "checkpoint_every": 0, "token_noise_contexts": 0.5,
              "token_noise_rate": 0.7, "token_noise_rank_offset": 1000, "distribute_saes": False,
              "matryoshka_prefixes": None, "jumprelu_bandwidth": 0.05, "jumprelu_l0_coefficient": 1.0,
              "jumprelu_threshold_lr_scale": 10.0, "jumprelu_init_threshold": None, "hook_out": None,
              "skip_transcoder": False}


def test_a_record_written_before_the_split_reads_into_the_parts_unchanged():
    cfg = TrainConfig.from_dict(OLD_RECORD)
    assert cfg.flat() == OLD_RECORD
    assert (cfg.sae.k, cfg.optim.lr, cfg.runtime.metrics_every) == (32, 0.004, 5)
    assert cfg.data.token_noise == (0.5, 0.7, 1000)
    assert set(cfg.to_dict()) == set(PARTS) and TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_every_field_lives_in_exactly_one_part_and_the_doors_see_them_all():
    assert sorted(FLAT_FIELDS) == sorted(OLD_RECORD)
    assert len(FLAT_FIELDS) == len(set(FLAT_FIELDS)) and set(PART_OF.values()) == set(PARTS)


def test_unknown_misplaced_and_flat_read_fields_say_what_to_do():
    with pytest.raises(ValidationError, match="'lr_warmup_step' \\(did you mean 'lr_warmup_steps'\\?\\)"):
        TrainConfig.of(lr_warmup_step=3)
    with pytest.raises(ValidationError, match="'k' belong.*sae, not optim"):
        TrainConfig.from_dict({"optim": {"k": 3}})
    with pytest.raises(ValidationError, match="did you mean 'lr'"):
        TrainConfig.from_dict({"optim": {"lrr": 3}})
    with pytest.raises(AttributeError, match="TrainConfig.optim.lr"):
        TrainConfig().lr  # noqa: B018


def test_each_part_checks_its_own_fields_and_the_config_its_cross_part_rules():
    with pytest.raises(ValidationError, match="lr must be > 0"):
        TrainConfig.of(lr=0)
    with pytest.raises(ValidationError, match="target_l0 is for standard and jumprelu"):
        TrainConfig.of(architecture="topk", target_l0=20)
    with pytest.raises(ValidationError, match="autocast bf16 lowers float32"):
        TrainConfig.of(autocast="bf16", dtype="bfloat16")
    assert TrainConfig.of(architecture="standard", target_l0=20, steps=50).l1_adapt_steps == 50


def test_the_form_keeps_the_api_argument_order_it_had_before_the_split():
    from pages.training_form import INPUTS

    first = ["architecture", "expansion_factor", "d_sae", "k", "l1_coefficient", "lr", "batch_tokens", "steps",
             "lr_warmup_steps", "seed", "lr_decay_steps", "target_l0", "cache_mode", "cache_dtype", "cache_tokens",
             "eval_datasets", "autocast", "tf32", "preset", "adam_betas", "tokens", "l1_warmup_steps",
             "target_l0_steps", "dead_feature_window", "aux_k", "aux_coefficient", "normalize_activations",
             "b_dec_init", "batchtopk_threshold_lr", "dtype", "metrics_every", "checkpoint_every",
             "token_noise_contexts", "token_noise_rate", "token_noise_rank_offset", "distribute_saes"]
    assert INPUTS[:len(first)] == first
