"""The "import" kind's spec: where a community SAE comes from (a local folder or archive, a Hub repo, or a catalog
entry) and how it enters the library. Every door (the Share tab's imports and catalog, `import`) builds it through
`spec.build("import", ...)` and runs it with `run_import`.

A Hub token is never part of the spec: it goes to `run_import` for the one download and is not written anywhere.
Imports run in the request (no job): the spec is the one description every door shares and checks.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from ..platform.errors import NotFoundError, ValidationError
from ..platform.records import from_dict, spec_checks


@dataclass
class ImportSpec:
    path: str = ""
    """A local folder or .zip/.tar.gz; with `hub`: the path inside the repo; with `catalog`: a local snapshot."""
    hub: str | None = None
    """Hub repo to download from (e.g. google/gemma-scope-2b-pt-res); None: not from the Hub."""
    catalog: str | None = None
    """A catalog entry id (e.g. gemma-scope-2b-pt-res/layer_20/width_16k/average_l0_71); None: not the catalog."""
    model_id: str | None = None
    """Registered model the SAE belongs to (checked against its hooks and width); None: what the files say."""
    name: str | None = None
    """Library name; None: from the repo path or the file name."""
    hook_name: str | None = None
    """Hook point, when the files do not say (e.g. blocks.8.hook_resid_post)."""
    repo_id: str = ""
    """For a local Gemma Scope params.npz: the repo it came from."""
    path_in_repo: str = ""
    """For a local Gemma Scope params.npz: e.g. layer_20/width_16k/average_l0_71."""
    register_model: bool = False
    """With `catalog`: also register the model the entry needs."""

    def __post_init__(self):
        if self.hub is not None and self.catalog is not None:
            raise ValidationError("Import from a Hub repo or a catalog entry, not both.")
        if self.hub is None and self.catalog is None and not self.path:
            raise ValidationError("Nothing to import: give a local folder or archive, a Hub repo or a catalog entry.")
        if self.register_model and self.catalog is None:
            raise ValidationError("register_model works with a catalog entry (it knows the model); add the model in "
                                  "the Models tab otherwise.")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ImportSpec":
        return from_dict(cls, d, "import spec")


def check_inputs(store, s: ImportSpec) -> None:
    """A local source must exist (the files themselves are checked while they are read)."""
    if s.hub is None and s.catalog is None and not Path(s.path).exists():
        raise NotFoundError(f"{s.path} does not exist.")


build, validate = spec_checks(ImportSpec, check_inputs)  # the "import" kind's spec.build / spec.validate


def run_import(store, spec: dict, token: str | None = None, progress=None) -> dict:
    """Import what `spec` describes; returns the new SAE's manifest. `token` (Hub, gated or private repos) is used
    for this call only."""
    from . import catalog
    from .hub import import_from_hub
    from .importers import import_sae

    s = validate(spec)
    if s.catalog is not None:
        if s.register_model:
            catalog.register_model(store, s.catalog, token=token, progress=progress)
        return catalog.import_entry(store, s.catalog, snapshot=s.path or None, token=token, model_id=s.model_id,
                                    name=s.name)
    if s.hub is not None:
        return import_from_hub(store, s.hub, s.path, token=token, model_id=s.model_id, name=s.name,
                               hook_name=s.hook_name)
    return import_sae(store, Path(s.path), model_id=s.model_id, name=s.name, hook_name=s.hook_name,
                      repo_id=s.repo_id, path_in_repo=s.path_in_repo)
