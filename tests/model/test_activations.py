"""ActivationStream / cache_activations / ShardStream: shapes, resumable determinism, which tokens are kept."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from mistudio_core.model.activations import ActivationStream, ShardStream, cache_activations
from mistudio_core.platform.errors import NotFoundError, ValidationError
from mistudio_core.model.hooks import capture
from tiny_models import BOS_ID, PAD_ID, random_tokens, tiny_model

MODEL = tiny_model("llama")
HOOK = "blocks.1.hook_resid_post"
TOKENS = random_tokens(10, 8, seed=5)  # 10 contexts x 7 kept tokens = 70 tokens per epoch
# 4 contexts per refill does not divide 10, so refills straddle epochs; 13 tokens per batch straddle refills.
EXACT = "donot_use_mm_for_euclid_dist"  # the matmul shortcut has ~1e-3 error on equal rows
SMALL = dict(batch_tokens=13, contexts_per_forward=3, buffer_contexts=4, seed=7)


def _take(stream, n):
    return [next(stream) for _ in range(n)]


def _rows_match(got: torch.Tensor, expected: torch.Tensor) -> bool:
    """Same multiset of rows (up to float noise): every row has a partner and the counts agree."""
    if got.shape != expected.shape:
        return False
    return bool((torch.cdist(got, expected, compute_mode=EXACT).min(1).values < 1e-4).all()
                and (torch.cdist(expected, got, compute_mode=EXACT).min(1).values < 1e-4).all())


def test_batches_have_the_requested_shape_and_dtype():
    names = [HOOK, "blocks.0.hook_mlp_out"]
    batch = next(ActivationStream(MODEL, TOKENS, names, **SMALL))
    assert list(batch) == names
    assert all(v.shape == (13, 32) and v.dtype == torch.float32 for v in batch.values())


@pytest.mark.parametrize("b", [1, 5, 6, 11, 17])
def test_start_batch_gives_the_same_batch_as_iterating_from_zero(b):
    reference = _take(ActivationStream(MODEL, TOKENS, HOOK, **SMALL), b + 2)  # 19 batches = 3.5 epochs
    resumed = ActivationStream(MODEL, TOKENS, HOOK, start_batch=b, **SMALL)
    assert resumed.batch_index == b
    for expected in reference[b:]:
        torch.testing.assert_close(next(resumed)[HOOK], expected[HOOK], rtol=0, atol=0)


def test_seed_changes_the_order_but_not_the_data():
    a = torch.cat([x[HOOK] for x in _take(ActivationStream(MODEL, TOKENS, HOOK, **{**SMALL, "batch_tokens": 10,
                                                                                   "buffer_contexts": 10}), 7)])
    b = torch.cat([x[HOOK] for x in _take(ActivationStream(MODEL, TOKENS, HOOK, **{**SMALL, "batch_tokens": 10,
                                                                                   "buffer_contexts": 10,
                                                                                   "seed": 8}), 7)])
    assert not torch.equal(a, b) and _rows_match(a, b)


def test_one_epoch_is_exactly_the_kept_tokens_and_excludes_bos():
    toks = TOKENS.clone()
    toks[3, 4] = BOS_ID  # a BOS in mid-context (packed documents) is skipped too
    stream = ActivationStream(MODEL, toks, HOOK, batch_tokens=23, buffer_contexts=10, seed=1)
    assert stream.tokens_per_epoch == 69
    epoch = torch.cat([x[HOOK] for x in _take(stream, 3)])
    full = capture(MODEL, toks, HOOK)[HOOK]
    keep = torch.ones_like(toks, dtype=torch.bool)
    keep[:, 0] = False
    keep[3, 4] = False
    assert _rows_match(epoch, full[keep])
    # Position-0 rows are far from everything the stream produced.
    assert (torch.cdist(full[:, 0], epoch, compute_mode=EXACT).min(1).values > 1e-3).all()


def test_skip_bos_false_keeps_every_position():
    stream = ActivationStream(MODEL, TOKENS, HOOK, batch_tokens=80, buffer_contexts=10, skip_bos=False)
    assert stream.tokens_per_epoch == 80
    assert _rows_match(next(stream)[HOOK], capture(MODEL, TOKENS, HOOK)[HOOK].reshape(80, -1))


def test_trailing_padding_is_skipped():
    toks = TOKENS.clone()
    toks[0, 5:] = PAD_ID
    stream = ActivationStream(MODEL, toks, HOOK, batch_tokens=10, pad_token_id=PAD_ID)
    assert stream.tokens_per_epoch == 70 - 3


def test_hooks_share_one_forward_and_stay_aligned():
    """resid_post of layer 0 is resid_pre of layer 1: row i of both must come from the same token."""
    stream = ActivationStream(MODEL, TOKENS, ["blocks.0.hook_resid_post", "blocks.1.hook_resid_pre"], **SMALL)
    for batch in _take(stream, 4):
        torch.testing.assert_close(batch["blocks.0.hook_resid_post"], batch["blocks.1.hook_resid_pre"])


def test_accepts_a_tokenized_object_and_its_bos_id():
    toks = TOKENS.clone()
    toks[:, 0] = 9  # a tokenizer whose BOS id is 9
    toks[2, 3] = 9
    tokenized = SimpleNamespace(tokens=toks.int(), config={"bos_token_id": 9}, stats={})
    assert ActivationStream(MODEL, tokenized, HOOK, batch_tokens=8).tokens_per_epoch == 69


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValidationError, match="blocks.0.hook_resid_pre"):
        ActivationStream(MODEL, TOKENS, "blocks.9.hook_resid_post")
    with pytest.raises(ValidationError, match="No tokens left"):
        ActivationStream(MODEL, TOKENS[:, :1], HOOK)
    with pytest.raises(ValidationError, match="grid"):
        ActivationStream(MODEL, TOKENS[0], HOOK)


def test_cache_and_shard_stream_replay_deterministically(tmp_path):
    names = [HOOK, "blocks.0.hook_attn_out"]
    meta = cache_activations(MODEL, TOKENS, names, tmp_path / "cache", n_tokens=50, shard_tokens=16,
                             buffer_contexts=10, seed=3)
    assert meta["shard_sizes"] == [16, 16, 16, 2] and meta["d"] == {HOOK: 32, "blocks.0.hook_attn_out": 32}
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 4
    stream = ShardStream(tmp_path / "cache", batch_tokens=20, seed=1)
    batches = _take(stream, 10)  # 200 tokens = 4 epochs over the 50 cached ones
    assert all(b[HOOK].shape == (20, 32) for b in batches)
    epoch1 = torch.cat([b[HOOK] for b in batches])[:50]
    epoch2 = torch.cat([b[HOOK] for b in batches])[50:100]
    assert _rows_match(epoch1, epoch2) and not torch.equal(epoch1, epoch2)
    resumed = ShardStream(tmp_path / "cache", batch_tokens=20, seed=1, start_batch=7)
    for expected in batches[7:]:
        got = next(resumed)
        for name in names:
            torch.testing.assert_close(got[name], expected[name], rtol=0, atol=0)


def test_shard_stream_refuses_an_unfinished_cache(tmp_path):
    with pytest.raises(NotFoundError, match="cache_activations"):
        ShardStream(tmp_path)
