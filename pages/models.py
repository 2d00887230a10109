"""Models tab: register causal LMs (the built-in SmolLM2, a hub id, a local folder or .gguf), see their
architecture, size, memory estimate and hook points, load one with a chosen dtype (8/4-bit on CUDA), delete.

Handlers are plain functions of `(ctx, ...)`; each returns a status Markdown first (see `common.guarded`).
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import gradio as gr

from mistudio_core.model import models as mm
from mistudio_core.platform.errors import ValidationError
from mistudio_core.interop.validate import read_model_guarded
from mistudio_core.platform.store import safe_user_path
from mistudio_core.platform.system import cuda_available

from .common import (artifact_dropdown, dropdown_update, fmt_bytes, fmt_count, fmt_time, guarded, ok, on_show,
                     progress_adapter, require_writable, table, then_quietly)
from .context import AppContext

COLUMNS = {"id": "id", "name": "name", "source": "source", "architecture": "architecture", "n_layers": "layers",
           "d_model": "d_model", "n_params": "parameters", "vocab_size": "vocab", "created": "created"}
DTYPES = ["auto", "float32", "bfloat16", "float16"]
QUANT = ["none", "8bit", "4bit"]
NO_CUDA = "8-bit and 4-bit loading need a CUDA GPU (bitsandbytes); this machine has none, so models load unquantized."


def library(ctx: AppContext) -> Any:
    rows = [{**m, "source": (m.get("source") or {}).get("type", "?"), "n_params": fmt_count(m.get("n_params")),
             "created": fmt_time(m.get("created"))} for m in ctx.store.list("models")]
    return table(rows, COLUMNS)


def _changed(ctx: AppContext, message: str, select: str | None) -> tuple[str, Any, Any]:
    return message, library(ctx), dropdown_update(ctx.store.list("models"), select)


def refresh(ctx: AppContext, model_id: str | None) -> tuple[Any, Any]:
    return library(ctx), dropdown_update(ctx.store.list("models"), model_id)


def _added(ctx: AppContext, m: dict) -> tuple[str, Any, Any]:
    return _changed(ctx, ok(f"Added **{m['name']}** (`{m['id']}`): {m.get('architecture')}, "
                           f"{fmt_count(m.get('n_params'))} parameters."), m["id"])


@guarded(3)
def add_builtin(ctx: AppContext, progress: gr.Progress = gr.Progress()) -> tuple[str, Any, Any]:
    require_writable(ctx)
    return _added(ctx, mm.add_builtin_model(ctx.store, progress=progress_adapter(progress)))


@guarded(3)
def add_hub(ctx: AppContext, repo_id: str, revision: str, token: str,
            progress: gr.Progress = gr.Progress()) -> tuple[str, Any, Any]:
    """Download a hub model; the token is used for this download only and never stored."""
    require_writable(ctx)
    return _added(ctx, mm.add_hub_model(ctx.store, (repo_id or "").strip(), token=token.strip() or None,
                                        revision=revision.strip() or None, progress=progress_adapter(progress)))


@guarded(3)
def add_local(ctx: AppContext, path: str, name: str, progress: gr.Progress = gr.Progress()) -> tuple[str, Any, Any]:
    require_writable(ctx)
    resolved = safe_user_path(path, ctx.allowed_roots)
    return _added(ctx, read_model_guarded(lambda: mm.add_local_model(
        ctx.store, resolved, name=(name or "").strip() or None, progress=progress_adapter(progress)), resolved))


@guarded(3)
def delete(ctx: AppContext, model_id: str | None) -> tuple[str, Any, Any]:
    require_writable(ctx)
    _need(model_id)
    mm.delete_model(ctx.store, model_id)
    return _changed(ctx, ok(f"Deleted model `{model_id}` (its tokenized datasets stay until you delete them)."),
                    None)


def _need(model_id: str | None) -> None:
    if not model_id:
        raise ValidationError("No model selected. Add one above (the built-in works offline) or pick one.")


def _summary_md(info: dict) -> str:
    lines = [f"### {info.get('name') or info.get('id')}",
             f"- **architecture**: {info.get('architecture')} ({info.get('model_type') or '?'})",
             f"- **layers** {info.get('n_layers')} · **d_model** {info.get('d_model')} · "
             f"**parameters** {fmt_count(info.get('n_params'))} · **vocab** {fmt_count(info.get('vocab_size'))}"]
    if info.get("device"):
        lines.append(f"- **loaded** on `{info['device']}` as `{info['dtype']}`"
                     f"{' (' + info['quantization'] + ')' if info.get('quantization') else ''}")
    mem = info.get("memory_bytes") or {}
    if mem:
        lines.append("- **weights in memory**: " + " · ".join(f"{k} {fmt_bytes(v)}" for k, v in mem.items()))
    return "\n".join(lines)


def _hooks_table(info: dict) -> Any:
    return table([{"hook": h} for h in info.get("hook_points") or []], {"hook": "hook point"})


@guarded(3)
def summary(ctx: AppContext, model_id: str | None) -> tuple[str, str, Any]:
    """Architecture, size, memory estimate and hook points from the manifest (nothing is loaded)."""
    _need(model_id)
    info = mm.model_summary(ctx.store.manifest("models", model_id))
    return ok(f"Summary of `{model_id}`."), _summary_md(info), _hooks_table(info)


@guarded(3)
def load(ctx: AppContext, model_id: str | None, dtype: str, quantization: str) -> tuple[str, str, Any]:
    """Load the model with this dtype / quantization to check it works here, and show what was loaded."""
    _need(model_id)
    loaded = mm.load_model(ctx.store, model_id, dtype=None if dtype in ("", "auto") else dtype,
                           quantization=None if quantization in ("", "none") else quantization)
    info = mm.model_summary(loaded)
    info["name"] = ctx.store.manifest("models", model_id).get("name")
    return ok(f"Loaded `{model_id}` on {loaded.device} ({loaded.dtype})."), _summary_md(info), _hooks_table(info)


def show_selected(ctx: AppContext, model_id: str | None) -> tuple[str, str, Any]:
    """The summary of the current selection (on load / selection; the status line is left alone)."""
    return (gr.skip(), *summary(ctx, model_id)[1:]) if model_id else (gr.skip(), "", _hooks_table({}))


def build(ctx: AppContext) -> None:
    bind = functools.partial
    cuda = cuda_available()
    gr.Markdown("Language models whose activations the SAEs read. The built-in model is **SmolLM2-135M-Instruct** "
                "(30 layers, d_model 576), converted once from the GGUF shipped with miStudio.")
    status = gr.Markdown(elem_id="models-status")
    lib = gr.Dataframe(table([], COLUMNS), label="Models", elem_id="models-library", interactive=False,
                       max_height=260)
    with gr.Accordion("Add a model", open=True):
        with gr.Tab("Built-in"):
            builtin_btn = gr.Button("Add SmolLM2-135M-Instruct")
        with gr.Tab("Hugging Face hub"):
            with gr.Row():
                repo = gr.Textbox(label="Model id", placeholder="HuggingFaceTB/SmolLM2-135M", scale=2)
                revision = gr.Textbox(label="Revision (optional)")
                token = gr.Textbox(label="Access token (gated models; used once, never stored)", type="password")
            hub_btn = gr.Button("Download", variant="primary")
        with gr.Tab("Local folder or .gguf"):
            roots = ", ".join(f"`{r}`" for r in ctx.allowed_roots)
            gr.Markdown(f"A transformers folder (config.json + *.safetensors, registered by reference) or a .gguf "
                        f"file (converted once) inside: {roots}.")
            with gr.Row():
                path = gr.Textbox(label="Path on the server", scale=3)
                name = gr.Textbox(label="Name (optional)", scale=1)
            local_btn = gr.Button("Add local model", variant="primary")
    with gr.Row():
        model = artifact_dropdown("Model", scale=3)
        summary_btn = gr.Button("Summary", scale=1)
        delete_btn = gr.Button("Delete model", variant="stop", scale=1)
    with gr.Accordion("Load to check it runs here", open=False):
        with gr.Row():
            dtype = gr.Dropdown(label="dtype", choices=DTYPES, value="auto",
                                info="auto = bfloat16 on a GPU, float32 on CPU")
            quant = gr.Radio(label="Quantization", choices=QUANT, value="none", interactive=cuda,
                             info=None if cuda else NO_CUDA)
            load_btn = gr.Button("Load", variant="primary")
    with gr.Row():
        info = gr.Markdown(elem_id="models-summary")
        hooks = gr.Dataframe(_hooks_table({}), label="Hook points", interactive=False, max_height=300)

    changed = [status, lib, model]
    builtin_btn.click(bind(add_builtin, ctx), None, changed, api_name="models_add_builtin")
    hub_btn.click(bind(add_hub, ctx), [repo, revision, token], changed, api_name="models_add_hub")
    local_btn.click(bind(add_local, ctx), [path, name], changed, api_name="models_add_local")
    delete_btn.click(bind(delete, ctx), [model], changed, api_name="models_delete")
    summary_btn.click(bind(summary, ctx), [model], [status, info, hooks], api_name="models_summary")
    load_btn.click(bind(load, ctx), [model, dtype, quant], [status, info, hooks], api_name="models_load")
    model.input(bind(show_selected, ctx), [model], [status, info, hooks], api_name="models_summary_on_select",
                api_visibility="undocumented")
    shown = on_show(ctx, bind(refresh, ctx), [model], [lib, model], api_name="models_list")
    then_quietly(shown, bind(show_selected, ctx), [model], [status, info, hooks], "models_summary_after_list")


if __name__ == "__main__":  # a quick look at this page alone
    from mistudio_core.platform.store import Store

    with gr.Blocks() as demo:
        build(AppContext(store=Store(), allowed_roots=[Path.cwd()]))
    demo.launch()
