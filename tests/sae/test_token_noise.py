"""Token noise (TrainConfig.token_noise_contexts): a seeded share of contexts gets random vocabulary ids before the
forward; position 0 / BOS and the corpus's kept positions are untouched; resume draws the same noise; a noised
activation cache never stands in for a clean one."""
from __future__ import annotations

import pytest
import torch

from mistudio_core.model.activations import ActivationStream
from mistudio_core.platform.errors import ValidationError
from mistudio_core.sae.train_config import TrainConfig
from tiny_models import BOS_ID, random_tokens, tiny_model

MODEL = tiny_model("llama")
HOOK = "blocks.1.hook_resid_post"
TOKENS = random_tokens(12, 8, seed=5)
SMALL = dict(batch_tokens=13, contexts_per_forward=3, buffer_contexts=4, seed=7)


def _seen_tokens(stream: ActivationStream, r: int) -> torch.Tensor:
    """The ids refill r feeds the model (what `_load_segment` runs)."""
    tokens = stream.tokens[stream._contexts(r)].long()
    keep = stream.keep_mask(tokens)
    return stream._noised(tokens, keep, r) if stream.token_noise else tokens


def test_noise_replaces_a_share_of_tokens_but_never_position_zero():
    stream = ActivationStream(MODEL, TOKENS, HOOK, token_noise=(1.0, 0.5), **SMALL)
    clean = stream.tokens[stream._contexts(0)].long()
    noised = _seen_tokens(stream, 0)
    changed = noised != clean
    assert not changed[:, 0].any() and (noised[:, 0] == BOS_ID).all()
    assert 0.2 < changed[:, 1:].float().mean() < 0.6  # ~half the positions drew another id
    assert not torch.isin(noised[changed], torch.tensor([BOS_ID])).any()  # specials are never drawn


def test_noise_changes_the_activations_and_is_reproduced_on_resume():
    clean = next(ActivationStream(MODEL, TOKENS, HOOK, **SMALL))[HOOK]
    noisy = ActivationStream(MODEL, TOKENS, HOOK, token_noise=(1.0, 0.3), **SMALL)
    batches = [next(noisy)[HOOK] for _ in range(4)]
    assert batches[0].shape == clean.shape and not torch.allclose(batches[0], clean)
    resumed = next(ActivationStream(MODEL, TOKENS, HOOK, token_noise=(1.0, 0.3), start_batch=3, **SMALL))[HOOK]
    assert torch.equal(resumed, batches[3])


def test_share_of_contexts_leaves_the_others_clean():
    stream = ActivationStream(MODEL, TOKENS, HOOK, token_noise=(0.25, 1.0), **SMALL)
    rows = torch.cat([(_seen_tokens(stream, r) != stream.tokens[stream._contexts(r)].long()).any(1)
                      for r in range(30)])
    assert 0.1 < rows.float().mean() < 0.45


def test_bad_noise_settings_are_refused_with_the_valid_range():
    with pytest.raises(ValidationError, match="token_noise_contexts must be in"):
        TrainConfig.of(token_noise_contexts=1.5)
    assert TrainConfig().data.token_noise is None
    assert TrainConfig.of(token_noise_contexts=0.3).data.token_noise == (0.3, 0.15)


def test_rank_prior_draws_early_vocabulary_ids_far_more_often_and_resumes_exactly():
    uniform = ActivationStream(MODEL, TOKENS, HOOK, token_noise=(1.0, 1.0), **SMALL)
    ranked = ActivationStream(MODEL, TOKENS, HOOK, token_noise=(1.0, 1.0, 2.0), **SMALL)
    drawn = {name: torch.cat([_seen_tokens(s, r)[:, 1:].reshape(-1) for r in range(40)])
             for name, s in (("uniform", uniform), ("ranked", ranked))}
    first_tenth = int(ranked.noise_pool[len(ranked.noise_pool) // 10])
    share = {name: float((ids < first_tenth).float().mean()) for name, ids in drawn.items()}
    assert share["uniform"] < 0.2 and share["ranked"] > 0.45  # 1/(r+2): ~0.59 of the mass on the first tenth
    batches = [next(ranked)[HOOK] for _ in range(4)]
    resumed = next(ActivationStream(MODEL, TOKENS, HOOK, token_noise=(1.0, 1.0, 2.0), start_batch=3, **SMALL))
    assert torch.equal(resumed[HOOK], batches[3])


def test_rank_offset_joins_the_noise_identity_only_when_set():
    assert TrainConfig.of(token_noise_contexts=0.5, token_noise_rate=0.3).data.token_noise == (0.5, 0.3)
    assert TrainConfig.of(token_noise_contexts=0.5, token_noise_rate=0.3,
                       token_noise_rank_offset=1000).data.token_noise == (0.5, 0.3, 1000)
    for bad in (-1, float("inf"), float("nan")):
        with pytest.raises(ValidationError, match="token_noise_rank_offset must be a finite number >= 0"):
            TrainConfig.of(token_noise_rank_offset=bad)
