"""Datasets tab: add text (built-in corpus, a local file or folder, an upload, a hub dataset), tokenize it with a
registered model's tokenizer, look at its statistics and tokenized contexts, delete it.

Handlers are plain functions of `(ctx, ...)`; each returns a status Markdown first (see `common.guarded`).
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.utils import get_upload_folder

from mistudio_core.data import datasets as ds
from mistudio_core.platform.errors import ValidationError
from mistudio_core.platform.store import safe_user_path

from .common import (artifact_dropdown, bar_chart, dropdown_update, fmt_count, fmt_time, guarded, ok, on_show,
                     progress_adapter, require_writable, table, then_quietly, tokens_html)
from .context import AppContext

COLUMNS = {"id": "id", "name": "name", "source": "source", "n_docs": "documents", "n_chars": "characters",
           "tokenized": "tokenized for", "created": "created"}
TOP_COLUMNS = {"token": "token", "count": "count"}
PREVIEW_CONTEXTS = 3


def library(ctx: AppContext) -> Any:
    rows = [{**m, "source": _source(m.get("source") or {}), "n_docs": fmt_count(m.get("n_docs")),
             "n_chars": fmt_count(m.get("n_chars")), "tokenized": ", ".join(m.get("tokenizations") or []),
             "created": fmt_time(m.get("created"))} for m in ds.list_datasets(ctx.store)]
    return table(rows, COLUMNS)


def _source(src: dict) -> str:
    kind = src.get("type", "?")
    detail = src.get("package") or src.get("repo_id") or Path(src.get("path") or "").name
    return f"{kind}: {detail}" if detail else kind


def _added(ctx: AppContext, manifest: dict) -> tuple[str, Any, Any]:
    msg = ok(f"Added **{manifest['name']}** (`{manifest['id']}`): {manifest['n_docs']:,} documents, "
             f"{manifest['n_chars']:,} characters.")
    return msg, library(ctx), dropdown_update(ds.list_datasets(ctx.store), manifest["id"])


def refresh(ctx: AppContext, dataset_id: str | None, model_id: str | None) -> tuple[Any, Any, Any]:
    """Library table, dataset choices and tokenizer (model) choices, keeping the current selections."""
    return (library(ctx), dropdown_update(ds.list_datasets(ctx.store), dataset_id),
            dropdown_update(ctx.store.list("models"), model_id))


def _keeping_pick(fn):
    """`fn` (an action answering status, library, dataset choices) plus the dataset it picked, for `picked`."""
    @functools.wraps(fn)
    def run(*args, **kwargs):
        out = fn(*args, **kwargs)
        value = out[2].get("value") if isinstance(out[2], dict) else None
        return (*out, gr.skip() if value is None else value)
    return run


def _refresh_keeping_pick(ctx: AppContext, dataset_id: str | None, model_id: str | None, picked: str | None):
    """`refresh` keeping the session's latest pick: `picked` is read when the queue runs the refresh, the dropdown's
    value when the page sent it (on a busy machine a load / built-ins-ready refresh sent just before an Add runs
    after it: the value it carries would undo the Add's pick)."""
    return refresh(ctx, picked or dataset_id, model_id)


def builtin_button(ctx: AppContext) -> Any:
    """The built-in corpus button: offered until the corpus is added, then it says so (and is disabled)."""
    if ctx.store.exists("datasets", ds.BUILTIN_ID):
        return gr.update(value="✓ The State of the Union corpus is added", interactive=False)
    return gr.update(value="Add the State of the Union corpus", interactive=True)


@guarded(3)
def add_builtin(ctx: AppContext) -> tuple[str, Any, Any]:
    require_writable(ctx)
    return _added(ctx, ds.add_builtin_corpus(ctx.store))


@guarded(3)
def add_local(ctx: AppContext, path: str, text_column: str, name: str) -> tuple[str, Any, Any]:
    require_writable(ctx)
    resolved = safe_user_path(path, ctx.allowed_roots)
    return _added(ctx, ds.add_local(ctx.store, resolved, text_column or None, name or None))


@guarded(3)
def add_upload(ctx: AppContext, file: str | None, text_column: str, name: str) -> tuple[str, Any, Any]:
    require_writable(ctx)
    if not file:
        raise ValidationError("No file uploaded. Drop a .txt/.jsonl/.json/.csv/.tsv/.parquet file on the box first.")
    # Uploads land in Gradio's temp folder, which is allowed here (and only here).
    resolved = safe_user_path(file, [Path(get_upload_folder()), *ctx.allowed_roots])
    return _added(ctx, ds.add_local(ctx.store, resolved, text_column or None, name or Path(file).stem))


@guarded(3)
def add_hub(ctx: AppContext, repo_id: str, config: str, split: str, n_rows: float, text_column: str, token: str,
            progress: gr.Progress = gr.Progress()) -> tuple[str, Any, Any]:
    """Stream the first `n_rows` rows; the token is used for this request only and never stored."""
    require_writable(ctx)
    manifest = ds.add_hub(ctx.store, (repo_id or "").strip(), config.strip() or None, split.strip() or "train",
                          int(n_rows or 0), text_column.strip() or None, token.strip() or None,
                          progress=progress_adapter(progress))
    return _added(ctx, manifest)


@guarded(3)
def delete(ctx: AppContext, dataset_id: str | None) -> tuple[str, Any, Any]:
    require_writable(ctx)
    if not dataset_id:
        raise ValidationError("No dataset selected. Pick one in the list first.")
    ds.delete_dataset(ctx.store, dataset_id)
    return ok(f"Deleted dataset `{dataset_id}`."), library(ctx), dropdown_update(ds.list_datasets(ctx.store), None)


def _tok():
    from mistudio_core.data import tokenize  # imported late: tokenization needs transformers

    return tokenize


@guarded(6)
def tokenize_dataset(ctx: AppContext, dataset_id: str | None, model_id: str | None, context_size: float,
                     prepend_bos: bool, min_doc_chars: float, max_tokens: float,
                     progress: gr.Progress = gr.Progress()) -> tuple[str, Any, str, Any, Any, str]:
    """Tokenize with the model's tokenizer, then show the statistics (max_tokens 0 = no limit)."""
    require_writable(ctx)
    _need(dataset_id, model_id)
    tk = _tok()
    cfg = tk.TokenizeConfig(context_size=int(context_size), prepend_bos=bool(prepend_bos),
                            min_doc_chars=int(min_doc_chars or 0), max_tokens=int(max_tokens) or None)
    tk.tokenize_dataset(ctx.store, dataset_id, model_id, cfg, progress=progress_adapter(progress))
    _, summary, hist, top, preview = statistics(ctx, dataset_id, model_id)
    return ok(f"Tokenized `{dataset_id}` for `{model_id}`."), library(ctx), summary, hist, top, preview


def _need(dataset_id: str | None, model_id: str | None) -> None:
    if not dataset_id:
        raise ValidationError("No dataset selected. Add one above or pick one in the list.")
    if not model_id:
        raise ValidationError("No model selected. Add one in the Models tab (the built-in works offline).")


@guarded(5)
def statistics(ctx: AppContext, dataset_id: str | None, model_id: str | None) -> tuple[str, str, Any, Any, str]:
    """Token/document counts, the document-length histogram, the top tokens and decoded contexts."""
    _need(dataset_id, model_id)
    manifest = ctx.store.manifest("datasets", dataset_id)
    if model_id not in (manifest.get("tokenizations") or []):
        done = ", ".join(manifest.get("tokenizations") or []) or "no model yet"
        raw = ds.preview(ctx.store, dataset_id, n=PREVIEW_CONTEXTS)
        preview = tokens_html([[r["text"]] for r in raw], "Raw text (not tokenized for this model yet):")
        hint = f"Not tokenized for `{model_id}` yet (tokenized for: {done}): press **Tokenize**."
        return (ok(f"`{dataset_id}` is not tokenized for `{model_id}` yet."), f"{_doc_summary(manifest)}\n\n{hint}",
                None, table([], TOP_COLUMNS), preview)
    tk = _tok()
    config, st, first = _first_contexts(ctx, dataset_id, model_id, PREVIEW_CONTEXTS)
    summary = (_doc_summary(manifest) + f"\n\nFor `{model_id}`: **{st['n_tokens']:,} tokens** in "
               f"**{st['n_contexts']:,} contexts** of {config.get('context_size')} tokens from "
               f"{st['n_docs']:,} documents; {st.get('distinct_tokens', 0):,} distinct tokens. "
               + tk.heldout_text(config, st["n_contexts"]))
    h = st.get("doc_length_histogram") or {}
    hist = bar_chart(h.get("edges") or [0, 1], h.get("counts") or [0], "", "tokens per document",
                     "documents") if h else None
    top = table([{"token": repr(t)[1:-1], "count": c} for t, c in (st.get("top_tokens") or [])[:50]], TOP_COLUMNS)
    tokenizer = tk.load_tokenizer(ctx.store, model_id)
    contexts = [[tokenizer.decode([t]) for t in row] for row in first]
    preview = tokens_html(contexts, "First contexts, decoded; alternating colours mark token boundaries:")
    return ok(f"Statistics for `{dataset_id}` tokenized for `{model_id}`."), summary, hist, top, preview


def _first_contexts(ctx: AppContext, dataset_id: str, model_id: str, n: int) -> tuple[dict, dict, list]:
    """Config, stats and the first `n` contexts of a tokenization, reading only those rows of `tokens.safetensors`
    (this runs on every page load; a large dataset's full token grid is hundreds of MB)."""
    from safetensors import safe_open

    from mistudio_core.platform.store import read_json

    folder = _tok().tokenized_dir(ctx.store, dataset_id, model_id)
    with safe_open(str(folder / "tokens.safetensors"), framework="numpy") as f:
        first = f.get_slice("tokens")[:n].tolist()
    return read_json(folder / "config.json"), read_json(folder / "stats.json"), first


def show_selected(ctx: AppContext, dataset_id: str | None, model_id: str | None) -> tuple:
    """Statistics of the current selection (on load / selection), leaving the status line alone so a message
    from the user's last action is not overwritten; a blank area while nothing is selected."""
    if not dataset_id or not model_id:
        return gr.skip(), "", None, table([], TOP_COLUMNS), ""
    return (gr.skip(), *statistics(ctx, dataset_id, model_id)[1:])


def _doc_summary(m: dict) -> str:
    n = m.get("n_docs", 0)
    return (f"**{m.get('name')}** (`{m['id']}`, {_source(m.get('source') or {})}): {n:,} document"
            f"{'' if n == 1 else 's'}, {m.get('n_chars', 0):,} characters.")


def build(ctx: AppContext) -> None:
    bind = functools.partial
    gr.Markdown("Text to train on. Add a corpus, tokenize it with a model's tokenizer, then check its statistics. "
                "The built-in corpus is the **State of the Union addresses** (237 speeches, 1790–today).")
    status = gr.Markdown(elem_id="datasets-status")
    lib = gr.Dataframe(table([], COLUMNS), label="Datasets", elem_id="datasets-library", interactive=False,
                       max_height=260)
    with gr.Accordion("Add a dataset", open=True):
        with gr.Tab("Built-in"):
            builtin_btn = gr.Button("Add the State of the Union corpus", elem_id="datasets-add-builtin")
        with gr.Tab("Local file or folder"):
            roots = ", ".join(f"`{r}`" for r in ctx.allowed_roots)
            gr.Markdown(f"A .txt/.jsonl/.json/.csv/.tsv/.parquet file or a folder of .txt files inside: {roots}.")
            with gr.Row():
                path = gr.Textbox(label="Path on the server", placeholder="/data/corpus.jsonl", scale=3)
                local_col = gr.Textbox(label="Text column (optional)", scale=1)
                local_name = gr.Textbox(label="Name (optional)", scale=1)
            local_btn = gr.Button("Add local file", variant="primary")
        with gr.Tab("Upload"):
            upload = gr.File(label="Upload a text file", file_types=[".txt", ".jsonl", ".json", ".csv", ".tsv",
                                                                     ".parquet"])
            with gr.Row():
                up_col = gr.Textbox(label="Text column (optional)")
                up_name = gr.Textbox(label="Name (optional)")
            upload_btn = gr.Button("Add uploaded file", variant="primary")
        with gr.Tab("Hugging Face hub"):
            with gr.Row():
                repo = gr.Textbox(label="Dataset id", placeholder="roneneldan/TinyStories", scale=2)
                config = gr.Textbox(label="Config (optional)")
                split = gr.Textbox(label="Split", value="train")
            with gr.Row():
                n_rows = gr.Number(label="Sample size (rows)", value=10_000, precision=0, minimum=1)
                hub_col = gr.Textbox(label="Text column (optional)")
                token = gr.Textbox(label="Access token (gated data; used once, never stored)", type="password")
            hub_btn = gr.Button("Download sample", variant="primary")
    with gr.Row():
        dataset = artifact_dropdown("Dataset", scale=2)
        model = artifact_dropdown("Tokenizer (model)", scale=2)
        delete_btn = gr.Button("Delete dataset", variant="stop", scale=1)
    with gr.Accordion("Tokenize", open=True):
        with gr.Row():
            context_size = gr.Number(label="Context size (tokens)", value=128, precision=0, minimum=2)
            bos = gr.Checkbox(label="Prepend BOS token", value=True)
            min_chars = gr.Number(label="Min document chars", value=0, precision=0, minimum=0)
            max_tokens = gr.Number(label="Max tokens (0 = all)", value=0, precision=0, minimum=0)
        with gr.Row():
            tokenize_btn = gr.Button("Tokenize", variant="primary")
            stats_btn = gr.Button("Show statistics")
    summary = gr.Markdown(elem_id="datasets-summary")
    with gr.Row():
        hist = gr.Plot(label="Document lengths", scale=3, elem_id="datasets-histogram")
        top = gr.Dataframe(table([], TOP_COLUMNS), label="Top tokens", interactive=False, max_height=320, scale=2)
    preview = gr.HTML(label="Tokenized preview", elem_id="datasets-preview")

    # The session's latest pick (an action's or the user's), and one queue for the list refresh and those picks:
    # they run in the order sent, and the refresh reads `picked` when it runs (see _refresh_keeping_pick).
    picked = gr.State(None)
    added, one = [status, lib, dataset, picked], {"concurrency_id": "datasets-pick"}
    keep = _keeping_pick
    builtin_btn.click(keep(bind(add_builtin, ctx)), None, added, api_name="datasets_add_builtin", **one).then(
        bind(builtin_button, ctx), None, [builtin_btn], api_name="datasets_builtin_button_after_add")
    local_btn.click(keep(bind(add_local, ctx)), [path, local_col, local_name], added, api_name="datasets_add_local",
                    **one)
    upload_btn.click(keep(bind(add_upload, ctx)), [upload, up_col, up_name], added, api_name="datasets_add_upload",
                     **one)
    hub_btn.click(keep(bind(add_hub, ctx)), [repo, config, split, n_rows, hub_col, token], added,
                  api_name="datasets_add_hub", **one)
    dataset.input(lambda v: v, [dataset], [picked], api_visibility="private", show_progress="hidden", **one)
    delete_btn.click(keep(bind(delete, ctx)), [dataset], added, api_name="datasets_delete", **one).then(
        bind(builtin_button, ctx), None, [builtin_btn], api_name="datasets_builtin_button_after_delete")
    stat_out = [status, summary, hist, top, preview]
    tokenize_btn.click(bind(tokenize_dataset, ctx), [dataset, model, context_size, bos, min_chars, max_tokens],
                       [status, lib, summary, hist, top, preview], api_name="datasets_tokenize")
    stats_btn.click(bind(statistics, ctx), [dataset, model], stat_out, api_name="datasets_stats")
    gr.on([dataset.input, model.input], bind(show_selected, ctx), [dataset, model], stat_out,
          api_name="datasets_stats_on_select", api_visibility="undocumented")
    shown = on_show(ctx, bind(_refresh_keeping_pick, ctx), [dataset, model, picked], [lib, dataset, model],
                    api_name="datasets_list", concurrency_id="datasets-pick")
    then_quietly(shown, bind(show_selected, ctx), [dataset, model], stat_out, "datasets_stats_after_list")
    then_quietly(shown, bind(builtin_button, ctx), None, [builtin_btn], "datasets_builtin_button")


if __name__ == "__main__":  # a quick look at this page alone
    from mistudio_core.platform.store import Store

    with gr.Blocks() as demo:
        build(AppContext(store=Store(), allowed_roots=[Path.cwd()]))
    demo.launch()
