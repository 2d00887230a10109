"""The circuit job behind the one front door (#24): built and checked by `spec.build/validate` for the Circuits tab
and `circuit build` alike; a misspelt field is refused naming the nearest one."""
from __future__ import annotations

import pytest

from mistudio_core import spec
from mistudio_core.platform.errors import ValidationError


def test_the_circuit_spec_is_built_strictly_by_the_front_door():
    built = spec.build("circuit", sae_ids=["a", "b"], prompt="The capital of France is", target=" Paris")
    assert built == {"sae_ids": ["a", "b"], "prompt": "The capital of France is", "target": " Paris", "minus": None,
                     "settings": {}, "device": None}
    assert spec.validate("circuit", built).target == " Paris"
    with pytest.raises(ValidationError, match="'promt' \\(did you mean 'prompt'\\?\\)"):
        spec.validate("circuit", {"sae_ids": ["a"], "promt": "x"})
    with pytest.raises(ValidationError, match="did you mean 'settings'"):
        spec.build("circuit", sae_ids=["a"], prompt="x", setings={"max_nodes": 5})


def test_bad_circuit_requests_get_one_message_each():
    with pytest.raises(ValidationError, match="No SAE selected"):
        spec.build("circuit", sae_ids=[], prompt="x")
    with pytest.raises(ValidationError, match="prompt is empty"):
        spec.build("circuit", sae_ids=["a"], prompt="   ")
    with pytest.raises(ValidationError, match="max_node"):
        spec.build("circuit", sae_ids=["a"], prompt="x", settings={"max_node": 5})
