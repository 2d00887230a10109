"""Share tab: the pretrained SAE catalog and Neuronpedia explanations (`share_catalog.py`), import community SAEs
(SAELens, Gemma Scope, sparsify; folder, archive upload or Hub), export SAELens / Neuronpedia bundles and download
them as one zip, upload a bundle to the Hub, and compare two SAEs by decoder cosine.

A Neuronpedia export runs as a job: the page checks its precondition (extracted features) before queueing, then
watches the job (a generator reading the registry) and shows its progress, failure or result until it ends.

Hub tokens live only in the textbox and the one request that uses them; nothing here writes them anywhere.
"""
from __future__ import annotations

import functools
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import gradio as gr
import plotly.graph_objects as go
from gradio.utils import get_upload_folder

from mistudio_core import spec as front_door
from mistudio_core.platform.errors import MistudioError, ValidationError
from mistudio_core.interop.bundle_zip import bundle_zip
from mistudio_core.interop.compare import compare_saes
from mistudio_core.interop.job import run_export
from mistudio_core.interop.hub import upload_bundle
from mistudio_core.interop.import_spec import run_import
from mistudio_core.platform.store import safe_user_path

from .common import (artifact_dropdown, bar_chart, dropdown_update, failed, guarded, ok, on_show, require_writable,
                     table)
from .context import AppContext
from .share_catalog import build_catalog, build_explanations, catalog_import

JOB_ENDED = ("done", "failed", "cancelled", "interrupted")
WATCH_SECONDS = 0.5


def _opt(text: str | None) -> str | None:
    return (text or "").strip() or None


def _imported(ctx: AppContext, m: dict) -> tuple[str, Any]:
    return (ok(f"Imported **{m['name']}** ({m['architecture']}, d_sae {m['d_sae']}, hook `{m.get('hook_name')}`) "
               f"as `{m['id']}`. It is in the SAEs tab and works in Features and Steering."),
            dropdown_update(ctx.store.list("saes"), m["id"]))


def _import(ctx: AppContext, token: str | None = None, **fields) -> dict:
    """Import what `fields` describe, through the "import" spec every door builds (the token is not part of it)."""
    return run_import(ctx.store, front_door.build("import", store=ctx.store, **fields), token=token)


@guarded(2)
def import_local(ctx: AppContext, path: str, model_id: str | None, hook: str, repo_id: str,
                 path_in_repo: str) -> tuple[str, Any]:
    """Import a folder or archive from an allowed folder on the server."""
    require_writable(ctx)
    source = safe_user_path(path, [ctx.store.home, *ctx.allowed_roots])
    return _imported(ctx, _import(ctx, path=str(source), model_id=_opt(model_id), hook_name=_opt(hook),
                                  repo_id=repo_id or "", path_in_repo=path_in_repo or ""))


@guarded(2)
def import_upload(ctx: AppContext, file: str | None, model_id: str | None, hook: str) -> tuple[str, Any]:
    """Import an uploaded .zip / .tar.gz of an SAE folder."""
    require_writable(ctx)
    if not file:
        raise ValidationError("No file uploaded. Drop a .zip or .tar.gz of an SAE folder on the box first.")
    source = safe_user_path(file, [Path(get_upload_folder())])
    return _imported(ctx, _import(ctx, path=str(source), model_id=_opt(model_id), hook_name=_opt(hook)))


@guarded(2)
def import_hub(ctx: AppContext, repo_id: str, path_in_repo: str, token: str, model_id: str | None,
               hook: str) -> tuple[str, Any]:
    """Download one SAE from a Hub repo (e.g. google/gemma-scope-2b-pt-res, layer_20/width_16k/average_l0_71)."""
    require_writable(ctx)
    m = _import(ctx, token=_opt(token), hub=(repo_id or "").strip(), path=(path_in_repo or "").strip(),
                model_id=_opt(model_id), hook_name=_opt(hook))
    return _imported(ctx, m)


def _servable(path: Path) -> str:
    """A path Gradio will hand out: under the working or temp directory as is, else a copy in Gradio's own output
    cache (Gradio copies returned files there anyway; the data directory itself is not served)."""
    path = Path(path).resolve()
    roots = [Path.cwd().resolve(), Path(tempfile.gettempdir()).resolve()]
    if any(r == path or r in path.parents for r in roots):
        return str(path)
    cache = Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio") / "mistudio-exports"
    cache.mkdir(parents=True, exist_ok=True)
    shutil.copy2(path, cache / path.name)
    return str(cache / path.name)


