"""The Training tab's widgets (layout only; `pages/training.py` wires them)."""
from __future__ import annotations

import gradio as gr

from mistudio_core.sae.config import TRAINABLE
from mistudio_core.sae.train_config import TrainConfig
from mistudio_core.sae.distributed_launch import launch_note

from .context import AppContext
from .training_form import NO_PRESET, advanced_widgets
from .training_charts import METRICS

L1_INFO = ("Standard SAEs only. λ weighs Σ z·‖W_dec‖ against the squared error summed over d_model, on inputs "
           "scaled to mean norm √d_model: ≈2 suits d_model 576 (≈2·√(d_model/576) in general). Values like 0.001 "
           "from other tools are on another scale and give an SAE that is not sparse. Or set a target L0.")
TARGET_INFO = ("Standard: λ is adjusted every step to reach this L0 (0 = use λ as given). JumpReLU: the L0 its "
               "penalty pulls toward (0 = k).")


def _recipe(ui: dict, d: dict) -> None:
    with gr.Row():
        ui["template"] = gr.Dropdown(label="Preset / template (quick: a short demo; quality: research-grade — "
                                           "Validate gives the time on this machine)",
                                     choices=[NO_PRESET], value="", allow_custom_value=False,
                                     elem_id="training-preset")
        ui["preset"] = ui["template"]  # the spec's name for it
        ui["name"] = gr.Textbox(label="Name", placeholder="e.g. l8-topk32")
    with gr.Row():
        ui["architecture"] = gr.Radio(list(TRAINABLE), value=d["architecture"], label="Architecture")
        ui["expansion_factor"] = gr.Number(d["expansion_factor"], label="Expansion factor", precision=0)
        ui["d_sae"] = gr.Number(0, label="Width d_sae (0 = expansion × d_model)", precision=0)
        ui["k"] = gr.Number(d["k"], label="k (topk: active latents per token)", precision=0)
    with gr.Row():
        ui["l1_coefficient"] = gr.Number(d["l1_coefficient"], label="L1 coefficient λ (standard)", info=L1_INFO)
        ui["target_l0"] = gr.Number(0, label="Target L0 (standard, jumprelu; 0 = off)", info=TARGET_INFO)
    with gr.Row():
        ui["lr"] = gr.Number(d["lr"], label="Learning rate")
        ui["batch_tokens"] = gr.Number(d["batch_tokens"], label="Batch (tokens)", precision=0)
        ui["steps"] = gr.Number(200, label="Steps", precision=0)
        ui["lr_warmup_steps"] = gr.Number(0, label="LR warm-up steps", precision=0)
        ui["lr_decay_steps"] = gr.Number(0, label="LR decay steps (at the end)", precision=0)
        ui["seed"] = gr.Number(0, label="Seed", precision=0)
    with gr.Row():
        ui["cache_mode"] = gr.Radio(["off", "use", "build"], value="use", label="Activation cache",
                                    info="use: reuse a matching cache or capture one; build: always capture; "
                                         "off: run the model every epoch")
        ui["cache_dtype"] = gr.Radio(["bfloat16", "float16", "float32"], value="bfloat16", label="Cache dtype")
        ui["cache_tokens"] = gr.Number(0, label="Tokens to cache (0 = what the run trains on)", precision=0)
    with gr.Accordion("Advanced: every other field of the spec (as on the CLI)", open=False,
                      elem_id="training-advanced"):
        with gr.Row():
            ui["autocast"] = gr.Radio(["off", "bf16", "fp16"], value=d["autocast"], label="Mixed precision (autocast)",
                                      info="bf16/fp16: the encoder's big product in low precision (GPUs); weights, "
                                           "optimizer and loss stay float32")
            ui["tf32"] = gr.Checkbox(d["tf32"], label="TF32 matmuls (CUDA)")
        gr.Markdown(launch_note(), elem_id="training-gpus")
        advanced_widgets(ui)


def layout(ctx: AppContext) -> dict:
    d = TrainConfig().flat()
    ui: dict = {}
    gr.Markdown("Train a sparse autoencoder on a hook point's activations. **TopK** fixes the number of active "
                "latents per token (k) and needs no coefficient; **standard** is ReLU + L1 (set λ or a target L0). "
                "Start queues a job: it keeps running if you close or reload the page.")
    with gr.Accordion("New training: ① data and hook → ② recipe → ③ validate and start", open=True):
        gr.Markdown("**① What to read**")
        with gr.Row():
            ui["dataset"] = gr.Dropdown(label="Dataset (tokenized for the model)", choices=[], allow_custom_value=True)
            ui["model"] = gr.Dropdown(label="Model", choices=[], allow_custom_value=True)
            ui["hooks"] = gr.Dropdown(label="Hook point(s) — several train in one pass", choices=[], multiselect=True,
                                      allow_custom_value=True, elem_id="training-hooks")
        ui["eval_datasets"] = gr.Dropdown(
            label="Also evaluate on (optional): datasets tokenized for the model, e.g. other-domain text",
            info="Every training ends with an evaluation on the dataset's held-out slice; these add their own "
                 "held-out slices.", choices=[], multiselect=True, allow_custom_value=True,
            elem_id="training-eval-datasets")
        gr.Markdown("**② Recipe** — start from a preset, then adjust")
        _recipe(ui, d)
        gr.Markdown("**③ Check the estimate, then start**")
        with gr.Row():
            ui["check_btn"] = gr.Button("Validate", scale=1)
            ui["start_btn"] = gr.Button("Start training", variant="primary", scale=1)
            ui["status"] = gr.Markdown(elem_id="training-status")
        with gr.Accordion("Templates (save, export, import)", open=False):
            with gr.Row():
                ui["tpl_name"] = gr.Textbox(label="Template name")
                ui["save_tpl_btn"] = gr.Button("Save as template")
                ui["export_tpl_btn"] = gr.Button("Export template")
                ui["import_tpl_btn"] = gr.Button("Import template")
            ui["tpl_file"] = gr.File(label="Template file (.json)", file_types=[".json"], height=80)
    with gr.Row():
        ui["job"] = gr.Dropdown(label="Job", choices=[], allow_custom_value=True, scale=3, elem_id="training-job")
        ui["cancel_btn"] = gr.Button("Cancel", scale=1)
        ui["resume_btn"] = gr.Button("Resume", scale=1)
        ui["delete_btn"] = gr.Button("Delete", variant="stop", scale=1)
    ui["card"] = gr.Markdown(elem_id="training-card")
    ui["chart"] = gr.Plot(label="Live metrics", show_label=False, elem_id="training-chart")  # a label hides a title
    ui["jobs"] = gr.Dataframe(label="Training jobs (newest first)", interactive=False, max_height=260,
                              elem_id="training-jobs")
    with gr.Accordion("Compare jobs", open=False):
        with gr.Row():
            ui["compare_jobs"] = gr.Dropdown(label="Jobs", choices=[], multiselect=True, allow_custom_value=True)
            ui["compare_metric"] = gr.Dropdown(list(METRICS), value="explained_variance", label="Metric")
            ui["compare_btn"] = gr.Button("Compare")
        ui["compare_chart"] = gr.Plot()
    return ui
