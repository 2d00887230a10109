"""One feature's page in the Features tab: summary, colour-coded examples, activation histogram, decoder-cosine
neighbours, the logit-effect histogram over the whole vocabulary, top/bottom logits, and its label's score card.

The decoder views need the SAE's weights (and, for logits, its model); when those cannot be loaded (an imported
SAE whose model is not registered) the rest of the page still shows and the status says what is missing.
"""
from __future__ import annotations

from typing import Any

import pandas as pd

from mistudio_core.platform.errors import ValidationError
from mistudio_core.features import render
from mistudio_core.features.decoder import histogram, logit_effects, nearest_features

from . import features_data as data
from .common import guarded, ok, require_writable
from .context import AppContext

N_NEIGHBOURS = 10


def decoder_view(ctx: AppContext, sae_id: str, index: int, res) -> tuple[pd.DataFrame, Any, str]:
    """(neighbours table, logit-effect histogram or None, note on what could not be shown)."""
    cols = ["feature", "cosine", "label"]
    try:  # any failure here (missing or unreadable weights) must not hide the rest of the feature page
        sae = data.sae_only(ctx, sae_id)
    except Exception as err:
        return pd.DataFrame(columns=cols), None, f"Decoder views need the SAE's weights: {err}"
    near = nearest_features(sae.W_dec, index, N_NEIGHBOURS)
    table = pd.DataFrame([[n["index"], round(n["cosine"], 4), res.label(n["index"])] for n in near], columns=cols)
    try:
        loaded, sae, _ = data.model_and_sae(ctx, sae_id)
    except Exception as err:  # e.g. an imported SAE whose model is not registered here
        return table, None, f"Logit effects need the SAE's model: {err}"
    effects = logit_effects(loaded.model, sae.W_dec, index)
    return table, render.logit_histogram(histogram(effects), index), ""


def scores_line(sc: dict, n_vocab: int) -> str:
    """One line on the feature page: input and output score, what it writes, its logit-lens tokens."""
    if not sc["computed"]:
        return f"Input/output scores: {sc['why']}."
    if sc["output_score"] is None:
        return f"Input/output scores: none — {sc['why']}."
    lens = ", ".join(f"`{t!r}`" for t in sc["lens_tokens"][:10])
    share = "—" if sc["input_score"] is None else f"{sc['input_score']:.0%}"
    return (f"**Output score {sc['output_score']:.3g}** (steered at 10× its max activation, its best logit-lens "
            f"token `{sc['output_token']!r}` is next-token rank {sc['output_rank']:,} of {n_vocab:,}, p = "
            f"{sc['output_prob']:.3g}) · **input score {share}** (top examples peaking on a logit-lens token) · "
            f"logit lens: {lens}")


def _summary(f: dict, n_vocab: int = 0) -> str:
    flags = " · **dead**" if f["dead"] else " · **dense**" if f["dense"] else ""
    co = ", ".join(f"#{c['index']} ({c['jaccard']:.2f})" for c in f["cooccurring"][:5])
    hidden = (f"\n\n*{f['n_start_hidden']} top example(s) peaking at a context's start (position 0 or the first "
              "token after BOS) hidden.*" if f.get("n_start_hidden") else "")
    return (f"### Feature {f['index']}{': ' + f['label'] if f['label'] else ''}\nFires on "
            f"**{f['frequency']:.3%}** of tokens ({f['count']:,}) · mean {f['mean_activation']:.3g} · max "
            f"{f['max_activation']:.3g}{flags}" + (f"\n\nCo-fires most with: {co}" if co else "") + hidden
            + (f"\n\n{scores_line(f['scores'], n_vocab)}" if "scores" in f else ""))


@guarded(11)
def open_feature(ctx: AppContext, sae_id: str | None, index: float, skip_start: bool = False) -> tuple:
    """(status, summary, top examples HTML, quantile examples HTML, activation histogram, top logits, bottom
    logits, label, nearest features by decoder cosine, logit-effect histogram, score card HTML)"""
    res, _ = data.results(ctx, sae_id)
    f = res.feature(int(index), skip_start=bool(skip_start))
    scale = f["max_activation"] or 1.0
    logits = [pd.DataFrame([[repr(t)[1:-1], round(v, 4)] for t, v in f[k]], columns=["token", "logit"])
              for k in ("top_logits", "bottom_logits")]
    neighbours, logit_fig, note = decoder_view(ctx, sae_id, f["index"], res)
    entry = (res.labels.get(f["index"]) or res.labels.get(str(f["index"]))) if res.labels else None
    status = ok(f"Feature {f['index']}." + (f" {note}" if note else ""))
    examples = render.examples_html(f["top_examples"], scale, "Top examples (colour = activation; hover a token "
                                    "for its value)")
    return (status, _summary(f, len(res.vocab)), examples, render.quantiles_html(f["quantile_examples"], scale),
            render.feature_histogram(f["histogram"], f["index"]), logits[0], logits[1], f["label"], neighbours,
            logit_fig, render.score_card_html(entry if isinstance(entry, dict) else None))


@guarded(1)
def save_label(ctx: AppContext, sae_id: str | None, index: float, label: str) -> str:
    require_writable(ctx)
    from mistudio_core.labeling.store import LabelStore

    res, _ = data.results(ctx, sae_id)
    i = int(index)
    if not 0 <= i < res.n_features:
        raise ValidationError(f"Feature {i} does not exist; pick 0..{res.n_features - 1}.")
    LabelStore(ctx.store, sae_id).set(i, label.strip(), source="manual")
    return ok(f"Saved label of feature {i}.")  # labels.json changed: the next read rebuilds the table
