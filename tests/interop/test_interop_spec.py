"""The "export" and "import" kinds behind the one front door (#24): the Share tab's handlers and the CLI's
`export` / `import` build their spec through `spec.build` and do what they did before (the same calls into the
exporters and importers); a misspelt field from any of them is refused naming the nearest one."""
from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest

from mistudio_core.cli import main
from mistudio_core.interop import catalog, hub, importers
from mistudio_core.interop.job import ExportSpec, run_export
from mistudio_core.jobs import JobRegistry
from mistudio_core.platform.errors import ValidationError
from pages import share, share_catalog
from pages.context import AppContext
from spec_doors import DoorSpy

SIGNATURES = {name: inspect.signature(getattr(module, name))  # taken before any test replaces them
              for module, name in ((importers, "import_sae"), (hub, "import_from_hub"), (catalog, "import_entry"))}
MANIFEST = {"id": "got-1", "name": "got", "architecture": "topk", "d_sae": 8, "hook_name": "blocks.0.hook_resid_post",
            "model_id": "m", "catalog": {"id": "e"}}


@pytest.fixture
def calls(monkeypatch):
    """Each importer the "import" spec can reach, replaced by a recorder of its call (bound to its signature)."""
    seen = []
    for module, name in ((importers, "import_sae"), (hub, "import_from_hub"), (catalog, "import_entry")):
        def record(store, *a, _name=name, **kw):
            seen.append((_name, _bound(_name, *a, **kw)))
            return dict(MANIFEST)
        monkeypatch.setattr(module, name, record)
    return seen


def _bound(fn_name: str, *a, **kw) -> dict:
    """A call's arguments by name, defaults filled in (the store left out)."""
    bound = SIGNATURES[fn_name].bind(None, *a, **kw)
    bound.apply_defaults()
    return {k: v for k, v in bound.arguments.items() if k != "store"}


def _cli(store, *argv) -> int:
    return main(["--home", str(store.home), "--json", *argv])


def test_the_share_tab_and_the_cli_import_as_before(store, tmp_path, calls, monkeypatch):
    ctx = AppContext(store=store, allowed_roots=[tmp_path])
    (tmp_path / "sae").mkdir()
    spy = DoorSpy(monkeypatch)
    assert share.import_local(ctx, str(tmp_path / "sae"), None, "blocks.0.hook_resid_post", "", "")[0].startswith("✓")
    assert share.import_hub(ctx, " google/x ", "layer_1/w", "hf_tok", None, "")[0].startswith("✓")
    assert share_catalog.catalog_import(ctx, "entry-x", "", "", None)[0].startswith("✓")
    assert _cli(store, "import", str(tmp_path / "sae"), "--hook", "blocks.1.hook_resid_post", "--name", "n") == 0
    assert _cli(store, "import", "--catalog", "entry-y", "--snapshot", str(tmp_path / "sae")) == 0
    assert spy.kinds == ["import"] * 5 and all(s["path"] is not None for s in spy.built)
    assert calls == [  # what each door called before it built a spec
        ("import_sae", _bound("import_sae", tmp_path / "sae", model_id=None,
                              hook_name="blocks.0.hook_resid_post", repo_id="", path_in_repo="")),
        ("import_from_hub", _bound("import_from_hub", "google/x", "layer_1/w", token="hf_tok", model_id=None,
                                   hook_name=None)),
        ("import_entry", _bound("import_entry", "entry-x", snapshot=None, token=None, model_id=None)),
        ("import_sae", _bound("import_sae", Path(tmp_path / "sae"), model_id=None, name="n",
                              hook_name="blocks.1.hook_resid_post", repo_id="", path_in_repo="")),
        ("import_entry", _bound("import_entry", "entry-y", snapshot=str(tmp_path / "sae"), token=None,
                                model_id=None, name=None))]
    assert "hf_tok" not in json.dumps(spy.built)  # the token goes to the one call, never into the spec


def test_the_share_tab_and_the_cli_export_as_before(store, monkeypatch):
    store.path("saes", "s-1").mkdir(parents=True)
    (store.path("saes", "s-1") / "manifest.json").write_text('{"id": "s-1", "name": "s-1"}')
    (store.path("saes", "s-1") / "features").mkdir()
    (store.path("saes", "s-1") / "features" / "meta.json").write_text("{}")
    ctx = AppContext(store=store, jobs=JobRegistry(store))
    spy = DoorSpy(monkeypatch)
    *_, job_id = share.export(ctx, "s-1", "neuronpedia")
    before = {"format": "neuronpedia", "sae_id": "s-1"}  # the job spec the tab queued before
    assert ctx.jobs.get(job_id)["spec"] == spy.spec == ExportSpec.from_dict(before).to_dict()
    got = []
    monkeypatch.setattr("mistudio_core.cli.interop.run_export", lambda store, spec, progress=None: got.append(spec)
                        or {"id": "e", "path": "p"})
    assert _cli(store, "export", "s-1", "--name", "b") == 0
    assert got == [ExportSpec.from_dict({"format": "saelens", "sae_id": "s-1", "name": "b"}).to_dict()]
    monkeypatch.setattr("mistudio_core.interop.job.export_saelens", lambda store, sae_id, name=None: (sae_id, name))
    assert run_export(store, before | {"format": "saelens", "name": "b"}) == ("s-1", "b")  # old records still run


def test_a_misspelt_field_from_any_door_is_refused_naming_the_nearest(store, tmp_path, calls, monkeypatch, capsys):
    ctx = AppContext(store=store, allowed_roots=[tmp_path], jobs=JobRegistry(store))
    (tmp_path / "sae").mkdir()
    DoorSpy(monkeypatch, misspell=("hook_name", "hook_nam"))
    status, _ = share.import_local(ctx, str(tmp_path / "sae"), None, "blocks.0.hook_resid_post", "", "")
    assert "'hook_nam' (did you mean 'hook_name'?)" in status
    assert _cli(store, "import", str(tmp_path / "sae"), "--hook", "blocks.0.hook_resid_post") == 2 and \
        "did you mean 'hook_name'" in capsys.readouterr().err
    DoorSpy(monkeypatch, misspell=("format", "fromat"))
    status, *_ = share.export(ctx, "s-1", "saelens")
    assert "'fromat' (did you mean 'format'?)" in status
    assert _cli(store, "export", "s-1") == 2 and "did you mean 'format'" in capsys.readouterr().err
    assert calls == []
    with pytest.raises(ValidationError, match="did you mean 'batch_size'"):
        ctx.jobs.submit("export", {"sae_id": "s-1", "format": "neuronpedia", "batch_sise": 8})
