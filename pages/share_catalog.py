"""Share tab, part two: the pretrained SAE catalog (browse, import from the Hub or a local snapshot, register the
model it needs) and Neuronpedia explanations (import, then find features by words).

Tokens live only in their textbox and the one request that uses them; nothing here stores them.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from mistudio_core.platform.errors import ValidationError
from mistudio_core.platform.hub import hub_offline_reason
from mistudio_core import spec as front_door
from mistudio_core.interop import catalog
from mistudio_core.interop.import_spec import run_import
from mistudio_core.interop.np_explanations import import_explanations, import_explanations_hub
from mistudio_core.labeling.store import LabelStore
from mistudio_core.platform.store import safe_user_path

from .common import dropdown_update, fmt_bytes, guarded, ok, require_writable, table
from .context import AppContext

CATALOG_COLUMNS = {"id": "catalog id", "model": "model", "layer": "layer", "width": "width", "l0": "L0",
                   "size": "download", "neuronpedia": "Neuronpedia"}
SEARCH_COLUMNS = {"index": "feature", "label": "label", "source": "source", "score": "score"}
ALL = "all"


def _width(n: int | None) -> str:
    if not n:
        return ""
    return f"{n // 2**20}m" if n % 2**20 == 0 else f"{n // 1024}k" if n % 1024 == 0 else str(n)


def _shown(r: dict) -> dict:
    """A catalog row as the table shows it."""
    return {**r, "width": _width(r["width"]), "size": fmt_bytes(r["download_bytes"]),
            "neuronpedia": r.get("neuronpedia") or ""}


def model_choices() -> list[str]:
    return [ALL, *catalog.models()]


@guarded(2)
def catalog_list(ctx: AppContext, model: str | None, layer: str | float | None, width: str | None
                 ) -> tuple[str, pd.DataFrame]:
    """Catalog entries (and our own SAELens exports) filtered by model, layer and width."""
    layer_text = "" if layer in (None, "") else str(int(float(layer)))
    rows = catalog.list_entries(ctx.store, model=None if model in (None, "", ALL) else model, layer=layer_text,
                                width=None if width in (None, "", ALL) else width)
    shown = [_shown(r) for r in rows[:500]]
    more = " (first 500 shown; narrow the filters)" if len(rows) > 500 else ""
    return ok(f"{len(rows)} SAEs in the catalog match{more}. Click a row to see what it needs."), \
        table(shown, CATALOG_COLUMNS)


def catalog_select(evt: gr.SelectData) -> str:
    """The catalog id of the clicked table row."""
    row = evt.row_value if evt is not None else None
    return str(row[0]) if row else ""


@guarded(1)
def catalog_details(ctx: AppContext, entry_id: str) -> str:
    """What one entry is and what it needs: hook, size, the model (size per dtype, gating) and how to get it."""
    if not (entry_id or "").strip():
        raise ValidationError("Pick a catalog entry: click a row of the table or paste its id.")
    e = catalog.get_entry(entry_id, ctx.store)
    info = catalog.model_info(e)
    mem = info.get("memory_bytes") or {}
    have = catalog.matching_model(ctx.store, e)
    offline = hub_offline_reason()
    lines = [f"**{e['id']}** · `{e['hook_name']}` · width {_width(e['width'])} · L0 {e.get('l0') or '?'} · "
             f"{e['architecture']} · download {fmt_bytes(e['download_bytes'])}",
             f"Needs model **{info['name']}**" + (f" (`{info['hf_repo']}`)" if info.get("hf_repo") else "")
             + (f": {info['n_params'] / 1e9:.2f}B parameters, {fmt_bytes(mem.get('bfloat16'))} in bfloat16, "
                f"{fmt_bytes(mem.get('float32'))} in float32" if mem else "")
             + (". **Gated**: accept its licence on huggingface.co and paste a token to register it "
                "(used once, never stored)." if info.get("gated") else "."),
             f"Registered here as `{have}`." if have else "Not registered yet: use 'Register its model', or add "
             "a local copy in the Models tab."]
    if info.get("note") and not info.get("gated"):
        lines.append(f"Note: {info['note']}.")
    if e.get("neuronpedia"):
        lines.append(f"Neuronpedia: [{e['neuronpedia']}](https://www.neuronpedia.org/{e['neuronpedia']}) — its "
                     "explanations can be imported below once the SAE is in the library.")
    if offline and not e["id"].startswith(catalog.OWN_PREFIX):
        lines.append(f"Offline ({offline}): import from a local snapshot folder. " + catalog.offline_hint(e))
    return "\n\n".join(lines)


@guarded(4)
def catalog_import(ctx: AppContext, entry_id: str, snapshot: str, token: str, model_id: str | None
                   ) -> tuple[str, Any, Any, Any]:
    """Import the entry's SAE: from the snapshot folder when given, else the HF cache or the Hub."""
    require_writable(ctx)
    folder = safe_user_path(snapshot, [ctx.store.home, *ctx.allowed_roots]) if (snapshot or "").strip() else None
    spec = front_door.build("import", store=ctx.store, catalog=(entry_id or "").strip(), path=str(folder or ""),
                            model_id=(model_id or "").strip() or None)
    m = run_import(ctx.store, spec, token=(token or "").strip() or None)
    return (ok(f"Imported **{m['catalog']['id']}** as `{m['id']}` (hook `{m['hook_name']}`, model "
               f"`{m['model_id']}`). Next: import its Neuronpedia explanations below, or extract features."),
            *(dropdown_update(ctx.store.list("saes"), m["id"]) for _ in range(3)))  # Gradio edits updates in place


