"""The steering sweep behind the one front door (#24): the Steering tab's Sweep and `steer --sweep` build one
"sweep" spec through `spec.build` (the same one for the same inputs, holding what the sweep was called with
before), checked before any model loads; misspelt fields — flat, inside the parts, or from a door — are refused
naming the nearest. SteeringConfig and SamplingConfig read strictly."""
from __future__ import annotations

import argparse

import pytest

import pages.steering as page
from mistudio_core import spec as front_door
from mistudio_core.platform.errors import ValidationError
from mistudio_core.steering import sweep_spec
from mistudio_core.steering.generate import SamplingConfig
from mistudio_core.steering.methods import SteerFeature, SteeringConfig
from pages.context import AppContext
from spec_doors import STOPPED, DoorSpy

KNOBS = ("additive", "all", False, 8, 0.8, 0.9, 3, False)  # method, positions, normalize, max new, T, top p, seed, chat
STEERING = SteeringConfig([SteerFeature(5, 1.0), SteerFeature(7, -2.0)], method="additive")
SAMPLING = SamplingConfig(max_new_tokens=8, temperature=0.8, top_p=0.9, seed=3)


def _tab(store, *slots) -> str:
    flat = ["", 0.0] * page.N_SLOTS
    flat[:len(slots)] = slots
    return page.run_sweep(AppContext(store=store), "tiny", "We the people", "0, 10, 40", 2, *KNOBS, *flat)[0]


def _cli(store, *argv):
    from mistudio_core.cli import steer

    parser = argparse.ArgumentParser()
    steer.register(parser.add_subparsers())
    args = parser.parse_args(["steer", "tiny", "We the people", "--feature", "5:1", "--feature", "7:-2", "--sweep",
                              "0,10,40", "--seeds", "2", "--max-new-tokens", "8", "--temperature", "0.8", "--seed",
                              "3", *argv])
    args.store = store
    return args.func(args)


def test_the_tab_and_the_cli_build_one_spec_holding_what_the_sweep_got_before(store, monkeypatch):
    spy = DoorSpy(monkeypatch, stop=True)  # stops after the build: no model loads
    assert STOPPED in _tab(store, "5", 1.0, "7", -2.0)
    with pytest.raises(ValidationError, match=STOPPED):
        _cli(store)
    tab, cli = spy.built
    assert spy.kinds == ["sweep", "sweep"] and tab == cli
    assert tab == {"sae_id": "tiny", "prompt": "We the people", "strengths": [0.0, 10.0, 40.0], "seeds": 2,
                   "steering": STEERING.to_dict(), "sampling": SAMPLING.to_dict()}
    called = {}
    monkeypatch.setattr(sweep_spec, "sweep", lambda *a, **kw: called.update(args=a, kw=kw) or {})
    target = argparse.Namespace(model="M", tokenizer="T", sae="S", hook_name="H")
    sweep_spec.run(target, tab, progress=print, effect_tokens={"keys": []})
    assert called["args"] == ("M", "T", "S", "H", "We the people", STEERING, [0.0, 10.0, 40.0], SAMPLING)
    assert called["kw"] == {"progress": print, "seeds": 2, "effect_tokens": {"keys": []}}


def test_a_misspelt_field_from_either_door_is_refused_naming_the_nearest(store, monkeypatch):
    DoorSpy(monkeypatch, misspell=("strengths", "strenghts"))
    assert "'strenghts' (did you mean 'strengths'?)" in _tab(store, "5", 1.0)
    with pytest.raises(ValidationError, match="did you mean 'strengths'"):
        _cli(store)


def test_flat_and_whole_parts_build_the_same_spec_and_every_misspelling_is_named():
    base = dict(sae_id="s", prompt="p", strengths=[1, 2])
    flat = front_door.build("sweep", **base, features=[{"index": 1, "strength": 1}], method="clamp", temperature=0.0)
    whole = front_door.build("sweep", **base, steering={"features": [{"index": 1, "strength": 1}], "method": "clamp"},
                             sampling={"temperature": 0.0})
    assert flat == whole and flat["strengths"] == [1.0, 2.0] and flat["sampling"]["top_p"] == 0.9
    for bad, near in (({"temprature": 0.5}, "temperature"), ({"steering": {"metod": "clamp"}}, "method"),
                      ({"features": [{"index": 1, "strenght": 2}]}, "strength"), ({"promt": "x"}, "prompt")):
        with pytest.raises(ValidationError, match=f"did you mean '{near}'"):
            front_door.build("sweep", **{**base, "features": [{"index": 1, "strength": 1}], **bad})
    with pytest.raises(ValidationError, match="between 1 and 16 strengths"):  # the sweep's own limit, before a load
        front_door.build("sweep", **{**base, "strengths": list(range(17)), "features": [{"index": 1, "strength": 1}]})


def test_steering_and_sampling_configs_read_strictly_and_saved_ones_still_load():
    assert SteeringConfig.from_dict(STEERING.to_dict()) == STEERING
    assert SamplingConfig.from_dict(SAMPLING.to_dict()) == SAMPLING
    with pytest.raises(ValidationError, match="'normalise' \\(did you mean 'normalize'\\?\\)"):
        SteeringConfig.from_dict({"features": [], "normalise": True})
    with pytest.raises(ValidationError, match="did you mean 'top_p'"):
        SamplingConfig.from_dict({"top_pp": 0.5})