@guarded(5)
def export(ctx: AppContext, sae_id: str | None, fmt: str) -> tuple[str, Any, str | None, str | None, str]:
    """SAELens bundle now (with its zip); a Neuronpedia bundle as a background job (it reads every feature's
    dashboard) whose id goes to the watcher. Outputs: status, bundle, model card, zip, job id."""
    require_writable(ctx)
    spec = front_door.build("export", store=ctx.store, sae_id=sae_id, format=fmt)  # refuses what would fail
    if fmt == "neuronpedia":
        if ctx.jobs is None:
            raise ValidationError("The job runner is not available; export from the command line instead "
                                  f"(`python -m mistudio_core export {sae_id} --format neuronpedia`).")
        job_id = ctx.jobs.submit("export", spec, name=f"neuronpedia {sae_id}")
        return ok(f"Neuronpedia export queued as job `{job_id}`; progress shows here until it ends."), \
            dropdown_update(ctx.store.list("exports"), None), None, None, job_id
    out = run_export(ctx.store, spec)
    readme = str(Path(out["path"]) / "README.md")
    zipped = bundle_zip(ctx.store, out["id"])
    return ok(f"SAELens bundle `{out['id']}` written; download it as one zip below."), \
        dropdown_update(ctx.store.list("exports"), out["id"]), readme, _servable(zipped), ""


def export_watch(ctx: AppContext, job_id: str):
    """Follow an export job until it ends: progress lines, then the bundle's zip, or the job's error."""
    if not (job_id or "").strip() or ctx.jobs is None:  # a SAELens export: nothing to follow, change nothing
        yield gr.skip(), gr.skip(), gr.skip()
        return
    while True:
        try:
            job = ctx.jobs.get(job_id)
        except MistudioError as e:
            yield failed(str(e)), gr.skip(), gr.skip()
            return
        if job["status"] not in JOB_ENDED:
            frac = (job.get("progress") or {}).get("fraction") or 0.0
            yield ok(f"Export job `{job_id}`: {job['status']} {frac:.0%} — {job.get('message') or ''}"), \
                gr.skip(), gr.skip()
            time.sleep(WATCH_SECONDS)
            continue
        if job["status"] != "done":
            yield failed(f"Export job `{job_id}` {job['status']}: {job.get('error') or job.get('message') or ''}"), \
                gr.skip(), gr.skip()
            return
        export_id = (job.get("result") or {}).get("export_id")
        try:
            zipped = _servable(bundle_zip(ctx.store, export_id))
        except MistudioError as e:
            yield failed(str(e)), gr.skip(), gr.skip()
            return
        yield ok(f"Neuronpedia bundle `{export_id}` is ready; download it as one zip below."), \
            dropdown_update(ctx.store.list("exports"), export_id), zipped
        return


@guarded(2)
def download(ctx: AppContext, export_id: str | None) -> tuple[str, str | None]:
    """The zip of an existing bundle."""
    if not export_id:
        raise ValidationError("No bundle selected. Export an SAE first.")
    out_dir = Path(tempfile.mkdtemp(prefix="mistudio-zip-")) if ctx.read_only else None  # read-only writes nothing
    return ok(f"`{export_id}.zip` is ready below."), _servable(bundle_zip(ctx.store, export_id, out_dir))


@guarded(1)
def upload(ctx: AppContext, export_id: str | None, repo_id: str, token: str, private: bool) -> str:
    require_writable(ctx)
    if not export_id:
        raise ValidationError("No export selected. Export the SAE first, then pick the bundle.")
    url = upload_bundle(ctx.store.path("exports", export_id), (repo_id or "").strip(), _opt(token) or "",
                        private=private)
    return ok(f"Uploaded to [{url}]({url}).")


@guarded(3)
def compare(ctx: AppContext, sae_a: str | None, sae_b: str | None) -> tuple[str, go.Figure, Any]:
    if not sae_a or not sae_b:
        raise ValidationError("Pick two SAEs to compare.")
    r = compare_saes(ctx.store, sae_a, sae_b)
    if r.get("same"):
        return failed(r["warning"]), gr.skip(), gr.skip()
    head = (f"Mean best-match cosine **{r['mean_best_cosine']:.3f}**; {r['fraction_above_0.9']:.1%} of {sae_a}'s "
            f"{r['n_features']} features have a match ≥ 0.9 in {sae_b}.")
    if r["warning"]:
        head += f"\n\n⚠ {r['warning']}"
    fig = bar_chart(r["histogram"]["edges"], r["histogram"]["counts"], "Best-match decoder cosine",
                    "cosine", "features")
    return ok(head), fig, table(r["matches"][:200], {"feature": "feature", "match": "best match", "cosine": "cosine"})


def refresh(ctx: AppContext, *current: str | None) -> tuple[Any, ...]:
    saes, exports = ctx.store.list("saes"), ctx.store.list("exports")
    model_ids = [m["id"] for m in ctx.store.list("models")]
    return (dropdown_update(saes, current[0]), dropdown_update(saes, current[1]), dropdown_update(saes, current[2]),
            dropdown_update(exports, current[3]), gr.update(choices=model_ids), dropdown_update(saes, current[4]),
            gr.update(choices=model_ids))