@guarded(1)
def catalog_register_model(ctx: AppContext, entry_id: str, token: str) -> str:
    """Register the model the entry needs from the Hub (the token, for gated models, is used once)."""
    require_writable(ctx)
    m = catalog.register_model(ctx.store, (entry_id or "").strip(), token=(token or "").strip() or None)
    return ok(f"Model `{m['id']}` is registered ({m.get('n_layers')} layers, d_model {m.get('d_model')}).")


@guarded(1)
def explanations_import(ctx: AppContext, sae_id: str | None, path: str, upload: str | None, hub_repo: str,
                        hub_file: str, token: str) -> str:
    """Neuronpedia explanations → labels of `sae_id`, from an upload, a server path or a Hub dataset file."""
    require_writable(ctx)
    if not sae_id:
        raise ValidationError("Pick the SAE the explanations belong to (import it from the catalog first).")
    if upload:
        from gradio.utils import get_upload_folder

        out = import_explanations(ctx.store, sae_id, safe_user_path(upload, [Path(get_upload_folder()),
                                                                             *ctx.shared.get("upload_dirs", [])]))
    elif (path or "").strip():
        out = import_explanations(ctx.store, sae_id, safe_user_path(path, [ctx.store.home, *ctx.allowed_roots]))
    elif (hub_repo or "").strip() and (hub_file or "").strip():
        out = import_explanations_hub(ctx.store, sae_id, hub_repo.strip(), hub_file.strip(),
                                      token=(token or "").strip() or None)
    else:
        raise ValidationError("Give the explanations: upload a file, type a server path, or a Hub dataset repo "
                              "and file name.")
    return ok(f"{out['features']} explanations imported into `{sae_id}`: {out['new']} new labels, "
              f"{out['updated']} updated, {out['kept_manual_or_llm']} features kept their own label (the "
              f"explanation is stored beside it), {out['skipped']} malformed lines skipped. Search them below, "
              "or in the Features and Steering tabs.")


@guarded(2)
def explanations_search(ctx: AppContext, sae_id: str | None, text: str) -> tuple[str, pd.DataFrame]:
    """Features whose labels or explanations match the words of `text`, best first."""
    if not sae_id:
        raise ValidationError("Pick an SAE to search.")
    ctx.store.manifest("saes", sae_id)
    hits = LabelStore(ctx.store, sae_id).search_hits(text, limit=50)
    head = f"{len(hits)} features match {text!r}" + (f"; best: feature {hits[0]['index']}." if hits else
                                                      ". Import explanations or label features first.")
    return ok(head), table(hits, SEARCH_COLUMNS)


