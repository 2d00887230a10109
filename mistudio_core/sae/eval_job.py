"""Job kind "evaluate": score any library SAE (trained here or imported) on a split of any tokenized dataset.

Spec (see `EvalJobSpec`): `{sae_id, dataset_id, split: "heldout"|"train", n_contexts, downstream, batch_size,
model_id, device}`. The result is stored as `saes/<sae_id>/evals/<dataset>__<split>.json` (`sae/evals.py`,
atomic); the job's result is `{sae_id, dataset_id, split, n_contexts, metrics}`. Progress steps count contexts;
a cancel stops between batches and stores nothing. Inputs that cannot work — a dataset tokenized for another
model, too few contexts in the split, an SAE whose width is not the model's — are refused at submit time with
the fix in the message, before a model is loaded (`submit_eval` checks them before queueing; the job again).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from ..platform.errors import NotFoundError, ValidationError
from ..platform.records import from_dict, spec_checks
from ..jobs.kinds import register_job


@dataclass
class EvalJobSpec:
    sae_id: str
    """Library SAE to evaluate."""
    dataset_id: str
    """Dataset tokenized for the SAE's model."""
    split: str = "heldout"
    """"heldout" (the tokenization's held-out slice) or "train" (the contexts training streams read)."""
    n_contexts: int = 64
    """Contexts evaluated (the first of the split); the split must have this many."""
    downstream: bool = True
    """Include CE loss clean/spliced/zero-ablated, CE loss recovered and KL (3 model forwards per batch)."""
    batch_size: int = 8
    """Contexts per forward pass."""
    model_id: str | None = None
    """Model to run; None: the SAE's own (`model_id` in its manifest)."""
    device: str | None = None
    """Device; None: CUDA if available, else CPU."""

    def __post_init__(self):
        from .evals import SPLITS

        if not self.sae_id or not self.dataset_id:
            raise ValidationError("An evaluation needs an SAE and a dataset; pick both.")
        if self.split not in SPLITS:
            raise ValidationError(f"Unknown split {self.split!r}; use one of {', '.join(SPLITS)}.")
        for name in ("n_contexts", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValidationError(f"{name} must be a whole number >= 1 (got {value!r}).")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "EvalJobSpec":
        return from_dict(cls, d, "evaluation spec")


def check_inputs(store, s: EvalJobSpec) -> str:
    """Refuse what cannot work, naming the fix (reads manifests and small JSON only); returns the model id."""
    from .evals import SPLIT_WORDS
    from ..platform.store import read_json
    from ..data.tokenize import heldout_of, tokenized_dir

    sae = store.manifest("saes", s.sae_id)
    model_id = s.model_id or sae.get("model_id")
    if not model_id:
        raise ValidationError(f"SAE {s.sae_id} does not say which model it reads; choose the model to run it with.")
    if not sae.get("hook_name"):
        raise ValidationError(f"SAE {s.sae_id} does not say which hook point it reads; it cannot be evaluated.")
    if not store.exists("models", model_id):
        raise NotFoundError(f"SAE {s.sae_id} reads activations of {model_id!r}, which is not in the model library. "
                            f"Add it first (Models tab, or: python -m mistudio_core models add-hub {model_id}).")
    width = store.manifest("models", model_id).get("d_model")
    if width and sae.get("d_in") and int(width) != int(sae["d_in"]):
        raise ValidationError(f"SAE {s.sae_id} reads vectors of width {sae['d_in']}, but {model_id} has width "
                              f"{width}: it was made for another model. Evaluate it with the model it was trained on.")
    dataset = store.manifest("datasets", s.dataset_id)
    if model_id not in (dataset.get("tokenizations") or []):
        have = ", ".join(dataset.get("tokenizations") or []) or "no model yet"
        raise NotFoundError(f"SAE {s.sae_id} reads {model_id}'s activations, but dataset {s.dataset_id!r} is "
                            f"tokenized for {have}. Tokenize it for {model_id} first (Datasets tab, or: python -m "
                            f"mistudio_core datasets tokenize {s.dataset_id} --model {model_id}).")
    folder = tokenized_dir(store, s.dataset_id, model_id)
    n_all = int(read_json(folder / "stats.json")["n_contexts"])
    held = heldout_of(read_json(folder / "config.json"), n_all)["n_contexts"]
    available = held if s.split == "heldout" else n_all - held
    if s.n_contexts > available:
        raise ValidationError(f"Dataset {s.dataset_id!r} has {available} {SPLIT_WORDS[s.split]} contexts for "
                              f"{model_id}, fewer than the {s.n_contexts} asked for. Evaluate on at most {available}"
                              " contexts, or re-tokenize it with more text (or a larger heldout_fraction).")
    return model_id


build, validate = spec_checks(EvalJobSpec, check_inputs)  # the "evaluate" kind's spec.build / spec.validate


def submit_eval(registry, spec: dict, owner: str | None = None) -> str:
    """Check the spec against the store (`validate`), then queue the job; returns its id."""
    s = validate(spec, registry.store)
    return registry.submit("evaluate", s.to_dict(), owner=owner, name=f"{s.sae_id}-{s.dataset_id}")


def load_inputs(store, s, check) -> tuple:
    """(model id, hook, tokenization, loaded model, SAE) a job scoring library SAE `s.sae_id` on `s.dataset_id`
    reads, after `check(store, s)` (which returns the model id) refused what cannot work."""
    from ..model.models import load_model
    from ..data.tokenize import load_tokenized
    from .library import load_library_sae

    model_id = check(store, s)
    hook = store.manifest("saes", s.sae_id)["hook_name"]
    tok = load_tokenized(store, s.dataset_id, model_id)
    loaded = load_model(store, model_id, device=s.device)
    return model_id, hook, tok, loaded, load_library_sae(store, s.sae_id, device=loaded.device)


@register_job("evaluate", validate=validate)
def run(spec: dict, ctx) -> dict:
    """Evaluate, store the record, return its summary (or `{"stopped": True}` after a cancel)."""
    from .evals import evaluate_record, store_eval
    from .metrics import flat_values

    s = EvalJobSpec.from_dict(spec)
    model_id, hook, tok, loaded, sae = load_inputs(ctx.store, s, check_inputs)
    ctx.log(f"evaluating {s.sae_id} on {s.dataset_id} ({s.split}, {s.n_contexts} contexts) with {model_id}")

    def progress(frac: float, msg: str) -> None:
        ctx.report(round(frac * s.n_contexts), total=s.n_contexts)

    record = evaluate_record(loaded, sae, hook, tok, s.dataset_id, s.split, s.n_contexts, downstream=s.downstream,
                             batch_size=s.batch_size, progress=progress, should_stop=ctx.should_stop)
    if record is None:
        return {"stopped": True}
    store_eval(ctx.store, s.sae_id, dict(record, model_id=model_id))
    return {"sae_id": s.sae_id, "dataset_id": s.dataset_id, "split": s.split, "n_contexts": record["n_contexts"],
            "metrics": flat_values(record["metrics"])}
