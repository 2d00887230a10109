"""Job kind "train": train one or more SAEs on a model's activations, evaluate them on held-out text, and add
them to the library. The Training tab and `python -m mistudio_core train` submit this same job.

Spec (plain JSON, see `TrainJobSpec`)::

    {"name": "l8-topk", "model_id": "smollm2-135m-instruct", "dataset_id": "sotu",
     "hook_names": ["blocks.8.hook_resid_post"], "train": {TrainConfig fields},
     "sae_configs": null | [SAEConfig dicts, d_in may be left out], "stream": {ActivationStream options},
     "eval_contexts": null | n, "eval_datasets": ["other-dataset", ...], "eval_downstream": true}

Without `sae_configs`, one SAE per hook is built from the train config. The stream reads only the tokenization's
train contexts (`tokenize.split_ids`); the final evaluation reads its held-out ones (and, optionally, the held-out
slice of each `eval_datasets` entry: out-of-domain text), so no reported number is on text the SAE trained on.

Phases, each safe to kill (resume repeats only the unfinished part, and ends as an uninterrupted run would):
  1. training — the trainer's checkpoint holds weights, Adam moments, counters and the step; the stream restarts
     at that step's batch, so the resumed computation is the uninterrupted one;
  2. evaluation — SAEs are rebuilt from the final checkpoint when the kill came after the last step; each finished
     evaluation is kept in `runs/<id>/evals/` and not redone;
  3. registration — each SAE's library id is derived from the job id (`library_id`), and the folder appears
     atomically, complete with its evaluations: an SAE already there is not added twice.

Failures a user can act on become clear messages: a NaN/inf loss stops the job and keeps the last good
checkpoint (a non-finite checkpoint is refused); running out of memory names the settings to lower; a dataset
without enough held-out contexts is refused before any training.
"""
from __future__ import annotations

import math
import time
from ..model.compute import resolve_model_dtype
from ..platform.errors import MistudioError, UnsupportedError, ValidationError
from .train_spec import TrainJobSpec, validate
from ..jobs.checkpoint import checkpoint_info
from ..jobs.kinds import register_job
from ..jobs.registry import CHECKPOINT_DIR


class TrainingDiverged(ValidationError):
    """The loss or the weights became NaN/inf."""


@register_job("train", validate=validate)
def run(spec: dict, ctx) -> dict:
    """Train, evaluate and register the SAEs; returns `{"sae_ids", "steps", "tokens_trained", "train_seconds",
    "tokens_per_s", "eval_seconds"}` (the last four for this attempt)."""
    s = validate(spec, ctx.store)  # the same check as at Validate and submit: the library may have changed
    from .distributed_launch import run_under_torchrun, torchrun_processes
    if nproc := torchrun_processes(spec):  # several GPUs visible: one torchrun rank per GPU
        return run_under_torchrun(spec, ctx, nproc)
    try:
        return train_and_register(s, ctx)
    except MistudioError:
        raise
    except Exception as e:  # noqa: BLE001 — translate the two failures a user can fix; re-raise the rest
        if _is_oom(e):
            raise UnsupportedError(
                f"Out of memory while training ({e}). Lower train.batch_tokens (tokens per step), the SAE width "
                "(train.d_sae or expansion_factor), or stream.contexts_per_forward, then resume the job.") from e
        if "nan" in str(e).lower().split() or isinstance(e, FloatingPointError):
            raise TrainingDiverged(_diverged_message(ctx, str(e))) from e
        raise


def _make_stream(s: TrainJobSpec, loaded, tok, start_batch: int, batch_tokens: int, cache=None, ctx=None,
                 groups=None, noise: dict | None = None):
    """The activation stream of a training: the tokenization's train contexts only, from batch `start_batch`
    (replayed from the activation cache `cache`, a manifest of train-split activations, when given)."""
    from ..model.activations import ActivationStream

    if cache is not None:
        from ..actcache.job import stream
        return stream(ctx, s, cache, loaded, start_batch, batch_tokens)

    train_ids, _ = tok.split_ids()
    dd = _dist()
    if dd is not None and groups is None:  # torchrun: this rank's share of the contexts and of every batch
        from .distributed import local_batch, shard_ids
        train_ids, batch_tokens = shard_ids(train_ids, dd), local_batch(batch_tokens, dd)
    hooks = groups.hooks if groups else s.hook_names  # distribute_saes: the whole batch, this rank's hooks only
    return ActivationStream(loaded.model, tok.tokens, hooks, batch_tokens=batch_tokens,
                            start_batch=start_batch, bos_token_id=tok.config.get("bos_token_id"),
                            context_ids=train_ids, **s.stream, **(noise or {}))


