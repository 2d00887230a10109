"""The "label" job kind: `run(spec, ctx)` labels and scores a selection of features in the background.

Where the API key travels: the spec (saved in the job registry) holds only `key_ref`; the key itself sits in
`keys._KEYS`, a dict in this process's memory, put there by the page or CLI just before `submit`. The runner is
a thread of the same process, so `lookup_key(key_ref)` finds it. Nothing writes it: not the spec, the metrics,
the checkpoint (token totals only), the log, nor the labels. After an app restart the key is gone: resuming then
uses `$OPENAI_API_KEY`, or fails asking for the key to be typed again (`remember_key(key, ref=spec["key_ref"])`).

Resuming: labels are saved as they arrive, each tagged with the spec's fingerprint; a resumed run skips what
carries it, and the token/cost totals continue from the job's checkpoint.
"""
from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

from ..platform.errors import ValidationError
from ..jobs.kinds import register_job
from ..platform.store import write_json_atomic
from .engine import Totals, estimate as label_estimate, label_features
from .keys import lookup_key
from ..platform.records import spec_checks
from .spec import LabelSpec

MAX_FAILURES_KEPT = 200
CHECKPOINT_EVERY_S = 2.0


def load_features(store, sae_id: str) -> Any:
    """The SAE's extracted features (`FeatureResults`); a seam tests replace with in-memory features."""
    from ..features.results import FeatureResults

    return FeatureResults.load(store, sae_id)


def _restore_totals(ctx) -> Totals:
    loaded = ctx.load_checkpoint()
    if not loaded:
        return Totals()
    state = loaded[1].get("totals") or {}
    totals = Totals(**{k: v for k, v in state.items() if k in Totals.__dataclass_fields__})
    totals.failed, totals.failures = 0, []  # a resumed run retries the failed features
    return totals


def check_inputs(store, s: LabelSpec) -> None:
    """Refuse an SAE without extracted features (reads one file; the features load only when that fails, for
    their message naming the fix)."""
    from ..features.results import features_dir

    if not (features_dir(store, s.sae_id) / "meta.json").is_file():
        load_features(store, s.sae_id)


build, validate = spec_checks(LabelSpec, check_inputs)  # the "label" kind's spec.build / spec.validate


def estimate(store, spec: dict, probe: bool = True) -> dict:
    """`spec.estimate("label", ...)`: the features to do and the tokens and cost they would take
    (`engine.estimate`), as the Labeling tab's Start shows it."""
    from .store import LabelStore

    s = LabelSpec.from_dict(spec)
    return label_estimate(s, load_features(store, s.sae_id), LabelStore(store, s.sae_id))


def resolve_key(spec: LabelSpec) -> str | None:
    key = lookup_key(spec.key_ref)
    if spec.provider_config.needs_key and not key:
        raise ValidationError("The OpenAI API key is kept in memory only and is no longer there (the app was "
                              "restarted?). Type the key again in the Labeling tab and resume the job, or set "
                              "OPENAI_API_KEY before starting the app.")
    return key


@register_job("label", accelerator=False, validate=validate)  # network-bound: may run beside training
def run(spec: dict, ctx) -> dict:
    """Label `spec` (a `LabelSpec` dict); returns the totals (tokens, cost, labeled, failed, skipped)."""
    s = LabelSpec.from_dict(spec)
    key = resolve_key(s)
    features = load_features(ctx.store, s.sae_id)
    totals = _restore_totals(ctx)
    failures_path = ctx.run_dir / "failures.json"

    last = [0.0]

    def save() -> None:
        last[0] = time.time()
        ctx.checkpoint({}, {"totals": asdict(totals) | {"failures": []}})
        if totals.failures:
            write_json_atomic(failures_path, totals.failures[-MAX_FAILURES_KEPT:])

    def report(done: int, total: int, metrics: dict) -> None:
        ctx.report(done, total=total, **metrics)
        if time.time() - last[0] >= CHECKPOINT_EVERY_S:  # labels are saved anyway; this keeps token totals
            save()

    try:
        label_features(ctx.store, s, key, features, totals, report=report, should_stop=ctx.should_stop,
                       log=ctx.log)
    finally:
        save()
    return totals.metrics() | {"failures": totals.failures[-20:]}
