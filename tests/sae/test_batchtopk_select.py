"""BatchTopK's selection (architectures/batchtopk.select) picks exactly the pairs the plain top-k over the batch
picks (kernels.select_batchtopk), including with ties (bf16), few positives and shapes the fast path refuses."""
import pytest
import torch

from mistudio_core.sae import kernels
from mistudio_core.sae.architectures.batchtopk import select


def _pairs(sel):
    rows, cols, values = sel
    assert torch.all(rows[1:] >= rows[:-1]), "rows must come out ascending (the kernels' pair lists need it)"
    return rows, cols, values


@pytest.mark.parametrize("shape,k,shift", [((256, 512), 8, -0.3), ((64, 1024), 32, 0.0), ((100, 96), 4, -2.5),
                                           ((32, 100), 5, 0.0)])
def test_the_same_pairs_as_a_top_k_over_the_batch(shape, k, shift):
    pre = torch.randn(*shape, generator=torch.Generator().manual_seed(0)) + shift
    want = _pairs(kernels.select_batchtopk(pre, k))
    got = _pairs(select(pre, k))
    for a, b in zip(want, got):
        assert torch.equal(a, b)


def test_ties_at_the_cut_still_give_k_per_token_on_average():
    pre = (torch.randn(128, 512, generator=torch.Generator().manual_seed(1)) * 4).round() / 4  # many equal values
    rows, cols, values = _pairs(select(pre, 16))
    assert values.numel() == 16 * 128
    chosen = torch.zeros_like(pre, dtype=torch.bool)
    chosen[rows, cols] = True
    assert pre[chosen].min() >= pre[~chosen].max()  # nothing left out is larger than something taken
    assert torch.equal(values, pre[rows, cols])


def test_fewer_positive_values_than_wanted_keeps_all_of_them():
    pre = torch.full((64, 256), -1.0)
    pre[3, 10], pre[40, 200] = 0.5, 2.0
    rows, cols, values = select(pre, 8)
    assert rows.tolist() == [3, 40] and cols.tolist() == [10, 200] and values.tolist() == [0.5, 2.0]
