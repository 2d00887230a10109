"""Labeling tab: name SAE features with an LLM — OpenAI, or any OpenAI-compatible server (Ollama, vLLM,
llama.cpp server, LM Studio) by base URL — and score each label by detection.

The API key typed here stays in this process's memory (`mistudio_core.labeling.keys`); the job spec gets only a
reference to it. Handlers are plain functions of `(ctx, ...)` returning a status Markdown first; the layout and
event wiring are in `build` at the bottom.
"""
from __future__ import annotations

import os
import time
from typing import Any
import sys

import gradio as gr

import mistudio_core.labeling.job as label_job  # registers the "label" job kind
from mistudio_core import spec as front_door
from mistudio_core.platform.errors import ValidationError
from mistudio_core.labeling import LabelStore, keys
from mistudio_core.features.render import score_card_html
from mistudio_core.labeling.client import LOCAL_URL, PRESETS, ProviderConfig, make_client
from mistudio_core.labeling.local import WEAK_MODELS
from mistudio_core.labeling.prompts import DEFAULT_SYSTEM, DEFAULT_TEMPLATE, build_messages
from mistudio_core.labeling.scoring import split_examples
from mistudio_core.labeling.spec import parse_indices

from .common import choices, fmt_metric, guarded, ok, pick, require_writable, table
from .context import AppContext

SELECTIONS = {"All live features": "live", "Only the features listed": "indices"}
_OLD_SELECTIONS = {"Feature indices": "indices"}  # the radio's former wording, still accepted from API callers
LABEL_COLUMNS = {"index": "feature", "label": "label", "category": "category", "source": "source",
                 "accuracy": "detection accuracy", "chance": "chance", "fuzz_accuracy": "fuzzing accuracy",
                 "fuzz_chance": "fuzzing chance", "note": "why no score", "model": "model"}


def provider_help() -> str:
    """What to set, shown before anything is configured."""
    env = "is set in the app's environment and will be used" if os.environ.get(keys.ENV_VAR) else "is not set"
    return (f"**Provider.** OpenAI needs an API key: `OPENAI_API_KEY` {env}; or type a key below (kept in this "
            "process's memory only — never saved, logged or exported). A local server needs no key: pick a preset "
            "(Ollama: run `ollama serve` and `ollama pull llama3.2`, base URL `http://localhost:11434/v1`; vLLM "
            "`:8000/v1`; llama.cpp server `:8080/v1`; LM Studio `:1234/v1`), then **Test connection**. "
            f"**No key, no server:** the preset *Local model* runs a chat model registered in Models inside this "
            f"app (base URL `{LOCAL_URL}`, model = its id). The built-in `smollm2-135m-instruct` is a **weak "
            "labeler** (135M parameters: rough labels, scores near chance) — good for trying the loop offline.")


def local_models_note(ctx: AppContext) -> str:
    """The models the local provider can use, the weak ones marked."""
    ids = [m["id"] for m in ctx.store.list("models")]
    if not ids:
        return "No model registered yet for local labeling (add one in the Models tab)."
    shown = ", ".join(f"`{i}`" + (" (weak labeler)" if i in WEAK_MODELS else "") for i in ids)
    return f"Models for the local provider: {shown}."


def apply_preset(preset: str) -> tuple[str, str]:
    url, model = PRESETS.get(preset, ("", ""))
    return url, model


def preset_changed(preset: str) -> tuple[str, str]:
    """The connection test's answer and model list, cleared: they were about the previous provider."""
    return f"Provider set to **{preset}**: press **Test connection** to check it.", ""


def _provider(base_url: str, model: str, price_in: float, price_out: float, timeout: float,
              json_mode: bool) -> ProviderConfig:
    if not (base_url or "").strip():
        raise ValidationError("No provider configured: choose a preset (OpenAI, Ollama, ...) or type the base URL "
                              "of an OpenAI-compatible server, and a model name.")
    return ProviderConfig(base_url=base_url, model=model, price_in_per_1m=float(price_in or 0),
                          price_out_per_1m=float(price_out or 0), timeout_s=float(timeout or 60),
                          json_mode=bool(json_mode))


def _key(cfg: ProviderConfig, api_key: str) -> str | None:
    key = (api_key or "").strip() or os.environ.get(keys.ENV_VAR)
    if cfg.needs_key and not key:
        raise ValidationError("OpenAI needs an API key: type it in the API key field (kept in memory only) or "
                              "start the app with OPENAI_API_KEY set. Or choose a local server preset.")
    return key