def train_and_register(s: TrainJobSpec, ctx) -> dict:
    from ..model.hooks import d_model
    from ..model.models import load_model
    from .trainer import train_saes
    from ..data.tokenize import load_tokenized
    from .train_finish import evaluation_plan, finish, saes_from_checkpoint

    from ..actcache.job import Stopped, noise_options, prepare, say

    dtype = resolve_model_dtype(s.model_dtype, s.device)
    say(ctx, f"loading model {s.model_id} ({dtype})")
    loaded = load_model(ctx.store, s.model_id, device=s.device, dtype=dtype)
    tok = load_tokenized(ctx.store, s.dataset_id, s.model_id)
    plan = evaluation_plan(ctx.store, s, tok)  # refuses too few held-out contexts before any training
    configs, tcfgs = _configs(s, d_model(loaded.model), tok.config)
    from .architectures.transcoder import capture_hooks, check_hooks
    check_hooks(loaded.model, configs, s.model_id)  # transcoders: both hooks on this model, equal widths
    s.hook_names = capture_hooks(s.hook_names, configs)  # ...and the stream/cache also capture their outputs
    first = tcfgs[0]
    try:
        cache = None if _dist() else prepare(ctx, s, loaded, tok, first)  # None: stream from the model
    except Stopped:
        return {"stopped": True}
    from .distributed_job import SAEGroups
    groups = SAEGroups.plan(ctx, configs, first)  # torchrun + distribute_saes: this rank's own SAEs
    resume = _resume_state(ctx)
    start = int(resume[1]["step"]) if resume else 0
    ctx.log(f"training {len(configs)} SAE(s) for {first.optim.total_steps} steps from step {start}")
    t0 = time.perf_counter()
    noise = noise_options(first, loaded)  # TrainConfig.data.token_noise: the live stream's share (a cache has its own)
    saes = train_saes(lambda b: _make_stream(s, loaded, tok, b, first.optim.batch_tokens, cache, ctx, groups, noise),
                      configs, tcfgs, on_metrics=_Reporter(ctx, len(groups.owned) if groups else len(configs)),
                      should_stop=ctx.should_stop, resume_from=resume, sync=groups.sync if groups else _sync(),
                      checkpoint=groups.checkpoint if groups else _Checkpointer(ctx, s, first.optim.total_steps),
                      owned=groups.owned if groups else None)
    train_seconds = time.perf_counter() - t0
    if _dist() is not None and not _dist().is_main:
        return {"worker": True}  # under torchrun only rank 0 evaluates and registers
    if ctx.stopped_on_request:
        return {"stopped": True}
    if groups is not None:
        saes = saes_from_checkpoint(*groups.final())  # every rank's SAEs, from their owners' final checkpoints
    if not saes and resume and start >= first.optim.total_steps:
        saes = saes_from_checkpoint(*resume)  # killed after the final checkpoint, before registering
    t1 = time.perf_counter()
    say(ctx, "evaluating on held-out text and registering the SAEs")
    sae_ids = finish(ctx, s, saes, loaded, plan)
    if sae_ids is None:
        return {"stopped": True}
    tokens = (first.optim.total_steps - start) * first.optim.batch_tokens
    return {"sae_ids": sae_ids, "steps": first.optim.total_steps, "tokens_trained": tokens,
            "train_seconds": round(train_seconds, 2), "tokens_per_s": round(tokens / max(train_seconds, 1e-9)),
            "eval_seconds": round(time.perf_counter() - t1, 2)}


def _dist():
    """The torchrun process group this job runs in (None: a single process)."""
    from .distributed import current
    return current()


