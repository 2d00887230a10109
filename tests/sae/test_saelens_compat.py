"""SAELens itself (the real sae-lens 6.54.12, from .venv-interop) loads the SAEs miStudio saves and reads them as
miStudio does: same architecture name (a TopK SAE read as a plain ReLU SAE would be a silent wrong answer), same k,
same hook, same codes and reconstructions with the activation normalisation folded in, and what SAELens saves back
loads into miStudio unchanged."""
from __future__ import annotations

import pytest

from tests.saelens_interop import roundtrip_rows


@pytest.mark.parametrize("arch", ["standard", "topk", "batchtopk"])
def test_saelens_loads_what_we_save(arch):
    rows = [r for r in roundtrip_rows("miStudio → SAELens") if r["arch"] == arch]
    assert len(rows) == 1, rows
    r = rows[0]
    assert r["saved_as"] == ("jumprelu" if arch == "batchtopk" else arch), r
    assert r["arch_ok"] and r["k_ok"] and r["hook_ok"], r
    assert r["active"] > 0 and r["same_active"], r
    assert r["max_d_codes"] < 1e-4 and r["max_d_recon"] < 1e-4, r
    assert r["back_ok"], f"SAELens's re-save of our {arch} SAE no longer matches: {r}"