@guarded(2)
def test_connection(ctx: AppContext, base_url: str, model: str, api_key: str, timeout: float) -> tuple[str, str]:
    """Lists the server's models (or sends a 1-token chat) and says whether the model is there."""
    require_writable(ctx)  # a public demo must not make requests to URLs its visitors type
    cfg = _provider(base_url, model, 0, 0, min(float(timeout or 20), 20), False)
    info = make_client(cfg, _key(cfg, api_key), store=ctx.store).test_connection()
    listed = ", ".join(f"`{m}`" for m in info["models"][:20]) or "(not listed)"
    return ok(f"Connected to {cfg.base_url}: {info['note']}."), f"Models: {listed}"


def reset_template() -> tuple[str, str]:
    return DEFAULT_SYSTEM, DEFAULT_TEMPLATE


@guarded(2)
def preview_prompt(ctx: AppContext, sae_id: str | None, index: float, n_top: float, system: str,
                   template: str) -> tuple[str, str]:
    """The prompt one feature would get (no LLM call)."""
    feature = label_job.load_features(ctx.store, _need_sae(sae_id)).feature(int(index or 0))
    shown, _ = split_examples(feature, int(n_top or 10), 1)
    msgs = build_messages(feature, shown, int(index or 0), template, system)
    return ok(f"Prompt of feature {int(index or 0)}."), "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in msgs)


def _need_sae(sae_id: str | None) -> str:
    if not sae_id:
        raise ValidationError("No SAE selected. Train or import one, extract its features (Features tab), then "
                              "pick it here.")
    return sae_id


@guarded(2)
def start_job(ctx: AppContext, sae_id, base_url, model, api_key, price_in, price_out, timeout, json_mode,
              selection, indices_text, only_unlabeled, score, concurrency, n_top, system,
              template, fuzz: bool = True) -> tuple[str, str | None]:
    """Submit a "label" job; the spec holds a key *reference*, never the key. Returns (status, job id)."""
    require_writable(ctx)
    cfg = _provider(base_url, model, price_in, price_out, timeout, json_mode)
    _key(cfg, api_key)  # no key for OpenAI -> say what to set, now
    mode = SELECTIONS.get(selection) or _OLD_SELECTIONS.get(selection, selection or "live")
    spec = front_door.build(  # no features yet -> said now, not in the job
        "label", store=ctx.store, sae_id=_need_sae(sae_id), provider=cfg.to_dict(),
        key_ref=keys.remember_key(api_key) if (api_key or "").strip() else None, selection=mode,
        indices=parse_indices(indices_text) if mode == "indices" else [], only_unlabeled=bool(only_unlabeled),
        score=bool(score), fuzz=bool(fuzz), concurrency=int(concurrency or 4), n_top_examples=int(n_top or 10),
        system_prompt=system or DEFAULT_SYSTEM, template=template or DEFAULT_TEMPLATE)
    est = front_door.estimate("label", spec, ctx.store)
    if ctx.jobs is None:
        raise ValidationError("The job runner is not running in this app; use the CLI instead: python -m "
                              f"mistudio_core label run --sae {spec['sae_id']} --base-url {cfg.base_url} --model "
                              f"{cfg.model}")
    job_id = ctx.jobs.submit("label", spec, name=f"label {spec['sae_id']}")
    tokens = est["prompt_tokens"] + est["completion_tokens"]
    return ok(f"Labeling job `{job_id}` queued ({cfg.model} at {cfg.base_url}): {est['features']:,} features, "
              f"estimated ~{tokens:,} tokens ≈ ${est['cost_usd']:.4f}."), job_id


def job_summary(ctx: AppContext, job_id: str | None) -> str:
    """Status, progress, tokens used and cost so far of a labeling job."""
    if not job_id or ctx.jobs is None:
        return "No labeling job yet."
    record = ctx.jobs.get(job_id)
    p, m = record.get("progress") or {}, record.get("result") or record.get("metrics") or {}
    parts = [f"Job `{job_id}`: **{record['status']}**"]
    if p.get("total"):
        parts.append(f"{p.get('step', 0):,} of {p['total']:,} features")
    if m:
        tokens = (m.get("prompt_tokens") or 0) + (m.get("completion_tokens") or 0)
        parts.append(f"labeled {m.get('labeled', 0):,}, failed {m.get('failed', 0):,}, skipped "
                     f"{(m.get('skipped_manual') or 0) + (m.get('skipped_done') or 0):,}")
        parts.append(f"{tokens:,} tokens · est. cost ${float(m.get('cost_usd') or 0):.4f}")
    if record.get("error"):
        parts.append(f"— {record['error']}")
    return " · ".join(parts)


def watch_job(ctx: AppContext, job_id: str | None, poll_s: float = 1.0):
    """Yield the summary until the job ends (this only watches; the runner does the work)."""
    while True:
        # The status is read before the summary: a job that ends between the two reads gets one more pass, so the
        # last line shown is always the final one.
        active = bool(job_id) and ctx.jobs is not None and ctx.jobs.get(job_id)["status"] in ("queued", "running")
        yield job_summary(ctx, job_id)
        if not active:
            return
        time.sleep(poll_s)


