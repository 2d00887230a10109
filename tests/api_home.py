"""A small but complete data directory for whole-app API tests: one of every artifact the endpoints take an id of.

`build_home(root)` makes (in well under a minute on 2 cores): a tiny Llama registered as a local model, a text
dataset tokenized for it, a TopK SAE on its `blocks.1.hook_resid_post` with extracted features, a steering
session and prompt set, a SAELens export bundle, and a cancelled training job. `Ids` names them, plus the files a
caller can upload or point a path parameter at (inside `data/`, an allowed root).
"""
from __future__ import annotations

import hashlib
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from tiny_models import save_tiny_model

TEXT = ("Fellow citizens, the state of the union is strong, and the people are its strength. "
        "We shall build roads, schools and ports, and keep the peace.\n") * 40
HOOK = "blocks.1.hook_resid_post"


@dataclass
class Ids:
    home: Path
    data: Path
    model: str
    dataset: str
    sae: str
    session: str
    prompt_set: str
    export: str
    job: str
    text_file: Path
    template_file: Path
    sae_archive: Path
    sae_folder: Path


def build_home(root: Path) -> Ids:
    from mistudio_core.data import datasets as ds
    from mistudio_core.features.extract import ExtractConfig
    from mistudio_core.features.job import run_extraction
    from mistudio_core.interop.job import run_export
    from mistudio_core.jobs import JobRegistry
    from mistudio_core.model.models import add_local_model
    from mistudio_core.sae.config import SAEConfig
    from mistudio_core.sae.io import save_sae
    from mistudio_core.sae.library import register_sae
    from mistudio_core.sae.model import SAE
    from mistudio_core.steering.sessions import save_prompt_set, save_session
    from mistudio_core.platform.store import Store
    from mistudio_core.data.tokenize import TokenizeConfig, tokenize_dataset

    home, data = root / "home", root / "data"
    data.mkdir(parents=True)
    store = Store(home)
    (data / "speech.txt").write_text(TEXT)
    save_tiny_model("llama", data / "tiny-llama")
    model = add_local_model(store, data / "tiny-llama", name="tiny llama")["id"]
    dataset = ds.add_local(store, data / "speech.txt", name="speech")["id"]
    tokenize_dataset(store, dataset, model, TokenizeConfig(context_size=16))
    d_in = int(store.manifest("models", model)["d_model"])
    torch.manual_seed(0)
    sae = SAE(SAEConfig("topk", d_in, 64, k=4, metadata={"hook_name": HOOK, "model_name": model}))
    with torch.no_grad():
        for p in sae.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    sae_id = register_sae(store, sae, "tiny sae", {"model_id": model, "hook_name": HOOK, "dataset_id": dataset,
                                                   "source": "trained"})["id"]
    run_extraction(store, ExtractConfig(sae_id=sae_id, dataset_id=dataset, n_tokens=600, top_k=5,
                                        cooc_features=8, batch_contexts=8))
    session = save_session(store, "demo session", {
        "sae_id": sae_id, "prompt": "The state of the union",
        "steering": {"features": [{"index": 1, "strength": 4.0}], "method": "additive"},
        "sampling": {"max_new_tokens": 4, "temperature": 0.0}, "outputs": {"baseline": "a", "steered": "b"}})["id"]
    prompt_set = save_prompt_set(store, "demo prompts", ["The state of", "Our people"])["id"]
    export = run_export(store, {"format": "saelens", "sae_id": sae_id, "name": "tiny-bundle"})
    export_id = export.get("export_id") or export.get("id") or store.list("exports")[-1]["id"]
    jobs = JobRegistry(store)
    job = jobs.submit("extract", {"sae_id": sae_id, "dataset_id": dataset, "n_tokens": 100}, name="old")
    jobs.cancel(job)
    template = data / "template.json"
    template.write_text(json.dumps({"name": "mine", "train": {"architecture": "topk", "k": 8, "steps": 10}}))
    folder = data / "sae-folder"
    save_sae(sae, folder)
    archive = data / "sae.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in folder.iterdir():
            zf.write(f, f"sae/{f.name}")
    return Ids(home, data, model, dataset, sae_id, session, prompt_set, export_id, job, data / "speech.txt",
               template, archive, folder)


def snapshot(home: Path) -> dict[str, str]:
    """Every file and folder under `home` with a hash of its bytes (folders: 'dir'), to prove nothing changed."""
    out = {}
    for root, dirs, files in os.walk(home):
        for d in dirs:
            out[os.path.relpath(os.path.join(root, d), home)] = "dir"
        for f in files:
            p = os.path.join(root, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, home)] = hashlib.sha256(fh.read()).hexdigest()
    return out