def build_catalog(ctx: AppContext, status: gr.Markdown) -> tuple[gr.Button, list]:
    """The catalog accordion: filters, table, details of the picked entry, import and model registration.
    Returns the import button and its inputs but the model (the tab wires it: its outputs come later)."""
    with gr.Accordion("Pretrained SAE catalog (Gemma Scope, GPT-2, your exports)", open=True):
        with gr.Row():
            f_model = gr.Dropdown(model_choices(), value="gemma-2-2b", label="Model")
            f_layer = gr.Number(label="Layer (empty = all)", precision=0, value=20)
            f_width = gr.Dropdown([ALL, "16k", "32k", "65k", "131k", "262k", "524k", "1m", "24576"], value="16k",
                                  label="Width")
            list_btn = gr.Button("Show")
        first = catalog.list_entries(model="gemma-2-2b", layer=20, width="16k")  # a useful first view
        grid = gr.Dataframe(table([_shown(r) for r in first], CATALOG_COLUMNS),
                            interactive=False, max_height=260, elem_id="share-catalog-table")
        entry = gr.Textbox(label="Catalog id (click a row, or paste an id / Neuronpedia source)",
                           placeholder="gemma-scope-2b-pt-res/layer_20/width_16k/average_l0_71",
                           elem_id="share-catalog-entry")
        details = gr.Markdown(elem_id="share-catalog-details")
        with gr.Row():
            snapshot = gr.Textbox(label="Local snapshot folder (offline; leave empty to download)",
                                  placeholder="/data/gemma-scope-2b-pt-res")
            token = gr.Textbox(label="Hub token for gated repos/models (used once, never stored)", type="password")
        with gr.Row():
            import_btn = gr.Button("Import SAE", variant="primary", elem_id="share-catalog-import")
            register_btn = gr.Button("Register its model")
    list_btn.click(functools.partial(catalog_list, ctx), [f_model, f_layer, f_width], [status, grid],
                   api_name="share_catalog_list")
    grid.select(catalog_select, None, [entry], api_name="share_catalog_select")
    entry.change(lambda e: catalog_details(ctx, e) if (e or "").strip() else "", [entry], [details],
                 api_name="share_catalog_details", show_progress="hidden")
    register_btn.click(functools.partial(catalog_register_model, ctx), [entry, token], [status],
                       api_name="share_catalog_register_model")
    return import_btn, [entry, snapshot, token]


def build_explanations(ctx: AppContext, status: gr.Markdown) -> gr.Dropdown:
    """The explanations accordion: import a Neuronpedia file into an SAE's labels, then search them by words.
    Returns its SAE dropdown (the tab's refresh fills it)."""
    from .common import artifact_dropdown

    with gr.Accordion("Neuronpedia explanations → labels", open=True):
        sae = artifact_dropdown("SAE the explanations belong to", elem_id="share-expl-sae")
        with gr.Tab("Upload"):
            upload = gr.File(label="Explanations file (.json, .jsonl, .gz)", file_types=[".json", ".jsonl", ".gz"])
        with gr.Tab("Server path"):
            path = gr.Textbox(label="File on the server (inside an allowed folder)", elem_id="share-expl-path")
        with gr.Tab("Hub dataset"):
            hub_repo = gr.Textbox(label="Dataset repo id")
            hub_file = gr.Textbox(label="File in the repo")
            token = gr.Textbox(label="Token (private repos; never stored)", type="password")
        import_btn = gr.Button("Import explanations", variant="primary", elem_id="share-expl-import")
        with gr.Row():
            query = gr.Textbox(label="Find features by words", placeholder="yelling, capital letters",
                               elem_id="share-expl-query")
            find_btn = gr.Button("Find", elem_id="share-expl-find")
        hits = gr.Dataframe(table([], SEARCH_COLUMNS), interactive=False, max_height=260, elem_id="share-expl-hits")
    import_btn.click(functools.partial(explanations_import, ctx), [sae, path, upload, hub_repo, hub_file, token],
                     [status], api_name="share_explanations_import")
    gr.on([find_btn.click, query.submit], functools.partial(explanations_search, ctx), [sae, query], [status, hits],
          api_name="share_explanations_search")
    return sae
