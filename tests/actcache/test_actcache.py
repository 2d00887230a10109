"""The activation cache artifact: built atomically, keyed so another model/tokenization is never reused, listed
with its size, damaged files refused or re-captured, a full disk leaves nothing, resume on it is bit-identical."""
from __future__ import annotations

import errno

import pytest
import torch

from mistudio_core.actcache import cache as ac
from mistudio_core.platform.errors import UnsupportedError
from mistudio_core.sae.train_config import TrainConfig
from mistudio_core.sae.trainer import train_saes
from mistudio_core.platform.store import write_json_atomic
from tiny_models import random_tokens, tiny_model

MODEL = tiny_model("llama")
HOOKS = ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]
TOKENS = random_tokens(24, 9, seed=2)  # 24 contexts x 8 kept tokens = 192 tokens
SMALL = dict(shard_tokens=50, contexts_per_forward=4, buffer_contexts=6, seed=1)


def _home(store, model_id="tiny", tok_config=None):
    if not store.exists("models", model_id):
        with store.create("models", model_id, {"d_model": 32}, artifact_id=model_id):
            pass
    folder = store.dir("datasets") / "ds" / "tokenized" / model_id
    write_json_atomic(folder / "config.json", tok_config or {"context_size": 9, "bos_token_id": 1})
    return ac.cache_identity(store, model_id, "ds", bos_token_id=1)


def _build(store, identity, n=120, hooks=HOOKS, **kw):
    return ac.build_cache(store, MODEL, TOKENS, hooks, n, identity, **{**SMALL, **kw})


def test_built_cache_is_listed_with_size_and_replays_what_the_model_computed(store):
    identity = _home(store)
    m = _build(store, identity, dtype="float32")
    assert [c["id"] for c in ac.list_caches(store)] == [m["id"]]
    assert m["n_tokens"] == 120 and [s["n_tokens"] for s in m["shards"]] == [50, 50, 20]
    assert m["bytes"] == sum((store.path("activations", m["id"]) / s["file"]).stat().st_size for s in m["shards"])
    assert m["bytes"] <= ac.estimate_bytes(120, [32, 32], "float32") * 1.2
    stream = ac.CacheStream(store, m["id"], [HOOKS[1]], batch_tokens=120)
    epoch = next(stream)[HOOKS[1]]
    assert list(next(stream)) == [HOOKS[1]] and epoch.dtype == torch.float32
    from mistudio_core.model.activations import ActivationStream
    live = torch.cat([next(ActivationStream(MODEL, TOKENS, HOOKS[1], batch_tokens=120, contexts_per_forward=4,
                                            buffer_contexts=6, seed=1, bos_token_id=1))[HOOKS[1]]])
    assert torch.allclose(epoch.sort(0).values, live.sort(0).values, atol=1e-6)  # same tokens, other order


def test_bfloat16_default_halves_the_disk(store):
    identity = _home(store)
    small, big = _build(store, identity), _build(store, identity, dtype="float32")
    assert small["dtype"] == "bfloat16" and small["bytes"] < 0.6 * big["bytes"]


def test_reuse_needs_the_same_identity_and_a_superset_of_hooks(store):
    identity = _home(store)
    m = _build(store, identity)
    assert ac.find_cache(store, identity, [HOOKS[0]], 100, "bfloat16")["id"] == m["id"]
    assert ac.find_cache(store, identity, HOOKS + ["blocks.2.hook_resid_post"], 100) is None
    assert ac.find_cache(store, identity, HOOKS, 150) is None  # too few tokens (not the whole split)
    other_tok = {**identity, "tokenization": "0" * 16}
    assert ac.find_cache(store, other_tok, HOOKS, 10) is None
    assert ac.find_cache(store, {**identity, "model_created": 0.0}, HOOKS, 10) is None
    full = _build(store, identity, n=10_000)  # capped at one pass over the split: serves any request
    assert full["n_tokens"] == 192 and ac.find_cache(store, identity, HOOKS, 10_000)["id"] == full["id"]


