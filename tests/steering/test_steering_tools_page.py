"""Steering tab's new tools called as the page calls them (tiny Llama + SAE): Find → one click → slot with the
automatic sweep's strength, strengths in max-activation units, concept panel, feature groups, and bad input; the
same through the CLI."""
from __future__ import annotations

import functools
import json

import pytest
import torch

import mistudio_core.cli.steer as steer_cli
import pages.steering as page
import pages.steering_concept as concept_page
import pages.steering_groups as groups_page
from mistudio_core.cli import main
from mistudio_core.steering import groups as sg
from mistudio_core.steering.auto import feature_auto_sweep
from mistudio_core.steering.methods import SteerFeature, SteeringConfig
from mistudio_core.steering import find
from pages.common import failed, ok
from pages.context import AppContext
from steering_helpers import tiny_target

OK, FAILED = ok(""), failed("")
KNOBS = ("additive", "all", False, 6, 0.8, 0.9, 3, False)
STATS = {"max_activation": torch.full((64,), 2.0), "dead": torch.tensor([i == 3 for i in range(64)])}


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    t = tiny_target(tmp_path_factory.mktemp("tok"))
    tok_id = find.concept_token_ids(t.tokenizer, "union")[0]
    with torch.no_grad():
        row = t.model.get_output_embeddings().weight[tok_id].float()
        t.sae.W_dec[7] = 3.0 * row / row.norm()
    return t


@pytest.fixture
def ctx(store, target, monkeypatch):
    for mod in (page, concept_page, steer_cli, groups_page):
        monkeypatch.setattr(mod, "load_target", lambda *a, **k: target)
    for mod in (page, groups_page):
        monkeypatch.setattr(mod, "stats_for", lambda store, sae_id: STATS)
    monkeypatch.setattr("mistudio_core.steering.loader.stats_for", lambda store, sae_id: STATS)
    monkeypatch.setattr(store, "manifest", lambda kind, i: {"id": i, "d_sae": 64})
    return AppContext(store=store)


def _slots(*pairs):
    flat = ["", 0.0] * page.N_SLOTS
    for k, (i, s) in enumerate(pairs):
        flat[2 * k], flat[2 * k + 1] = str(i), s
    return flat


def test_find_ranks_the_writer_first_and_one_click_fills_a_slot_with_a_suggested_strength(ctx, monkeypatch):
    status, df = page.find(ctx, "tiny", "union")
    assert status.startswith(OK) and int(df.iloc[0, 0]) == 7 and "union" in df.iloc[0, 1]
    assert {"writes (top logit-lens tokens)", "output score", "max act"} <= set(df.columns)
    added = page.add(ctx, "tiny", "7", *_slots())
    assert added[1] == "7" and added[2] == 1.0             # half the max activation until the sweep answers
    monkeypatch.setattr("pages.steering.feature_auto_sweep",
                        functools.partial(feature_auto_sweep, prompts=("We the people",), seeds=1, max_new_tokens=4))
    out = page.auto_strength(ctx, "tiny", "7", *added[1:])
    assert out[0].startswith(OK) and "× max act" in out[0] and "<details" in out[1]
    assert out[3] == "" or float(out[3]) == out[5]         # the slot got the suggested strength
    assert "× max act" in page.units_md(ctx, "tiny", *out[4:])


def _small_sweep(*args, **kw):
    from mistudio_core.steering.auto import auto_sweep
    return auto_sweep(*args, **{**kw, "prompts": ("We the people",), "seeds": 1, "max_new_tokens": 4})


def test_dead_feature_nan_strength_and_empty_concept_each_say_one_thing(ctx, monkeypatch):
    called = []
    monkeypatch.setattr(page, "compare_stream", lambda *a, **k: called.append(1) or iter(()))
    assert "never activated" in page.add(ctx, "tiny", "3", *_slots())[0]
    (status, *_), = list(page.generate(ctx, "tiny", "Hi", *KNOBS, *_slots((3, 1.0))))
    assert status.startswith(FAILED) and "never activated" in status
    (status, *_), = list(page.generate(ctx, "tiny", "Hi", *KNOBS, *_slots((5, float("nan")))))
    assert "finite number" in status
    (status, *_), = list(page.generate(ctx, "tiny", "Hi", *KNOBS, *_slots((5, 1e12))))
    assert "finite number" in status
    assert called == []                                    # nothing generated
    assert "concept is empty" in page.find(ctx, "tiny", "  ")[0]


