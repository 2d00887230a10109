"""The SAEs tab's Benchmark view: Pareto plots with one named point per SAE, the comparison table, bad input."""
from __future__ import annotations

from test_benchsuite_results import _record, _sae

from mistudio_core.benchsuite import results
from pages import saes_bench
from pages.context import AppContext


def test_pareto_and_table_show_every_benchmarked_sae(store):
    ctx = AppContext(store=store)
    a, b = _sae(store, "a"), _sae(store, "b")
    results.store_result(store, a, _record("heldout", 0.81, 0.2))
    results.store_result(store, b, _record("heldout", 0.90, 0.05))
    choices = saes_bench.suite_choices(ctx, None)
    assert choices["value"] == f"v{results.SUITE_VERSION}__sotu__heldout"
    assert choices["choices"][0][0] == f"suite v{results.SUITE_VERSION} on sotu held-out"
    fig, frame, where = saes_bench.show(ctx, choices["value"])
    assert "**absorption**: vocabulary words" in where and a in where and b in where
    points = [t for t in fig.data if t.mode == "markers"]
    assert [len(t.x) for t in points] == [2, 0, 2, 2]  # EV, CE (not in these records), absorption, probing
    ev = points[0]
    assert sorted(ev.y) == [0.81, 0.9] and any(a in text for text in ev.text) and any(b in text for text in ev.text)
    assert list(frame["SAE"]) and set(frame["SAE"]) == {a, b}
    assert set(frame["core numbers on"]) == {"sotu held-out, 64 contexts"}


def test_start_without_an_sae_says_what_to_pick(store):
    status, job = saes_bench.start(AppContext(store=store), None, "sotu", ["core"], "", "")
    assert "Pick an SAE" in status


def test_pareto_front_keeps_undominated_points():
    assert saes_bench._front([(10, 0.5), (20, 0.7), (15, 0.4), (40, 0.9)], True) == [(10, 0.5), (20, 0.7), (40, 0.9)]
    assert saes_bench._front([(10, 0.3), (20, 0.1), (30, 0.2)], False) == [(10, 0.3), (20, 0.1)]
