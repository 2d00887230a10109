"""The end of a "train" job: rebuild SAEs from the final checkpoint, evaluate them, register them exactly once.

Every step here can be killed and repeated: evaluations finished before a kill are kept in `runs/<id>/evals/`
and reused, and each SAE's library id is derived from the job id (`library_id`), so registering again after a
kill finds the SAE already in the library (the library folder itself appears atomically, evaluations included).
"""
from __future__ import annotations

import time

from ..platform.errors import ValidationError
from ..platform.store import read_json, slugify, write_json_atomic

EVALS = "evals"
TRAIN_BATCH_KEYS = ("loss", "mse", "l1", "aux_loss", "l0", "explained_variance", "dead_fraction", "tokens")


def evaluation_plan(store, s, tok) -> list[tuple[str, object, int]]:
    """`[(dataset_id, Tokenized, n_contexts)]`: the training dataset's held-out slice, then each out-of-domain
    dataset's. Checked before training, so a dataset with too few held-out contexts costs no training time."""
    from .evals import DEFAULT_CONTEXTS, split_tokens
    from ..data.tokenize import load_tokenized

    plan = []
    for dataset_id in [s.dataset_id, *s.eval_datasets]:
        t = tok if dataset_id == s.dataset_id else load_tokenized(store, dataset_id, s.model_id)
        available = len(t.split_ids()[1])
        n = s.eval_contexts or min(DEFAULT_CONTEXTS, available)
        split_tokens(t, "heldout", n, dataset_id)  # raises, naming the fix, when there are too few
        plan.append((dataset_id, t, n))
    return plan


def library_id(job_id: str, name: str, hook: str, index: int, n_saes: int) -> str:
    """The library id of SAE `index` of a job: the same on every attempt, unique across jobs."""
    suffix = job_id.rsplit("-", 1)[-1] + (f"-{index}" if n_saes > 1 else "")
    return f"{slugify(f'{name}-{hook}')}-{suffix}"


def saes_from_checkpoint(tensors: dict, state: dict) -> list:
    """The SAEs of a final checkpoint, as the trainer would have returned them."""
    import torch

    from .config import SAEConfig
    from .model import SAE

    out = []
    for i, cfg in enumerate(state["configs"]):
        sae = SAE(SAEConfig.from_dict(cfg))
        with torch.no_grad():
            for kind, named in (("param", sae.named_parameters()), ("buffer", sae.named_buffers())):
                for name, t in named:
                    t.copy_(tensors[f"{i}.{kind}.{name}"])
        sae.feature_frequency = tensors[f"{i}.fire_count"].double() / max(state["fire_tokens"][i], 1)
        sae.train_summary = dict(steps=state["step"], tokens_seen=state["tokens_seen"],
                                 train_config=state["train_configs"][i], final_metrics={})
        out.append(sae)
    return out


def train_batch_metrics(ctx, index: int, n_saes: int) -> dict:
    """The last reported training-batch numbers of SAE `index` (from the job's metric history)."""
    history = ctx.registry.metrics_history(ctx.job_id)
    if not history:
        return {}
    row, suffix = history[-1], ("" if n_saes == 1 else f"/{index}")
    out = {k: row.get(k + suffix) for k in TRAIN_BATCH_KEYS if row.get(k + suffix) is not None}
    return dict(out, step=row["step"]) if out else {}


def finish(ctx, s, saes: list, loaded, plan) -> list[str] | None:
    """Evaluate and register each SAE not yet in the library; returns the ids (None if asked to stop)."""
    from .library import register_sae

    ids = []
    for i, sae in enumerate(saes):
        hook = sae.cfg.hook_name or s.hook_names[0]
        sae_id = library_id(ctx.job_id, s.name, hook, i, len(saes))
        if not ctx.store.exists("saes", sae_id):
            records = []
            for dataset_id, tok, n in plan:
                record = _evaluation(ctx, s, i, len(saes), sae, hook, loaded, dataset_id, tok, n)
                if record is None:
                    return None
                records.append(record)
            summary = getattr(sae, "train_summary", None) or {}
            provenance = dict(model_id=s.model_id, hook_name=hook, dataset_id=s.dataset_id, source="trained",
                              tokens_seen=summary.get("tokens_seen"), job_id=ctx.job_id)
            register_sae(ctx.store, sae, f"{s.name}-{hook}", provenance=provenance, sae_id=sae_id, evals=records,
                         train_batch_metrics=train_batch_metrics(ctx, i, len(saes)),
                         record={"train_config": summary.get("train_config"), "job_spec": s.to_dict()})
            ctx.log(f"registered SAE {sae_id}")
        ids.append(sae_id)
    return ids


def _evaluation(ctx, s, i: int, n_saes: int, sae, hook: str, loaded, dataset_id: str, tok, n: int) -> dict | None:
    """One evaluation of SAE i on a dataset's held-out slice; a finished one is read back instead of redone."""
    from .evals import eval_key, evaluate_record

    path = ctx.run_dir / EVALS / f"{i}__{eval_key(dataset_id, 'heldout')}.json"
    if path.is_file():
        return read_json(path)
    what = f"Evaluating SAE {i + 1}/{n_saes} on {dataset_id} held-out"
    ctx.log(f"{what} ({n} contexts)")

    def progress(frac: float, msg: str) -> None:
        ctx.registry.update(ctx.job_id, message=f"{what}: {msg}.", heartbeat=time.time())

    try:
        record = evaluate_record(loaded, sae, hook, tok, dataset_id, "heldout", n, downstream=s.eval_downstream,
                                 progress=progress, should_stop=ctx.should_stop)
    except ValidationError as e:
        raise ValidationError(f"Training finished, but evaluating SAE {i + 1} on {dataset_id} failed: {e} "
                              "Fix that, then resume the job (training is not repeated).") from e
    if record is None:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, record)
    return record
