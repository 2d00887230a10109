"""The workshop's materials in miniature: a tiny random Gemma-2 model registered as a local model, a synthetic
Gemma Scope snapshot folder for a real catalog entry (layer 1, width 16k: `params.npz` at the published path), and
a synthetic Neuronpedia explanations file for that SAE (gzipped JSON Lines, one malformed line) in which feature
4242 is the "yelling" feature."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np

from mistudio_core.model.models import add_local_model
from mistudio_core.platform.store import Store
from tiny_models import save_tiny_model

ENTRY = "gemma-scope-2b-pt-res/layer_1/width_16k/average_l0_20"
ENTRY_PATH = "layer_1/width_16k/average_l0_20"
YELLING = 4242
MODEL_ID = "gemma2-tiny"
D_SAE = 16 * 1024


def write_snapshot(root: Path, d_in: int, seed: int = 0) -> Path:
    """A Gemma Scope repo snapshot holding one SAE; its encoder is near the decoder's transpose (as trained SAEs
    are) so features fire on what they write, and decoder rows are unit-norm like Gemma Scope's."""
    g = np.random.default_rng(seed)
    w_dec = g.normal(size=(D_SAE, d_in)).astype(np.float32)
    w_dec /= np.linalg.norm(w_dec, axis=1, keepdims=True)
    folder = root / ENTRY_PATH
    folder.mkdir(parents=True)
    np.savez(folder / "params.npz", W_enc=(0.7 * w_dec.T).copy(), W_dec=w_dec, b_enc=np.zeros(D_SAE, np.float32),
             b_dec=np.zeros(d_in, np.float32), threshold=np.full(D_SAE, 0.05, np.float32))
    return root


def write_explanations(path: Path) -> Path:
    """Neuronpedia's export shape for source `1-gemmascope-res-16k` of gemma-2-2b."""
    texts = {YELLING: "text in ALL CAPS, as if the writer is yelling", 17: "capitalized first letters of names",
             99: "the word 'weather'", 512: "closing parentheses", 2048: "numbers in dates"}
    rows = [{"modelId": "gemma-2-2b", "layer": "1-gemmascope-res-16k", "index": str(i), "description": t,
             "explanationModelName": "gpt-4o-mini", "typeName": "oai_token-act-pair",
             "scores": [{"value": 0.8}]} for i, t in texts.items()]
    lines = [json.dumps(r) for r in rows] + ["{this line is broken"]
    with gzip.open(path, "wt") as f:
        f.write("\n".join(lines) + "\n")
    return path


def make_workshop(root: Path) -> tuple[Path, Path]:
    """(home, data): the model registered in `home`; the snapshot and explanations under `data`."""
    home, data = root / "home", root / "data"
    data.mkdir(parents=True)
    save_tiny_model("gemma2", data / MODEL_ID)
    model = add_local_model(Store(home), data / MODEL_ID, name=MODEL_ID)
    write_snapshot(data / "gemma-scope-2b-pt-res", model["d_model"])
    write_explanations(data / "explanations.jsonl.gz")
    return home, data
