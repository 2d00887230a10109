"""Steering tab handlers called directly, with the SAE+model loader swapped for a tiny Llama and SAE."""
from __future__ import annotations

import gradio as gr
import pytest

import pages.steering as page
from pages.common import failed, ok
from pages.context import AppContext
from steering_helpers import tiny_target

OK, FAILED = ok(""), failed("")
KNOBS = ("additive", "all", False, 8, 0.8, 0.9, 3, False)


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    return tiny_target(tmp_path_factory.mktemp("tok"))


@pytest.fixture
def ctx(store, target, monkeypatch):
    monkeypatch.setattr(page, "load_target", lambda store, sae_id: target)
    return AppContext(store=store)


def _slots(*pairs):
    """Slot values as the browser sends them: index boxes hold text, "" is an unused slot."""
    flat = ["", 0.0] * page.N_SLOTS
    for k, (i, s) in enumerate(pairs):
        flat[2 * k], flat[2 * k + 1] = str(i), s
    return flat


def test_generate_streams_baseline_and_steered(ctx):
    states = list(page.generate(ctx, "tiny", "The state of the union", *KNOBS, *_slots((5, 0.0))))
    assert len(states) >= 2 and states[-1][0].startswith(OK)
    assert states[-1][1] == states[-1][2]            # strength 0: identical columns
    strong = list(page.generate(ctx, "tiny", "The state of the union", *KNOBS, *_slots((5, 60.0))))[-1]
    assert strong[1] == states[-1][1] and strong[2] != strong[1]


def test_generate_without_features_explains(ctx):
    (status, *_), = list(page.generate(ctx, "tiny", "Hi", *KNOBS, *_slots()))
    assert "No feature selected" in status


def test_a_slot_that_is_not_an_index_is_named(ctx):
    bad = _slots((5, 1.0), ("five", 2.0))
    (status, *_), = list(page.generate(ctx, "tiny", "Hi", *KNOBS, *bad))
    assert status.startswith(FAILED) and "slot 2" in status and "'five'" in status


def test_sweep_gives_named_activations_a_chart_and_a_suggested_strength(ctx):
    status, rows, fig, md, suggested = page.run_sweep(ctx, "tiny", "We the people", "0, 10, 40", 2, *KNOBS,
                                                      *_slots((2, 1.0)))
    assert status.startswith(OK) and "2 seed(s)" in status
    # readable rows: one header line, the baseline and one expandable row per strength, every output in full
    assert rows.count("<details") == 4 and "<summary" in rows and "<b>40" in rows
    for h in ("effect", "output ppl (× base)", "capability ppl (× base)"):
        assert h in rows
    assert "activation in the steered model (at the hook)" in rows and "unsteered model reading the output" in rows
    at_hook = [tr for tr in fig.data if "steered model (at the hook)" in tr.name][0].y
    assert at_hook[2] > at_hook[0]          # the intervention shows where it happens
    names = [tr.name for tr in fig.data]
    assert any("steered model (at the hook)" in n for n in names) and any("reading the output" in n for n in names)
    assert list(fig.data[0].x) == [0.0, 10.0, 40.0]
    assert "uggested strength" in md and "unembedding alignment" in md and "baseline" in md
    if suggested:   # the button copies it onto every filled slot
        out = page.use_suggested(ctx, suggested, *_slots((2, 1.0), (4, 3.0)))
        assert out[0].startswith(OK) and out[2] == out[4] == float(suggested)
    assert page.use_suggested(ctx, "", *_slots((2, 1.0)))[0].startswith(FAILED)


def test_generate_ends_with_both_activations_named(ctx):
    *_, readings = list(page.generate(ctx, "tiny", "We the people", *KNOBS, *_slots((2, 30.0))))[-1]
    assert "activation in the steered model (at the hook)" in readings
    assert "unsteered model reading the output" in readings and "perplexity" in readings


def test_picking_a_match_fills_one_slot_once(ctx):
    first = page.add(ctx, None, 9, *_slots())
    again = page.add(ctx, None, 9, *first[1:])    # a second click on the same row
    assert first[1] == "9" and again[0].startswith(OK) and "already in slot 1" in again[0]
    assert again[3] == ""                     # no second slot taken
    with gr.Blocks() as demo:
        page.build(AppContext(store=ctx.store))
    buttons = [b for b in demo.blocks.values() if isinstance(b, gr.Button)]
    assert not any(b.value == "Add" for b in buttons)   # no second 'Add' step after a pick


def test_add_fills_the_next_free_slot_and_search_by_index(ctx):
    out = page.add(ctx, None, 9, *_slots((1, 2.0)))
    assert out[0].startswith(OK) and out[3:5] == ("9", 4.0)
    full = page.add(ctx, None, 9, *_slots(*[(i, 1.0) for i in range(page.N_SLOTS)]))
    assert "slots are in use" in full[0]


def test_session_save_and_load_round_trip(ctx):
    status, dd = page.save_session(ctx, "s1", "tiny", "Hello", "base text", "steered text", *KNOBS,
                                   *_slots((7, -3.5), (2, 1.0)))
    assert status.startswith(OK)
    loaded = page.load_session(ctx, dd["value"])
    assert loaded[1:4] == ("tiny", "Hello", "additive") and loaded[11:13] == ("base text", "steered text")
    assert list(loaded[13:17]) == ["7", -3.5, "2", 1.0] and loaded[17] == ""


def test_prompt_set_save_load_and_batch(ctx):
    status, dd = page.save_prompt_set(ctx, "pets", "Dogs are\nCats are")
    _, text = page.load_prompt_set(ctx, dd["value"])
    assert text == "Dogs are\nCats are"
    status, df = page.run_batch(ctx, "tiny", text, *KNOBS, *_slots((3, 5.0)))
    assert list(df["prompt"]) == ["Dogs are", "Cats are"]
    assert "feature 3: activation in the steered model (at the hook)" in df.columns


def test_build_wires_prefixed_api_names(store):
    with gr.Blocks() as demo:
        page.build(AppContext(store=store))
    names = {d.get("api_name") for d in demo.config["dependencies"] if d.get("api_name")}
    assert {"steering_generate", "steering_sweep", "steering_save_session", "steering_load_session",
            "steering_run_prompt_set", "steering_pick_feature", "steering_use_suggested", "steering_auto_strength",
            "steering_concept_build", "steering_concept_sweep", "steering_save_group", "steering_export_group"} <= names
