"""Job kind "benchmark": the suite on one library SAE, through the same registry, runner and CLI path as
"evaluate". Spec: `BenchSpec.to_dict()`. Bad input (model, width, too few contexts, a probing task with one class
or fewer than 20 examples per class, a missing local labeler) is refused by `submit_benchmark` before queueing and
again when the job starts, before a model loads.

Progress: steps count hundredths of parts (`total` = 100 × parts) and the metrics carry one fraction per part
(`progress_core`, `progress_absorption`, …), so a page can draw one bar per part. The result is stored under
`saes/<id>/bench/` (results.py); the core part is also stored as an ordinary evaluation (`sae/evals.py`), so
it shows in the library's evaluation table. A cancel stores nothing.
"""
from __future__ import annotations

from ..jobs.kinds import register_job
from ..platform.records import spec_checks
from .spec import BenchSpec, check_inputs


build, validate = spec_checks(BenchSpec, check_inputs)  # the "benchmark" kind's spec.build / spec.validate


def submit_benchmark(registry, spec: dict, owner: str | None = None) -> str:
    """Check the spec against the store (`validate`), then queue the job; returns its id."""
    s = validate(spec, registry.store)
    return registry.submit("benchmark", s.to_dict(), owner=owner, name=f"{s.sae_id}-suite")


def _reporter(ctx, parts: list[str]):
    done = {p: 0.0 for p in parts}

    def report(part: str, fraction: float, message: str) -> None:
        done[part] = max(done[part], min(1.0, fraction))
        ctx.report(round(100 * sum(done.values())), total=100 * len(parts),
                   **{f"progress_{p}": round(f, 3) for p, f in done.items()})
        if fraction >= 1.0:
            ctx.log(f"{part}: {message}")
    return report


@register_job("benchmark", validate=validate)
def run(spec: dict, ctx) -> dict:
    from ..labeling.keys import lookup_key
    from ..sae.eval_job import load_inputs
    from ..sae.evals import store_eval
    from .results import store_result
    from .suite import run_suite

    s = BenchSpec.from_dict(spec)
    model_id, hook, tok, loaded, sae = load_inputs(ctx.store, s, check_inputs)
    ctx.log(f"benchmark of {s.sae_id} ({', '.join(s.parts)}) on {s.dataset_id} {s.split} with {model_id}")
    record = run_suite(s, loaded, sae, hook, tok, store=ctx.store, api_key=lookup_key(s.key_ref),
                       report=_reporter(ctx, s.parts), should_stop=ctx.should_stop)
    if record is None:
        return {"stopped": True}
    if "core" in record:
        store_eval(ctx.store, s.sae_id, dict(record["core"], model_id=model_id))
    path = store_result(ctx.store, s.sae_id, record)
    from .results import headline

    return {"sae_id": s.sae_id, "dataset_id": s.dataset_id, "split": s.split, "suite_version":
            record["suite_version"], "seconds": record["seconds"], "headline": headline(record),
            "path": str(path.relative_to(ctx.store.home))}