def test_concept_panel_builds_sweeps_generates_and_fills_slots(ctx, monkeypatch):
    status, pos, neg, prompts, effect = concept_page.load_builtin("yelling")
    assert status.startswith(OK) and effect == "uppercase_share" and len(pos.splitlines()) == len(neg.splitlines())
    status, summary, df, cv, boxes = concept_page.build(ctx, "tiny", pos, neg)
    assert status.startswith(OK) and "reconstruct" in summary and len(df) == len(cv["writers"] + cv["features"]) > 0
    assert cv["writers"] and boxes["value"] == [w["index"] for w in cv["writers"]]    # the writers ticked
    monkeypatch.setattr(concept_page, "auto_sweep", _small_sweep)
    status, rows, md, mult = concept_page.sweep(ctx, cv, "raw vector", boxes["value"], prompts, effect)
    assert status.startswith(OK) and "uppercase_share" in rows and mult > 0
    *_, last = concept_page.generate(ctx, cv, "selected features", boxes["value"][:2], 2.0, "Hi", *KNOBS)
    assert last[0].startswith(OK) and last[1] and last[2]
    filled = concept_page.to_slots(cv, boxes["value"], 1.0, *_slots())
    assert filled[0].startswith(OK) and filled[1] == str(cv["writers"][0]["index"])
    assert filled[2] == pytest.approx(round(cv["writers"][0]["strength"], 3))


@pytest.mark.parametrize("pos,neg,msg", [("", "a", "empty"), ("a\nb", "a", "different sizes")])
def test_bad_prompt_sets_are_refused_by_the_panel(ctx, pos, neg, msg):
    assert msg in concept_page.build(ctx, "tiny", pos, neg)[0]


def test_groups_save_load_export_and_refuse_dead(ctx):
    status, dd = groups_page.save_group(ctx, "pair", "tiny", "additive", "all", False, *_slots((5, 2.0), (9, -1.0)))
    assert status.startswith(OK)
    loaded = groups_page.load_group(ctx, dd["value"])
    assert loaded[1:4] == ("tiny", "additive", "all") and list(loaded[4:8]) == ["5", 2.0, "9", -1.0]
    status, path = groups_page.export_group(ctx, dd["value"])
    assert json.loads(open(path).read())["name"] == "pair"
    assert "never activated" in groups_page.save_group(ctx, "x", "tiny", "additive", "all", False,
                                                       *_slots((3, 1.0)))[0]


def test_a_group_larger_than_the_slots_steers_from_the_tab(ctx):
    big = SteeringConfig([SteerFeature(i, 40.0) for i in (5, 7, 9, 11, 13, 15)])
    rec = sg.save_group(ctx.store, "six", "tiny", big, stats=STATS)
    assert "Generate with group" in groups_page.load_group(ctx, rec["id"])[0]      # the slots hold 4
    *_, last = groups_page.generate_group(ctx, rec["id"], "We the people", 6, 0.0, 0.9, 0, False)
    assert last[0].startswith(OK) and "6 feature(s)" in last[0] and last[1] != last[2]
    assert "Pick a saved group" in next(groups_page.generate_group(ctx, "", "Hi", 2, 0.0, 0.9, 0, False))[0]


def test_cli_find_concept_and_group(ctx, capsys):
    def run(*argv):
        assert main(["--home", str(ctx.store.home), "--json", "steer", "tiny", *argv]) == 0
        return json.loads(capsys.readouterr().out)

    assert run("--find", "union")["rows"][0]["index"] == 7
    out = run("We the people", "--concept", "yelling", "--concept-strength", "2", "--max-new-tokens", "3")
    assert out["multiplier"] == 2 and out["concept"]["features"] and out["steered"] != out["baseline"]
    saved = run("--feature", "5:2", "--save-group", "g1")
    gid = saved["group"]["id"]
    out = run("Hi", "--group", gid, "--max-new-tokens", "2")
    assert out["steering"]["features"] == [{"index": 5, "strength": 2.0}]
    assert main(["--home", str(ctx.store.home), "steer", "tiny", "Hi", "--feature", "3:1"]) != 0   # dead
