"""Features tab: extract features of an SAE (as a background job), browse the feature table, open one feature
(highlighted examples, histogram, logits, label), see which features fire on a prompt, export.

The table of 16k+ features is kept as a pandas frame per SAE (rebuilt when the results on disk change), and only
one page of it is sent to the browser, so sorting, filtering and paging stay fast.
"""
from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from mistudio_core.spec import build as build_spec
from mistudio_core.platform.errors import ValidationError
from mistudio_core.features import render

from . import features_data as data
from .common import choices, guarded, ok, pick, require_writable
from .context import AppContext
from .features_detail import open_feature, save_label  # noqa: F401  (one feature's page; re-exported)

SORTS = {"frequency": "frequency", "max activation": "max_activation", "mean activation": "mean_activation",
         "output score": "output_score", "input score": "input_score", "index": "index"}
SHOW = ("all", "alive", "dead", "dense", "labelled")
_need_sae, results = data.need_sae, data.results  # the names other modules and tests know


def refresh(ctx: AppContext, sae_id: str | None, dataset_id: str | None) -> tuple[Any, Any]:
    """SAE choices, and the datasets tokenized for the chosen SAE's model."""
    saes = ctx.store.list("saes")
    sae_items = choices(saes)
    sae_id = pick(sae_items, sae_id)
    model_id = next((m.get("model_id") for m in saes if m["id"] == sae_id), None)
    ds = [m for m in ctx.store.list("datasets") if model_id in (m.get("tokenizations") or [])]
    ds_items = choices(ds)
    return gr.update(choices=sae_items, value=sae_id), gr.update(choices=ds_items, value=pick(ds_items, dataset_id))


@guarded(2)
def start_extraction(ctx: AppContext, sae_id: str | None, dataset_id: str | None, n_tokens: float, top_k: float,
                     threshold: float, filters: list[str]) -> tuple[str, str | None]:
    """Submit an "extract" job; returns (status, job id)."""
    require_writable(ctx)
    if not dataset_id:
        raise ValidationError("No dataset selected. Tokenize one for this SAE's model in the Datasets tab.")
    spec = build_spec("extract", store=ctx.store, sae_id=_need_sae(sae_id), dataset_id=dataset_id,
                      n_tokens=int(n_tokens or 0), top_k=int(top_k or 0), threshold=float(threshold or 0),
                      filters=list(filters or []))  # checks the SAE and the dataset's tokenization now
    if ctx.jobs is None:
        raise ValidationError("The job runner is not running in this app; use the CLI: python -m mistudio_core "
                              f"extract run --sae {spec['sae_id']} --dataset {dataset_id}")
    job_id = ctx.jobs.submit("extract", spec, name=f"extract {spec['sae_id']}")
    return ok(f"Extraction job `{job_id}` queued."), job_id


def job_line(record: dict) -> str:
    p = record.get("progress") or {}
    parts = [f"Job `{record['id']}`: **{record['status']}**"]
    if p.get("fraction") is not None:
        parts.append(f"{p['fraction']:.0%} ({p.get('step', 0):,} of {p.get('total') or 0:,} tokens)")
    if p.get("rate"):
        parts.append(f"{p['rate']:,.0f} tokens/s")
    if p.get("eta_s") is not None and record["status"] == "running":
        parts.append(f"ETA {p['eta_s']:,.0f} s")
    if record.get("error"):
        parts.append(f"— {record['error']}")
    return " · ".join(parts)


def watch_job(ctx: AppContext, job_id: str | None, poll_s: float = 1.0):
    """Yield a status line until the job ends (this only watches; the runner does the work)."""
    if not job_id or ctx.jobs is None:
        return
    while True:
        record = ctx.jobs.get(job_id)
        yield job_line(record)
        if record["status"] not in ("queued", "running"):
            return
        time.sleep(poll_s)


def latest_job(ctx: AppContext, sae_id: str | None) -> tuple[str, str | None]:
    """The newest extraction job of this SAE (status line, id), so a reloaded page re-attaches to it."""
    if ctx.jobs is None or not sae_id:
        return "", None
    jobs = [j for j in ctx.jobs.list(kind="extract") if (j.get("spec") or {}).get("sae_id") == sae_id]
    if not jobs:
        return "", None
    newest = max(jobs, key=lambda j: j.get("created") or 0)
    return job_line(newest), newest["id"]


@guarded(5)
def overview(ctx: AppContext, sae_id: str | None) -> tuple[str, str, Any, Any, str]:
    """Summary, feature-density histogram, the first page of the table and its page counter."""
    res, df = results(ctx, sae_id)
    m = res.meta
    summary = (f"**{res.n_features:,} features** from {res.n_tokens:,} tokens of `{m.get('dataset_id', '?')}` at "
               f"`{m['hook_name']}` · {int(df.dead.sum()):,} dead · {int(df.dense.sum()):,} dense"
               + (" · *stopped early*" if m.get("stopped_early") else "")
               + (f" · input/output scores {res.scores_note()}" if not res.has_scores else ""))
    fig = render.frequency_histogram(df.frequency.tolist(), m["config"]["dense_threshold"], res.n_tokens)
    _, page, info = feature_table(ctx, sae_id, "", "", "frequency", "all", 1, 50)
    return ok(f"Loaded features of `{sae_id}`."), summary, fig, page, info


