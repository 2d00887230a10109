"""What the Features tab reads, cached per process: an SAE's results with its table frame, the SAE itself, and
the model its logit views need. Shared by `pages/features.py` (overview, table, prompt, export) and
`pages/features_detail.py` (one feature's page); tests replace `model_and_sae` / `sae_only` with tiny ones.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mistudio_core.platform.errors import ValidationError
from mistudio_core.features.results import FeatureResults, features_dir

from .context import AppContext

_CACHE: dict[tuple[str, str], tuple[tuple, FeatureResults, pd.DataFrame]] = {}
_SAES: dict[tuple[str, str], Any] = {}


def need_sae(sae_id: str | None) -> str:
    if not sae_id:
        raise ValidationError("No SAE selected. Train or import one (Training / SAEs tabs), then pick it here.")
    return sae_id


def results(ctx: AppContext, sae_id: str | None) -> tuple[FeatureResults, pd.DataFrame]:
    """The SAE's results and table frame, cached until `meta.json` (a new extraction) or `labels.json` (labels
    written by the Labeling tab or job) changes."""
    sae_id = need_sae(sae_id)
    files = (features_dir(ctx.store, sae_id) / "meta.json", ctx.store.path("saes", sae_id) / "labels.json")
    mtime = tuple(f.stat().st_mtime if f.is_file() else -1.0 for f in files)
    key = (str(ctx.store.home), sae_id)
    if key not in _CACHE or _CACHE[key][0] != mtime:
        res = FeatureResults.load(ctx.store, sae_id)
        dense_at = res.meta["config"]["dense_threshold"]
        freq = res.frequencies().numpy()
        df = pd.DataFrame({"index": np.arange(res.n_features), "label": [res.label(i) for i in range(res.n_features)],
                           "frequency": freq, "mean_activation": res.means().numpy(),
                           "max_activation": res.t["max"].double().numpy(), "dead": freq == 0,
                           "dense": freq > dense_at, **score_columns(res)})
        _CACHE[key] = (mtime, res, df)
    return _CACHE[key][1], _CACHE[key][2]


def score_columns(res: FeatureResults) -> dict:
    """The table's score columns: input and output score (NaN where none) and the token the output score is
    for (what the feature makes the model write; "" where none)."""
    tok = res.t["output_token"].tolist() if res.has_scores else [-1] * res.n_features
    return {"input_score": res.score_column("input_score").double().numpy(),
            "output_score": res.score_column("output_score").double().numpy(),
            "writes": [res.vocab[t] if t >= 0 else "" for t in tok]}


def sae_only(ctx: AppContext, sae_id: str):
    """The SAE (weights only, no model: enough for decoder cosines); one SAE kept in memory."""
    from mistudio_core.sae.library import load_library_sae

    key = (str(ctx.store.home), sae_id)
    if key not in _SAES:
        _SAES.clear()
        _SAES[key] = load_library_sae(ctx.store, sae_id, device="cpu")
    return _SAES[key]


def model_and_sae(ctx: AppContext, sae_id: str):
    """The SAE's model (cached by `load_model`), the SAE and its hook point."""
    from mistudio_core.features.job import sae_model_and_hook
    from mistudio_core.model.models import load_model

    model_id, hook = sae_model_and_hook(ctx.store, sae_id)
    loaded = load_model(ctx.store, model_id)
    sae = sae_only(ctx, sae_id)
    return loaded, sae.to(loaded.device), hook
