"""Regenerate `mistudio_core/interop/data/pretrained_saes.json` from SAELens's pretrained registry.

SAELens ships `sae_lens/pretrained_saes.yaml` (releases → Hub repo, per-SAE path, L0, Neuronpedia id) under the MIT
licence. We keep the releases a workshop needs, flatten them to one row per SAE, and add what the YAML does not say
(the model's Hub id, size, gating and width; the SAE's hook point and download size), with the licence and the exact
source version in the file's header. Get the YAML offline, without installing sae-lens:

    pip download --no-deps sae-lens -d /tmp/saelens && unzip -o -q /tmp/saelens/sae_lens-*.whl -d /tmp/saelens/x
    .venv/bin/python scripts/gen_catalog.py /tmp/saelens/x            # the unpacked wheel (finds the YAML + LICENSE)

Never commit the wheel. Embedding SAEs (`embedding/width_4k/...`) are left out: they read the token embeddings,
which no hook point of ours names.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from mistudio_core.interop.importers import published_width  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "mistudio_core" / "interop" / "data" / "pretrained_saes.json"

# What the YAML does not say about the models (from each model's config.json / model card on the Hub).
MODELS = {
    "gemma-2-2b": {"hf_repo": "google/gemma-2-2b", "n_params": 2_614_341_888, "d_model": 2304, "n_layers": 26,
                   "gated": True, "note": "Gemma licence: accept its terms on huggingface.co, then use a token"},
    "gemma-2-9b": {"hf_repo": "google/gemma-2-9b", "n_params": 9_241_705_984, "d_model": 3584, "n_layers": 42,
                   "gated": True, "note": "Gemma licence: accept its terms on huggingface.co, then use a token"},
    "gpt2-small": {"hf_repo": "openai-community/gpt2", "n_params": 124_439_808, "d_model": 768, "n_layers": 12,
                   "gated": False, "note": "trained on TransformerLens's processed GPT-2 (LayerNorm folded, "
                                           "writing weights centred): on the plain Hub model expect lower "
                                           "reconstruction quality"},
}
# release -> (which layers to keep (None = all), hook site, file format)
RELEASES = {
    "gemma-scope-2b-pt-res": (None, "hook_resid_post", "gemma_scope"),
    "gemma-scope-9b-pt-res": ({9, 20, 31}, "hook_resid_post", "gemma_scope"),
    "gpt2-small-res-jb": (None, "hook_resid_pre", "saelens"),
}
_GEMMA = re.compile(r"layer_(\d+)/width_(\d+)([km]?)/average_l0_(\d+)")
_HOOK = re.compile(r"blocks\.(\d+)\.hook_(\w+)")


def _row(release: str, repo_id: str, model: str, sae: dict, site: str, fmt: str) -> dict | None:
    path = sae["path"]
    d_in = MODELS[model]["d_model"]
    if fmt == "gemma_scope":
        m = _GEMMA.fullmatch(path)
        if not m:
            return None  # embedding SAEs
        layer, width = int(m.group(1)), published_width(int(m.group(2)), m.group(3))
        l0, files = int(m.group(4)), ["params.npz"]
    else:
        m = _HOOK.fullmatch(path)
        layer, width, l0, files = int(m.group(1)), 24576, sae.get("l0"), ["cfg.json", "sae_weights.safetensors"]
    # float32 W_enc + W_dec + b_enc (+ threshold for JumpReLU) + b_dec: what the download weighs.
    n_vectors = 3 if fmt == "gemma_scope" else 2
    size = 4 * (2 * d_in * width + n_vectors * width + d_in)
    return {"id": f"{release}/{path}", "release": release, "repo_id": repo_id, "path": path, "files": files,
            "format": fmt, "model": model, "layer": layer, "hook_name": f"blocks.{layer}.{site}", "d_in": d_in,
            "width": width, "l0": l0, "architecture": "jumprelu" if fmt == "gemma_scope" else "standard",
            "download_bytes": size, "neuronpedia": sae.get("neuronpedia"), "canonical": False}


def build(registry: dict, source: dict) -> dict:
    rows = []
    for release, (layers, site, fmt) in RELEASES.items():
        rel = registry[release]
        for sae in rel["saes"]:
            row = _row(release, rel["repo_id"], rel["model"], sae, site, fmt)
            if row and (layers is None or row["layer"] in layers):
                rows.append(row)
    by_path = {(r["repo_id"], r["path"]): r for r in rows}
    # The "-canonical" releases name the one SAE per layer/width that Neuronpedia shows, with its Neuronpedia id.
    for name, rel in registry.items():
        if name.endswith("-canonical") and name.removesuffix("-canonical") in RELEASES:
            for sae in rel["saes"]:
                row = by_path.get((rel["repo_id"], sae["path"]))
                if row:
                    row.update(canonical=True, neuronpedia=sae.get("neuronpedia") or row["neuronpedia"],
                               alias=f"{name}/{sae['id']}")
    return {"about": "Pretrained SAEs miStudio can import: a subset of SAELens's pretrained_saes.yaml, flattened, "
                     "with model sizes, hook points and download sizes added. Regenerate with "
                     "scripts/gen_catalog.py.", "source": source, "models": MODELS, "saes": rows}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("wheel_dir", type=Path, help="an unpacked sae-lens wheel (holds sae_lens/pretrained_saes.yaml)")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    yaml_path = args.wheel_dir / "sae_lens" / "pretrained_saes.yaml"
    dist = next(args.wheel_dir.glob("sae_lens-*.dist-info"), None)
    licence = next(dist.rglob("LICENSE*"), None) if dist else None
    if not yaml_path.is_file() or licence is None:
        sys.exit(f"{args.wheel_dir} is not an unpacked sae-lens wheel (need sae_lens/pretrained_saes.yaml and the "
                 "dist-info LICENSE).")
    source = {"package": "sae-lens", "version": dist.name.removeprefix("sae_lens-").removesuffix(".dist-info"),
              "file": "sae_lens/pretrained_saes.yaml", "licence": licence.read_text()}
    data = build(yaml.safe_load(yaml_path.read_text()), source)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    rows = data.pop("saes")
    head = json.dumps(data, indent=1)[:-2]  # one SAE per line keeps regenerated diffs readable
    body = ",\n".join("  " + json.dumps(r) for r in rows)
    args.out.write_text(f'{head},\n "saes": [\n{body}\n ]\n}}\n')
    print(f"wrote {len(rows)} SAEs to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