@guarded(3)
def feature_table(ctx: AppContext, sae_id: str | None, label_query: str, token_query: str, sort: str, show: str,
                  page: float, page_size: float, min_output: float | None = None,
                  min_input: float | None = None) -> tuple[str, pd.DataFrame, str]:
    """One page of the filtered, sorted table; `min_output` / `min_input` keep features whose output / input
    score is at least that (features without one are left out by a filter above 0)."""
    res, df = results(ctx, sae_id)
    if token_query:
        hits = pd.DataFrame(res.search_token(token_query, n=res.n_features))
        if hits.empty:
            raise ValidationError(f"No feature's top examples peak on {token_query!r}. Check the spelling and the "
                                  "leading space (tokens often start with one, e.g. ' Congress').")
        df = df.set_index("index").loc[hits["index"]].reset_index()
        df.insert(2, "examples_on_token", hits["n_examples"].to_numpy())
    if (label_query or "").strip():  # words ("yelling", "capital letters") in labels, descriptions, Neuronpedia's
        from mistudio_core.labeling.store import LabelStore

        ranked = LabelStore(ctx.store, sae_id).search_words(label_query)
        df = df.set_index("index").reindex([i for i in ranked if i in set(df["index"])]).reset_index()
    masks = {"alive": ~df.dead, "dead": df.dead, "dense": df.dense, "labelled": df.label != ""}
    if show in masks:
        df = df[masks[show]]
    for col, least in (("output_score", min_output), ("input_score", min_input)):
        if least:  # None / 0: no filter (NaN >= x is False, so unscored features drop out of a real filter)
            df = df[df[col] >= float(least)]
    if not token_query and not (label_query or "").strip():  # searches keep their best-match-first order
        col = SORTS.get(sort, "frequency")
        df = df.sort_values(col, ascending=col == "index", kind="stable")
    size = max(1, int(page_size or 50))
    n_pages = max(1, -(-len(df) // size))
    page_i = min(max(1, int(page or 1)), n_pages)
    out = df.iloc[(page_i - 1) * size: page_i * size].round(5)
    for col in ("input_score", "output_score"):  # blank, not "NaN", where there is no score
        out[col] = out[col].astype(object).where(out[col].notna(), None)
    note = "" if res.has_scores else f" Input/output scores {res.scores_note()}."
    return ok(f"{len(df):,} features match.{note}"), out, f"Page {page_i} of {n_pages} ({len(df):,} features)"


@guarded(3)
def analyze_prompt(ctx: AppContext, sae_id: str | None, text: str) -> tuple[str, str, pd.DataFrame]:
    """Per token, the features that fire most; a table of the strongest features over the prompt."""
    from mistudio_core.features.prompt import prompt_features

    loaded, sae, hook = data.model_and_sae(ctx, _need_sae(sae_id))
    out = prompt_features(loaded, sae, hook, text)
    labels = {}
    try:
        res, _ = results(ctx, sae_id)
        labels = {t["index"]: res.label(t["index"]) for t in out["totals"]}
    except ValidationError:
        pass
    except Exception:  # no extraction yet: the prompt view works without it
        labels = {}
    rows = [{"feature": t["index"], "label": labels.get(t["index"], ""), "max_activation": round(t["max_act"], 4),
             "tokens_firing": t["n_tokens"]} for t in out["totals"]]
    return ok(f"{len(out['tokens'])} tokens."), render.prompt_html(out, labels), pd.DataFrame(rows)


def _export_path(name: str) -> Path:
    return Path(tempfile.mkdtemp(prefix="mistudio-export-")) / name


@guarded(2)
def export_table(ctx: AppContext, sae_id: str | None, fmt: str) -> tuple[str, Any]:
    _, df = results(ctx, sae_id)
    path = _export_path(f"{sae_id}-features.{'csv' if fmt == 'CSV' else 'json'}")
    df.to_csv(path, index=False) if fmt == "CSV" else df.to_json(path, orient="records", indent=1)
    return ok(f"Exported {len(df):,} features."), gr.update(value=str(path), visible=True)


@guarded(2)
def export_feature(ctx: AppContext, sae_id: str | None, index: float, fmt: str) -> tuple[str, Any]:
    res, _ = results(ctx, sae_id)
    f = res.feature(int(index))
    if fmt == "CSV":
        path = _export_path(f"{sae_id}-feature-{f['index']}.csv")
        rows = [{"kind": "top", "value": e["value"], "context_id": e["context_id"], "peak": e["peak"],
                 "text": "".join(e["tokens"]), "peak_token": e["tokens"][e["peak"]],
                 "acts": " ".join(f"{a:.4g}" for a in e["acts"])} for e in f["top_examples"]]
        pd.DataFrame(rows).to_csv(path, index=False)
    else:
        path = _export_path(f"{sae_id}-feature-{f['index']}.json")
        path.write_text(json.dumps(f, indent=1), encoding="utf-8")
    return ok(f"Exported feature {f['index']}."), gr.update(value=str(path), visible=True)


def _selected_index(frame: pd.DataFrame, column: str, evt: gr.SelectData) -> int:
    """The feature id in the clicked row of a table (any cell of the row)."""
    row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
    return int(frame.iloc[int(row)][column])


def _selected_index_table(frame: pd.DataFrame, evt: gr.SelectData) -> int:
    return _selected_index(frame, "index", evt)


def _selected_index_prompt(frame: pd.DataFrame, evt: gr.SelectData) -> int:
    return _selected_index(frame, "feature", evt)


def _selected_index_neighbour(frame: pd.DataFrame, evt: gr.SelectData) -> int:
    return _selected_index(frame, "feature", evt)


def build(ctx: AppContext) -> None:
    """Lay out the tab and wire its events (in `features_layout.py`, to keep each file one screenful)."""
    from .features_layout import layout

    layout(ctx, sys.modules[__name__])

if __name__ == "__main__":  # a quick look at this page alone
    from mistudio_core.platform.store import Store

    with gr.Blocks() as demo:
        build(AppContext(store=Store(), allowed_roots=[Path.cwd()]))
    demo.launch()