def test_retokenizing_changes_the_identity(store):
    before = _home(store)
    after = _home(store, tok_config={"context_size": 9, "bos_token_id": 1, "held_out": 4})
    assert before["tokenization"] != after["tokenization"]


def test_truncated_shard_is_refused_and_ensure_captures_again(store):
    identity = _home(store)
    m = _build(store, identity)
    shard = store.path("activations", m["id"]) / m["shards"][0]["file"]
    shard.write_bytes(shard.read_bytes()[:-10])
    with pytest.raises(ac.CacheDamaged, match="cache delete"):
        ac.CacheStream(store, m["id"])
    logs = []
    again = ac.ensure_cache(store, MODEL, TOKENS, HOOKS, 120, identity, log=logs.append, **SMALL)
    assert any("damaged" in line for line in logs) and again["id"] == m["id"]
    next(ac.CacheStream(store, again["id"], batch_tokens=120))  # intact again


def test_changed_bytes_of_the_same_size_are_caught_by_the_hash(store):
    identity = _home(store)
    m = _build(store, identity)
    shard = store.path("activations", m["id"]) / m["shards"][1]["file"]
    data = bytearray(shard.read_bytes())
    data[-3] ^= 0xFF
    shard.write_bytes(bytes(data))
    stream = ac.CacheStream(store, m["id"], batch_tokens=50)
    with pytest.raises(ac.CacheDamaged, match="changed"):
        for _ in range(3):
            next(stream)


def test_disk_full_during_capture_leaves_no_cache(store, monkeypatch):
    identity = _home(store)
    calls = {"n": 0}
    real = ac.save_file

    def fill_up(tensors, path):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(tensors, path)

    monkeypatch.setattr(ac, "save_file", fill_up)
    with pytest.raises(UnsupportedError, match="disk filled up"):
        _build(store, identity)
    assert ac.list_caches(store) == [] and list(store.dir("activations").iterdir()) == []


def test_not_enough_free_space_is_refused_before_capture(store, monkeypatch):
    identity = _home(store)
    monkeypatch.setattr(ac.shutil, "disk_usage", lambda p: type("U", (), {"free": 1000})())
    with pytest.raises(UnsupportedError, match="GiB is free"):
        _build(store, identity)


def test_cancel_during_capture_keeps_nothing(store):
    identity = _home(store)
    assert _build(store, identity, should_stop=iter([False, True]).__next__) is None
    assert ac.list_caches(store) == []


def test_pinned_cache_is_replayed_on_resume_and_training_is_bit_identical(store, tmp_path):
    identity = _home(store)
    run = tmp_path / "run"
    run.mkdir()
    m = ac.ensure_cache(store, MODEL, TOKENS, HOOKS, 150, identity, run_dir=run, **SMALL)
    _build(store, identity, n=192)  # a bigger cache appears later: the pinned one is still used
    assert ac.ensure_cache(store, MODEL, TOKENS, HOOKS, 150, identity, run_dir=run, **SMALL)["id"] == m["id"]
    tcfg = TrainConfig.of(d_sae=64, k=4, steps=12, batch_tokens=40, lr=1e-3, metrics_every=1)
    cfg = tcfg.sae_config(32, HOOKS[1])

    def stream(start):
        return ac.CacheStream(store, m["id"], [HOOKS[1]], batch_tokens=40, seed=3, start_batch=start)

    rows = []
    full = train_saes(stream, [cfg], tcfg, on_metrics=rows.append)[0]
    assert rows[-1]["epoch"] == pytest.approx(12 * 40 / 150)  # 3.2 epochs over the cache
    saved = {}
    stop = iter([False] * 5 + [True]).__next__
    train_saes(stream, [cfg], tcfg, should_stop=stop, checkpoint=lambda t, s: saved.update(t=t, s=s))
    assert saved["s"]["step"] == 5
    resumed = train_saes(stream, [cfg], tcfg, resume_from=(saved["t"], saved["s"]))[0]
    for name, p in full.named_parameters():
        assert torch.equal(dict(resumed.named_parameters())[name], p), name
