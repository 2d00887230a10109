"""The "export" job kind: SAELens or Neuronpedia bundle, optionally uploaded to the Hub.

The Hub token is never part of the spec (specs are stored in the registry): an upload from the UI runs in the
request with the token in memory; the job only writes the bundle. Every door (the Share tab, `export`) builds the
spec through `spec.build("export", ...)`; `validate` with the store refuses what the job would fail on.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from ..jobs.kinds import register_job
from ..platform.errors import ValidationError
from ..platform.records import from_dict, spec_checks
from .export_neuronpedia import export_neuronpedia
from .export_saelens import export_saelens

FORMATS = ("saelens", "neuronpedia")


@dataclass
class ExportSpec:
    sae_id: str = ""
    """Library SAE to export (required; empty is refused naming the fix)."""
    format: str = "saelens"
    """"saelens" (config + weights, loadable by SAELens) or "neuronpedia" (dashboards; needs extracted features)."""
    name: str | None = None
    """Bundle name (SAELens); None: the SAE's id."""
    batch_size: int = 128
    """Features read per batch (Neuronpedia)."""

    def __post_init__(self):
        if not self.sae_id:
            raise ValidationError("No SAE selected. Pick one from the library first.")
        if self.format not in FORMATS:
            raise ValidationError(f"Unknown export format {self.format!r}; use one of {FORMATS}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValidationError(f"batch_size must be a whole number >= 1 (got {self.batch_size!r}).")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ExportSpec":
        return from_dict(cls, d, "export spec")


def check_inputs(store, s: ExportSpec) -> None:
    """Refuse before queueing what the export would fail on: an unknown SAE; a Neuronpedia bundle without
    extracted features."""
    from ..features.results import features_dir

    store.manifest("saes", s.sae_id)
    if s.format == "neuronpedia" and not (features_dir(store, s.sae_id) / "meta.json").is_file():
        raise ValidationError(f"A Neuronpedia bundle needs extracted features (dashboards) and {s.sae_id!r} has "
                              "none yet: open the Features tab, pick this SAE, run Extract, then export again.")


build, validate = spec_checks(ExportSpec, check_inputs)  # the "export" kind's spec.build / spec.validate


def run_export(store, spec: dict, progress=None, should_stop=None) -> dict:
    s = ExportSpec.from_dict(spec)
    if s.format == "saelens":
        return export_saelens(store, s.sae_id, name=s.name)
    return export_neuronpedia(store, s.sae_id, batch_size=s.batch_size, progress=progress, should_stop=should_stop)


@register_job("export", accelerator=False, validate=validate)
def run(spec: dict, ctx) -> dict:
    def progress(fraction: float, message: str) -> None:
        ctx.report(int(fraction * 1000), total=1000, message=message)

    result = run_export(ctx.store, spec, progress=progress, should_stop=ctx.should_stop)
    ctx.log(f"exported {spec.get('format')} bundle to {result['path']}")
    return {"export_id": result["id"], "path": result["path"]}