def build(ctx: AppContext) -> None:
    bind = functools.partial
    status = gr.Markdown(elem_id="share-status")
    cat_model = gr.Dropdown(label="Model the catalog SAE belongs to (empty: the matching registered model)",
                            choices=[], allow_custom_value=True, render=False)
    cat_imported = artifact_dropdown("Imported SAE", interactive=False, render=False)
    cat_import_btn, cat_inputs = build_catalog(ctx, status)
    with gr.Row():
        cat_model.render()
        cat_imported.render()
    expl_sae = build_explanations(ctx, status)
    with gr.Accordion("Import an SAE from a folder, an archive or any Hub repo", open=False):
        gr.Markdown("SAELens folders (v6 or older), Gemma Scope `params.npz`, EleutherAI sparsify folders. "
                    "Pickle files (`.pt`, `.pkl`) are refused: they can run code.")
        with gr.Row():
            model = gr.Dropdown(label="Model it belongs to", choices=[], allow_custom_value=True)
            hook = gr.Textbox(label="Hook point (if the files don't say)", placeholder="blocks.8.hook_resid_post")
        with gr.Tab("Hub"):
            repo = gr.Textbox(label="Repo id", placeholder="google/gemma-scope-2b-pt-res")
            repo_path = gr.Textbox(label="Path in repo", placeholder="layer_20/width_16k/average_l0_71")
            token = gr.Textbox(label="Token (gated/private repos; never stored)", type="password")
            hub_btn = gr.Button("Import from Hub", variant="primary")
        with gr.Tab("Local folder"):
            local_path = gr.Textbox(label="Folder or archive on the server (inside an allowed folder)")
            local_repo = gr.Textbox(label="Gemma Scope: repo id it came from (optional)")
            local_repo_path = gr.Textbox(label="Gemma Scope: path in repo (optional)")
            local_btn = gr.Button("Import folder", variant="primary")
        with gr.Tab("Upload"):
            archive = gr.File(label="A .zip / .tar.gz of an SAE folder", file_types=[".zip", ".gz", ".tgz", ".tar"])
            upload_btn = gr.Button("Import upload", variant="primary")
        imported = artifact_dropdown("Imported SAE", interactive=False)
    with gr.Accordion("Export and upload", open=True):
        with gr.Row():
            sae = artifact_dropdown("SAE")
            fmt = gr.Radio(["saelens", "neuronpedia"], value="saelens", label="Format")
            export_btn = gr.Button("Export", variant="primary")
        with gr.Row():
            card = gr.File(label="Model card of the SAELens bundle", height=90)
            zipped = gr.File(label="Bundle as one zip", elem_id="share-zip", height=90)
        export_job = gr.Textbox(label="Export job", visible=False)
        with gr.Row():
            bundle = artifact_dropdown("Bundle")
            zip_btn = gr.Button("Download as zip")
            hub_repo = gr.Textbox(label="Hub repo id", placeholder="you/my-sae")
            hub_token = gr.Textbox(label="Write token (never stored)", type="password")
            private = gr.Checkbox(label="Private")
            push_btn = gr.Button("Upload")
    with gr.Accordion("Compare two SAEs", open=False):
        with gr.Row():
            sae_a, sae_b = artifact_dropdown("SAE A"), artifact_dropdown("SAE B")
            cmp_btn = gr.Button("Compare")
        cmp_plot = gr.Plot()
        cmp_table = gr.Dataframe(interactive=False, max_height=300)

    cat_import_btn.click(bind(catalog_import, ctx), [*cat_inputs, cat_model], [status, cat_imported, expl_sae, sae],
                         api_name="share_catalog_import")
    hub_btn.click(bind(import_hub, ctx), [repo, repo_path, token, model, hook], [status, imported],
                  api_name="share_import_hub")
    local_btn.click(bind(import_local, ctx), [local_path, model, hook, local_repo, local_repo_path], [status, imported],
                    api_name="share_import_local")
    upload_btn.click(bind(import_upload, ctx), [archive, model, hook], [status, imported],
                     api_name="share_import_upload")
    export_btn.click(bind(export, ctx), [sae, fmt], [status, bundle, card, zipped, export_job],
                     api_name="share_export").then(bind(export_watch, ctx), [export_job], [status, bundle, zipped],
                                                   api_name="share_export_watch", show_progress="hidden")
    zip_btn.click(bind(download, ctx), [bundle], [status, zipped], api_name="share_download")
    push_btn.click(bind(upload, ctx), [bundle, hub_repo, hub_token, private], [status], api_name="share_upload")
    cmp_btn.click(bind(compare, ctx), [sae_a, sae_b], [status, cmp_plot, cmp_table], api_name="share_compare")
    on_show(ctx, bind(refresh, ctx), [sae, sae_a, sae_b, bundle, expl_sae],
            [sae, sae_a, sae_b, bundle, model, expl_sae, cat_model], api_name="share_list")


if __name__ == "__main__":  # a quick look at this page alone
    from mistudio_core.platform.store import Store

    with gr.Blocks() as demo:
        build(AppContext(store=Store()))
    demo.launch()
