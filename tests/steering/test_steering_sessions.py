"""Steering sessions and prompt sets round-trip through the data directory."""
from __future__ import annotations

import pytest

from mistudio_core.platform.errors import NotFoundError, ValidationError
from mistudio_core.steering import sessions
from mistudio_core.steering.methods import SteerFeature, SteeringConfig
from mistudio_core.steering.generate import SamplingConfig


def test_session_round_trip(store):
    steering = SteeringConfig([SteerFeature(12, 4.0), SteerFeature(3, -2.5)], method="orthogonal")
    sampling = SamplingConfig(max_new_tokens=20, temperature=0.5, seed=9, chat=True)
    session = {"sae_id": "sae-abc", "prompt": "Tell me about dogs", "steering": steering.to_dict(),
               "sampling": sampling.to_dict(), "outputs": {"baseline": "Dogs are", "steered": "Cats are"}}
    saved = sessions.save_session(store, "dogs", session)
    loaded = sessions.load_session(store, saved["id"])
    assert loaded == saved
    assert SteeringConfig.from_dict(loaded["steering"]) == steering
    assert SamplingConfig.from_dict(loaded["sampling"]) == sampling
    assert [s["id"] for s in sessions.list_sessions(store)] == [saved["id"]]
    sessions.delete_session(store, saved["id"])
    with pytest.raises(NotFoundError, match="Saved: \\(none yet\\)"):
        sessions.load_session(store, saved["id"])


def test_session_needs_the_essentials_and_ids_cannot_be_paths(store):
    with pytest.raises(ValidationError, match="sae_id"):
        sessions.save_session(store, "x", {"prompt": "hi", "steering": {"features": []}})
    with pytest.raises(ValidationError, match="Invalid"):
        sessions.load_session(store, "../../etc/passwd")


def test_prompt_set_round_trip(store):
    saved = sessions.save_prompt_set(store, "animals", "Dogs are\n\n  Cats are  \nBirds")
    assert sessions.load_prompt_set(store, saved["id"])["prompts"] == ["Dogs are", "Cats are", "Birds"]
    assert [p["name"] for p in sessions.list_prompt_sets(store)] == ["animals"]
    with pytest.raises(ValidationError, match="one prompt per line"):
        sessions.save_prompt_set(store, "empty", "  \n ")
