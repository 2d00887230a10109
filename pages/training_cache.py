"""The Training tab's "Activation caches" panel: every cache in the data directory with its size, and Delete.
Handlers are plain functions (tested directly); `build_cache_panel(ctx)` lays the panel out and wires it."""
from __future__ import annotations

import functools
from typing import Any

import gradio as gr

from mistudio_core.actcache.cache import delete_cache, list_caches
from mistudio_core.platform.errors import ValidationError

from .common import fmt_bytes, guarded, ok, require_writable, table
from .context import AppContext

COLUMNS = {"key": "cache", "model": "model", "dataset": "dataset", "hooks": "hooks", "tokens": "tokens",
           "dtype": "dtype", "size": "size"}


def caches_table(ctx: AppContext) -> Any:
    rows = [{"key": m["id"], "model": m["identity"]["model_id"], "dataset": m["identity"]["dataset_id"],
             "hooks": ", ".join(m["hook_names"]), "tokens": f"{m['n_tokens']:,}", "dtype": m["dtype"],
             "size": fmt_bytes(m.get("bytes", 0))} for m in reversed(list_caches(ctx.store))]
    return table(rows, COLUMNS)


def cache_choices(ctx: AppContext) -> Any:
    keys = [m["id"] for m in reversed(list_caches(ctx.store))]
    return gr.update(choices=keys, value=keys[0] if keys else None)


def refresh(ctx: AppContext) -> tuple[Any, Any]:
    return caches_table(ctx), cache_choices(ctx)


@guarded(3)
def delete(ctx: AppContext, key: str | None) -> tuple[str, Any, Any]:
    require_writable(ctx)
    if not key:
        raise ValidationError("No cache selected. Pick one from the list.")
    delete_cache(ctx.store, key)
    return (ok(f"Deleted activation cache `{key}`; a training that needs it captures it again."),
            caches_table(ctx), cache_choices(ctx))


def build_cache_panel(ctx: AppContext) -> dict:
    bind = functools.partial
    ui: dict = {}
    with gr.Accordion("Activation caches (captured once, replayed for many epochs and jobs)", open=False):
        ui["caches"] = gr.Dataframe(interactive=False, max_height=220, elem_id="training-caches")
        with gr.Row():
            ui["cache_key"] = gr.Dropdown(label="Cache", choices=[], allow_custom_value=True, scale=3)
            ui["cache_refresh_btn"] = gr.Button("Refresh", scale=1)
            ui["cache_delete_btn"] = gr.Button("Delete cache", variant="stop", scale=1)
        ui["cache_status"] = gr.Markdown()
    ui["cache_refresh_btn"].click(bind(refresh, ctx), None, [ui["caches"], ui["cache_key"]],
                                  api_name="training_caches")
    ui["cache_delete_btn"].click(bind(delete, ctx), [ui["cache_key"]],
                                 [ui["cache_status"], ui["caches"], ui["cache_key"]], api_name="training_cache_delete")
    return ui