@guarded(2)
def cancel_job(ctx: AppContext, job_id: str | None) -> tuple[str, str]:
    require_writable(ctx)
    if not job_id or ctx.jobs is None:
        raise ValidationError("No labeling job to cancel.")
    ctx.jobs.cancel(job_id)
    return ok(f"Cancel requested for `{job_id}`; labels already answered are kept."), job_summary(ctx, job_id)


@guarded(2)
def resume_job(ctx: AppContext, job_id: str | None, api_key: str) -> tuple[str, str]:
    """Resume a stopped job; a key typed now re-binds the spec's key reference (after an app restart)."""
    require_writable(ctx)
    if not job_id or ctx.jobs is None:
        raise ValidationError("No labeling job to resume.")
    ref = (ctx.jobs.get(job_id).get("spec") or {}).get("key_ref")
    if (api_key or "").strip():
        if not ref:
            raise ValidationError("This job was started without a typed key; set OPENAI_API_KEY or start a new job "
                                  "with the key typed in.")
        keys.remember_key(api_key, ref=ref)
    ctx.jobs.resume(job_id)
    return ok(f"Job `{job_id}` queued again; it skips features it already labeled."), job_summary(ctx, job_id)


@guarded(2)
def labels_table(ctx: AppContext, sae_id: str | None) -> tuple[str, Any]:
    """Every label of the SAE with its detection score next to chance, so you see which labels to trust."""
    entries = LabelStore(ctx.store, _need_sae(sae_id)).all()
    rows = [{**e, "index": i, "accuracy": fmt_metric((e.get("score") or {}).get("accuracy")),
             "chance": fmt_metric((e.get("score") or {}).get("chance")),
             "fuzz_accuracy": fmt_metric((e.get("fuzzing") or {}).get("accuracy")),
             "fuzz_chance": fmt_metric((e.get("fuzzing") or {}).get("chance")), "note": blank_score_reason(e)}
            for i, e in sorted(entries.items())]
    blank = sum(bool(r["note"]) for r in rows)
    why = f" {blank:,} without a score: the column *why no score* says why." if blank else ""
    return ok(f"{len(rows):,} labels on `{sae_id}`.{why}"), table(rows, LABEL_COLUMNS)


def blank_score_reason(entry: dict) -> str:
    """Why a label's score cells are blank ("" when both scores are there)."""
    source = entry.get("source")
    if source == "manual":
        return "manual label: only LLM labels are scored"
    if source == "neuronpedia":
        return "imported from Neuronpedia: scored there, not here"
    if not entry.get("score"):
        return ("not scored: the job ran with scoring off, the feature had too few examples to score, or the "
                "scorer's answers could not be read (see the job's log)")
    if not entry.get("fuzzing"):
        return "no fuzzing score: fuzzing was off for the job, or its answers could not be read"
    return ""


@guarded(2)
def score_card(ctx: AppContext, sae_id: str | None, index: float) -> tuple[str, str]:
    """One label's score card: detection and fuzzing accuracy, each beside its chance level."""
    i = int(index or 0)
    entry = LabelStore(ctx.store, _need_sae(sae_id)).get(i)
    if entry is None:
        raise ValidationError(f"Feature {i} has no label yet; label it (Start labeling) or type one in the Features "
                              "tab.")
    return ok(f"Score card of feature {i}."), score_card_html(entry)


def labels_after_job(ctx: AppContext, sae_id: str | None, job_id: str | None) -> tuple[Any, Any]:
    """The labels table after a job ran; after a start that failed, leave the page (and its message) alone."""
    if not job_id or not sae_id:
        return gr.skip(), gr.skip()
    return labels_table(ctx, sae_id)


def refresh(ctx: AppContext, sae_id: str | None, job_id: str | None) -> tuple[Any, str | None, str]:
    """SAE choices, and re-attach to the latest labeling job (nothing is keyed on the browser session)."""
    items = choices(ctx.store.list("saes"))
    if not job_id and ctx.jobs is not None:
        jobs = ctx.jobs.list("label")
        job_id = max(jobs, key=lambda r: r.get("created") or 0)["id"] if jobs else None
    return gr.update(choices=items, value=pick(items, sae_id)), job_id, job_summary(ctx, job_id)


def build(ctx: AppContext) -> None:
    from .labeling_layout import layout  # the widgets and their wiring, kept apart from the handlers

    layout(ctx, sys.modules[__name__])


if __name__ == "__main__":  # a quick look at this page alone
    from mistudio_core.platform.store import Store

    with gr.Blocks() as demo:
        build(AppContext(store=Store()))
    demo.launch()
