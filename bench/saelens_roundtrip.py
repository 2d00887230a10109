"""Interop against the real `sae-lens` package, both ways; run it with the side venv's Python:

    bash scripts/interop_env.sh && .venv-interop/bin/python bench/saelens_roundtrip.py [--json]

1. miStudio → SAELens: miStudio saves standard, topk and batchtopk (→ jumprelu) SAEs, trained with activation
   normalisation (so the scale must be folded into the saved weights) and with model/hook metadata; SAELens's
   `SAE.load_from_disk` loads each, must name the same architecture (and k), keep the hook name, encode and decode
   the same activations as miStudio, and save them back in a form miStudio loads to the same outputs.
2. SAELens → miStudio: SAELens builds standard, topk and jumprelu SAEs, and trains a standard and a TopK SAE with
   its own `SAETrainer` for a few steps (its TopK default rescales codes by decoder norms); `save_model` writes
   them and miStudio's `load_sae` must give the same codes and reconstructions.

Prints a table (or, with --json, one JSON object per case) with max |Δ codes|, max |Δ x̂| and the checks;
tests/sae/test_saelens_compat.py and tests/sae/test_sae_saelens_compat.py run this in CI and assert on every row.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from mistudio_core.sae.config import SAEConfig  # noqa: E402
from mistudio_core.sae.io import load_sae, save_sae  # noqa: E402
from mistudio_core.sae.model import SAE  # noqa: E402

D_IN, D_SAE, K = 64, 256, 8
META = dict(model_name="smollm2-135m-instruct", hook_name="blocks.8.hook_resid_post", context_size=128)


def ours(arch: str) -> SAE:
    sae = SAE(SAEConfig(arch, D_IN, D_SAE, k=K if arch != "standard" else None, metadata=META,
                        normalize_activations="expected_average_only_in"), seed=0)
    with torch.no_grad():
        sae.b_enc.normal_(0, 0.1)
        sae.b_dec.normal_(0, 0.1)
        sae.norm_scale.fill_(0.37)  # a training-time input scale: must be folded into what SAELens reads
        if sae.threshold is not None:
            sae.threshold.fill_(0.05)
    return sae


def theirs(arch: str):
    from sae_lens import SAE as LensSAE
    from sae_lens.saes.jumprelu_sae import JumpReLUSAEConfig
    from sae_lens.saes.standard_sae import StandardSAEConfig
    from sae_lens.saes.topk_sae import TopKSAEConfig

    cfg_cls = {"standard": StandardSAEConfig, "topk": TopKSAEConfig, "jumprelu": JumpReLUSAEConfig}[arch]
    sae = LensSAE.from_dict(cfg_cls(d_in=D_IN, d_sae=D_SAE, **({"k": K} if arch == "topk" else {})).to_dict())
    with torch.no_grad():
        for p in sae.parameters():
            p.normal_(0, 0.2)
        if arch == "jumprelu":
            sae.threshold.fill_(0.05)
    return sae


def trained_by_saelens(arch: str, x: torch.Tensor):
    """A small SAE trained by SAELens's own SAETrainer (its defaults), then turned into an inference SAE."""
    os.environ.setdefault("TQDM_DISABLE", "1")
    from sae_lens import SAETrainer
    from sae_lens.config import SAETrainerConfig
    from sae_lens.saes.standard_sae import StandardTrainingSAE, StandardTrainingSAEConfig
    from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig

    torch.manual_seed(0)
    if arch == "topk":
        sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=D_IN, d_sae=D_SAE, k=K))
    else:
        sae = StandardTrainingSAE(StandardTrainingSAEConfig(d_in=D_IN, d_sae=D_SAE, l1_coefficient=0.5))
    cfg = SAETrainerConfig(total_training_samples=8 * 256, train_batch_size_samples=256, lr=1e-3, lr_end=1e-3)
    SAETrainer(cfg, sae, data_provider=(x[i % 2 * 256:(i % 2 + 1) * 256] for i in range(10**6))).fit()
    return sae


def _row(direction, arch, mine, lens, x, saved_as, **checks) -> dict:
    with torch.no_grad():
        a, b = mine.encode(x), lens.encode(x)
        b = b.to_dense() if b.is_sparse else b
        d_codes, d_recon = float((a - b).abs().max()), float((mine.decode(a) - lens.decode(b)).abs().max())
        same = bool(((a > 0) == (b > 0)).all())
    return dict(direction=direction, arch=arch, saved_as=saved_as, loaded_as=type(lens).__name__,
                max_d_codes=d_codes, max_d_recon=d_recon, same_active=same, active=int((a > 0).sum()), **checks)


def run(tmp: Path) -> list[dict]:
    from sae_lens import SAE as LensSAE

    torch.manual_seed(0)
    x = torch.randn(512, D_IN) * 3 + 1
    rows = []
    for arch in ("standard", "topk", "batchtopk"):
        sae = ours(arch)
        folder = save_sae(sae, tmp / f"ours-{arch}")
        lens = LensSAE.load_from_disk(str(folder), device="cpu")
        saved = "jumprelu" if arch == "batchtopk" else arch
        lens.save_model(str(tmp / f"back-{arch}"))
        back = load_sae(tmp / f"back-{arch}")
        with torch.no_grad():
            back_ok = float((back(x) - sae(x)).abs().max()) < 1e-4
        rows.append(_row("miStudio → SAELens", arch, sae, lens, x, saved, arch_ok=lens.cfg.architecture() == saved,
                         k_ok=getattr(lens.cfg, "k", K) == K, hook_ok=lens.cfg.metadata.hook_name == META["hook_name"],
                         back_ok=back_ok))
    for arch in ("standard", "topk", "jumprelu", "trained standard", "trained topk"):
        lens = trained_by_saelens(arch.split()[1], x) if arch.startswith("trained") else theirs(arch)
        lens.save_model(str(tmp / f"theirs-{arch}"))
        mine = load_sae(tmp / f"theirs-{arch}")
        saved = json.loads((tmp / f"theirs-{arch}" / "cfg.json").read_text()).get("architecture")
        rows.append(_row("SAELens → miStudio", arch, mine, lens, x, saved, arch_ok=mine.cfg.architecture == saved))
    return rows


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        rows = run(Path(tmp))
    if "--json" in sys.argv:
        for r in rows:
            print(json.dumps(r))
        return
    print(f"{'direction':<20} {'architecture':<18} {'saved as':<9} {'max |Δ codes|':>13} {'max |Δ x̂|':>10} "
          f"{'same active':>11}  checks")
    for r in rows:
        checks = " ".join(f"{k[:-3]}={'ok' if v else 'FAIL'}" for k, v in r.items() if k.endswith("_ok"))
        print(f"{r['direction']:<20} {r['arch']:<18} {r['saved_as']:<9} {r['max_d_codes']:>13.2e} "
              f"{r['max_d_recon']:>10.2e} {str(r['same_active']):>11}  {checks}")


if __name__ == "__main__":
    main()
