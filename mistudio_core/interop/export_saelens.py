"""SAELens bundle: exactly what `sae_lens.SAE.load_from_disk` (and `from_pretrained` on a Hub repo) reads, plus a
model card.

    exports/<id>/README.md                       model card (Hub front matter: library saelens)
    exports/<id>/<hook_name>/cfg.json            SAELens v6 config
    exports/<id>/<hook_name>/sae_weights.safetensors
    exports/<id>/<hook_name>/sparsity.safetensors (when known)

SAELens Hub repos keep one folder per SAE id; we name it after the hook point, as SAELens's own releases do.
"""
from __future__ import annotations

import json
import shutil

from ..platform.store import Store, new_id
from ..sae.evals import source_label
from ..sae.library import training_record

SAE_FILES = ("cfg.json", "sae_weights.safetensors", "sparsity.safetensors")


def model_card(manifest: dict, record: dict, sae_folder_name: str) -> str:
    metrics = manifest.get("metrics") or {}
    lines = [f"- {k}: {v:.4g}" if isinstance(v, float) else f"- {k}: {v}" for k, v in metrics.items()]
    train_cfg = record.get("train_config") or record.get("config") or {}
    return "\n".join([
        "---", "library_name: saelens", "tags:", "- sparse-autoencoder", "- mechanistic-interpretability",
        "- mistudio", "---", "",
        f"# {manifest['name']}", "",
        f"A {manifest['architecture']} sparse autoencoder (d_in {manifest['d_in']}, d_sae {manifest['d_sae']}"
        + (f", k {manifest['k']}" if manifest.get("k") else "") + f") on `{manifest.get('hook_name')}` of "
        f"`{manifest.get('model_id')}`, made with miStudio ({manifest.get('source', 'trained')}).", "",
        "## Load it", "", "```python", "from sae_lens import SAE",
        f'sae = SAE.load_from_disk("{sae_folder_name}")  # or SAE.from_pretrained on this repo', "```", "",
        f"## Metrics ({source_label(manifest.get('metrics_source'))})", "", *(lines or ["- (none recorded)"]), "",
        "Explained variance = 1 − Σ‖x−x̂‖² / Σ‖x−x̄‖²; L0 = mean active latents per token; CE loss recovered = "
        "(CE zero-ablated − CE spliced) / (CE zero-ablated − CE clean).", "",
        "## Training", "", "```json", json.dumps({"dataset_id": manifest.get("dataset_id"),
                                                   "tokens_seen": manifest.get("tokens_seen"), **train_cfg},
                                                  indent=2, default=str), "```", ""])


def export_saelens(store: Store, sae_id: str, name: str | None = None) -> dict:
    """Write an SAELens bundle under exports/; returns its manifest (with `path`)."""
    manifest = store.manifest("saes", sae_id)
    src = store.path("saes", sae_id)
    folder_name = (manifest.get("hook_name") or "sae").replace("/", "_")
    meta = {"format": "saelens", "sae_id": sae_id, "sae_folder": folder_name}
    export_id = new_id(name or f"{manifest['name']}-saelens")
    with store.create("exports", export_id, meta, artifact_id=export_id) as tmp:
        (tmp / folder_name).mkdir()
        for f in SAE_FILES:
            if (src / f).is_file():
                shutil.copy2(src / f, tmp / folder_name / f)
        (tmp / "README.md").write_text(model_card(manifest, training_record(store, sae_id), folder_name))
    return {**store.manifest("exports", export_id), "path": str(store.path("exports", export_id))}
