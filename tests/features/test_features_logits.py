"""Decoder logits (each feature's top and bottom vocabulary entries) with the product in bf16: the bf16 pass only
chooses candidates, their fp32 logits are recomputed, so the lists and values match the all-fp32 computation."""
from __future__ import annotations

import torch

from mistudio_core.features.logits import decoder_logits


class _Unembedding(torch.nn.Module):
    """The two things decoder_logits reads of a model: its output embedding (no final norm here)."""

    def __init__(self, vocab: int, d_model: int):
        super().__init__()
        self.lm_head = torch.nn.Linear(d_model, vocab, bias=False)

    def get_output_embeddings(self):
        return self.lm_head


def test_bf16_search_gives_the_fp32_lists_with_fp32_values():
    torch.manual_seed(0)
    model = _Unembedding(vocab=8192, d_model=96)
    W_dec = torch.randn(700, 96)
    exact = decoder_logits(model, W_dec, n=10, chunk=256)
    fast = decoder_logits(model, W_dec, n=10, chunk=256, search_dtype="bfloat16")
    for ids_exact, vals_exact, ids_fast, vals_fast in ((exact[0], exact[1], fast[0], fast[1]),
                                                       (exact[2], exact[3], fast[2], fast[3])):
        same = [set(a.tolist()) == set(b.tolist()) for a, b in zip(ids_exact, ids_fast)]
        assert sum(same) >= 0.99 * len(same)
        assert torch.allclose(vals_fast, vals_exact, atol=1e-4)  # fp32 values, not bf16-rounded ones
        # every value is the fp32 logit of the id beside it
        recomputed = (W_dec[:, None, :] * model.lm_head.weight[ids_fast]).sum(-1)
        assert torch.allclose(vals_fast, recomputed, atol=1e-4)
    assert (fast[1][:, :-1] >= fast[1][:, 1:]).all() and (fast[3][:, :-1] <= fast[3][:, 1:]).all()  # sorted


def test_float32_or_unset_search_is_the_plain_product():
    torch.manual_seed(1)
    model = _Unembedding(vocab=1024, d_model=32)
    W_dec = torch.randn(50, 32)
    a = decoder_logits(model, W_dec, n=5)
    b = decoder_logits(model, W_dec, n=5, search_dtype="float32")
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    logits = W_dec @ model.lm_head.weight.T
    assert torch.equal(a[0], logits.topk(5, dim=1).indices)


def test_bf16_search_handles_directions_that_push_every_token_one_way():
    """The int16 ranking needs enough logits of each sign; a direction with none falls back to float ranking."""
    torch.manual_seed(2)
    model = _Unembedding(vocab=4096, d_model=64)
    with torch.no_grad():
        model.lm_head.weight.abs_()
    W_dec = torch.randn(40, 64)
    W_dec[0], W_dec[1] = W_dec[0].abs(), -W_dec[1].abs()  # every logit positive / every logit negative
    exact = decoder_logits(model, W_dec, n=10)
    fast = decoder_logits(model, W_dec, n=10, search_dtype="bfloat16")
    for row in (0, 1):
        for which in (0, 2):
            assert set(fast[which][row].tolist()) == set(exact[which][row].tolist())
        assert torch.allclose(fast[1][row], exact[1][row], atol=1e-4)
        assert torch.allclose(fast[3][row], exact[3][row], atol=1e-4)
