"""The "label" kind behind the one front door (#24): the Labeling tab's Start and `label run` build their spec
through `spec.build` — the same spec they built before — and a misspelt field from either is refused naming the
nearest one; submit refuses one too. The key never enters the spec."""
from __future__ import annotations

import argparse

import pytest

from fake_openai_server import FakeFeatures
from mistudio_core import spec as front_door
from mistudio_core.jobs import JobRegistry
from mistudio_core.labeling.client import ProviderConfig
from mistudio_core.labeling.engine import Totals
from mistudio_core.labeling.prompts import DEFAULT_SYSTEM, DEFAULT_TEMPLATE
from mistudio_core.labeling.spec import LabelSpec
from mistudio_core.platform.errors import ValidationError
from pages import labeling as page
from pages.context import AppContext
from spec_doors import DoorSpy

URL = "http://localhost:11434/v1"


@pytest.fixture
def ctx(store, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    store.path("saes", "sae-1").mkdir(parents=True)
    (store.path("saes", "sae-1") / "manifest.json").write_text('{"id": "sae-1", "name": "sae-1"}')
    monkeypatch.setattr(page.label_job, "load_features", lambda s, sae_id: FakeFeatures(n=5))
    return AppContext(store=store, jobs=JobRegistry(store))


def _start(ctx, key=""):
    return page.start_job(ctx, "sae-1", URL, "llama3.2", key, 0.15, 0.6, 10, False, "Only the features listed",
                          "1, 3", True, True, 2, 7, "", "")


def _cli(store, monkeypatch, *argv):
    """`label run ...` up to the engine, which is replaced by a recorder of the spec it gets."""
    from mistudio_core.cli import label

    got = {}
    monkeypatch.setattr(label, "label_features", lambda store, spec, key, feats, **kw: got.update(spec=spec,
                                                                                                   key=key) or Totals())
    monkeypatch.setattr(label, "_features", lambda store, sae_id: FakeFeatures(n=5))
    parser = argparse.ArgumentParser()
    label.register(parser.add_subparsers())
    args = parser.parse_args(["label", "run", "--sae", "sae-1", "--base-url", URL, "--model", "llama3.2", *argv])
    args.store = store
    args.func(args)
    return got


def test_the_tab_builds_the_spec_it_built_before_and_submits_it(ctx, monkeypatch):
    spy = DoorSpy(monkeypatch)
    status, job_id = _start(ctx, key="sk-secret")
    assert job_id, status
    before = LabelSpec(sae_id="sae-1", provider=ProviderConfig(base_url=URL, model="llama3.2", price_in_per_1m=0.15,
                                                               price_out_per_1m=0.6, timeout_s=10.0).to_dict(),
                       key_ref=spy.spec["key_ref"], selection="indices", indices=[1, 3], only_unlabeled=True,
                       score=True, fuzz=True, concurrency=2, n_top_examples=7, system_prompt=DEFAULT_SYSTEM,
                       template=DEFAULT_TEMPLATE).to_dict()
    assert spy.kinds == ["label"] and spy.spec == before == ctx.jobs.get(job_id)["spec"]
    assert "sk-secret" not in str(spy.spec) and spy.spec["key_ref"]
    assert f"{front_door.estimate('label', spy.spec, ctx.store)['features']} features" in status  # one estimate


def test_the_cli_builds_the_spec_it_built_before(store, monkeypatch):
    (store.path("saes", "sae-1")).mkdir(parents=True)
    (store.path("saes", "sae-1") / "manifest.json").write_text('{"id": "sae-1", "name": "sae-1"}')
    monkeypatch.setattr("mistudio_core.labeling.job.load_features", lambda s, sae_id: FakeFeatures(n=5))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    spy = DoorSpy(monkeypatch)
    got = _cli(store, monkeypatch, "--indices", "3,1", "--no-score", "--concurrency", "2", "--n-top", "7")
    before = LabelSpec(sae_id="sae-1", provider=ProviderConfig(base_url=URL, model="llama3.2").to_dict(),
                       selection="indices", indices=[1, 3], score=False, concurrency=2, n_top_examples=7)
    assert spy.spec == before.to_dict() and got["spec"] == before
    assert got["key"] == "sk-env" and "sk-env" not in str(spy.spec)  # the key reaches the engine, not the spec


def test_a_misspelt_field_from_either_door_is_refused_naming_the_nearest(ctx, monkeypatch):
    DoorSpy(monkeypatch, misspell=("concurrency", "concurency"))
    status, _ = _start(ctx)
    assert "'concurency' (did you mean 'concurrency'?)" in status
    assert ctx.jobs.list("label") == []
    with pytest.raises(ValidationError, match="did you mean 'concurrency'"):
        _cli(ctx.store, monkeypatch)
    good = LabelSpec(sae_id="sae-1").to_dict()
    with pytest.raises(ValidationError, match="did you mean 'n_top_examples'"):
        ctx.jobs.submit("label", dict(good, n_top_example=3))  # the registry's door