def _sync():
    from .distributed import TorchSync
    return TorchSync() if _dist() is not None else None


def _resume_state(ctx):
    from .distributed_job import resume_state
    return resume_state(ctx)  # under torchrun every rank resumes from rank 0's (or the SAEs' owners') checkpoint


def _configs(s: TrainJobSpec, width: int, tok_config: dict):
    from .config import SAEConfig
    from .train_config import TrainConfig

    raw = s.train if isinstance(s.train, list) else [s.train]
    tcfgs = [TrainConfig.from_dict(t) for t in raw]
    meta = dict(model_name=s.model_id, dataset_path=s.dataset_id, context_size=tok_config.get("context_size"),
                prepend_bos=tok_config.get("prepend_bos", True))
    if s.sae_configs:
        configs = [SAEConfig.from_dict({"d_in": width, **c, "metadata": {**meta, **(c.get("metadata") or {})}})
                   for c in s.sae_configs]
    else:
        configs = [tcfgs[min(i, len(tcfgs) - 1)].sae_config(width, hook, **meta) for i, hook in
                   enumerate(s.hook_names)]
    if len(tcfgs) == 1:
        tcfgs = tcfgs * len(configs)
    for t in tcfgs:  # a job must survive kills: make sure the trainer offers periodic checkpoints
        if not t.runtime.checkpoint_every:
            t.runtime.checkpoint_every = max(1, min(100, t.optim.total_steps // 20))
    return configs, tcfgs


class _Reporter:
    """Trainer rows (one per SAE per report step) → one `ctx.report` per step; NaN loss stops the job."""

    def __init__(self, ctx, n_saes: int):
        self.ctx, self.n, self.rows = ctx, n_saes, {}

    def __call__(self, row: dict) -> None:
        if not all(math.isfinite(row.get(k, 0.0)) for k in ("loss", "mse")):
            raise TrainingDiverged(_diverged_message(self.ctx, f"loss {row.get('loss')} at step {row['step']}"))
        self.rows[row["sae"]] = row
        if len(self.rows) < self.n:
            return
        metrics = {}
        for i, r in sorted(self.rows.items()):
            suffix = "" if self.n == 1 else f"/{i}"
            metrics.update({f"{k}{suffix}": v for k, v in r.items() if k not in ("sae", "hook_name", "step",
                            "total_steps") and isinstance(v, (int, float))})
        self.rows = {}
        self.ctx.report(row["step"], total=row["total_steps"], **metrics)


class _Checkpointer:
    """Refuses non-finite weights (the last good checkpoint stays); throttles periodic saves by time."""

    def __init__(self, ctx, s: TrainJobSpec, total: int):
        self.ctx, self.every_s, self.total, self.last = ctx, s.checkpoint_seconds, total, 0.0

    def __call__(self, tensors: dict, state: dict) -> None:
        final = state["step"] >= self.total or self.ctx.should_stop()
        if not final and time.time() - self.last < self.every_s:
            return
        # weights, buffers and Adam moments must be finite; other state (e.g. a controller's NaN "unset") may not be
        bad = [k for k, t in tensors.items() if any(part in k for part in (".param.", ".buffer.", ".adam."))
               and t.is_floating_point() and not bool(t.isfinite().all())]
        if bad:
            raise TrainingDiverged(_diverged_message(self.ctx, f"non-finite values in {bad[:3]}"))
        self.ctx.checkpoint(tensors, state)
        self.last = time.time()


def _diverged_message(ctx, detail: str) -> str:
    info = checkpoint_info(ctx.run_dir / CHECKPOINT_DIR)
    kept = f"the last good checkpoint (step {info['step']}) is kept" if info else "no checkpoint was saved yet"
    return (f"Training diverged: {detail}. {kept[0].upper()}{kept[1:]}. Lower train.lr (or add lr_warmup_steps), "
            "check the activations for NaNs, and submit again or resume.")


def _is_oom(e: BaseException) -> bool:
    import torch

    oom = getattr(torch.cuda, "OutOfMemoryError", ())
    return (oom and isinstance(e, oom)) or (isinstance(e, RuntimeError) and "out of memory" in str(e).lower())
