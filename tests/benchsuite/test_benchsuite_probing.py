"""k-sparse probing: a planted discriminative latent is found at k=1; bad tasks are refused before any work."""
from __future__ import annotations

import pytest
import torch

from mistudio_core.benchsuite.probing import probe_task, summarize
from mistudio_core.benchsuite.tasks import Task, build_task, check_task, split_groups
from mistudio_core.platform.errors import ValidationError


def _planted(n_docs: int = 40, per_doc: int = 4, planted: int = 37, width: int = 300):
    """Two classes; latent `planted` is larger for class "b"; every other latent and raw dim is noise."""
    g = torch.Generator().manual_seed(0)
    labels = ["a" if d % 2 else "b" for d in range(n_docs) for _ in range(per_doc)]
    groups = [f"doc{d}" for d in range(n_docs) for _ in range(per_doc)]
    lat = torch.rand(len(labels), width, generator=g)
    y = torch.tensor([lab == "b" for lab in labels])
    lat[:, planted] += 1.5 * y
    raw = torch.randn(len(labels), 16, generator=g)
    raw[:, 3] += 4.0 * y  # Bayes accuracy Φ(2) ≈ 0.98
    task = Task("planted", "a vs b", "synthetic", [""] * len(labels), labels, groups)
    return task, raw, lat


def test_k1_finds_the_planted_latent():
    task, raw, lat = _planted()
    out = probe_task(task, raw, lat)
    sub = next(iter(out["subtasks"].values()))
    assert sub["latents_k1"] == [37]
    assert out["k1"] > 0.95 and out["raw"] > 0.9
    assert out["k1"] >= out["sae_full"] - 0.1  # 300 noise latents cannot help the full probe much
    assert summarize({"planted": out})["k1"] == out["k1"]


def test_noise_latents_score_near_chance():
    task, raw, lat = _planted()
    out = probe_task(task, raw, lat[:, :30])  # without the planted latent
    assert out["k1"] < 0.75


def test_group_split_keeps_documents_whole():
    task, _, _ = _planted()
    train, test = split_groups(task.groups, task.labels, 0.3, torch.Generator().manual_seed(1))
    assert not {task.groups[i] for i in train} & {task.groups[i] for i in test}
    assert {task.labels[i] for i in test} == {"a", "b"}


def test_one_class_is_refused():
    task = Task("one", "d", "s", ["x"] * 50, ["a"] * 50, [str(i) for i in range(50)])
    with pytest.raises(ValidationError, match="single class.*at least two classes"):
        check_task(task)


def test_too_few_examples_per_class_are_refused():
    labels = ["a"] * 50 + ["b"] * 12
    task = Task("small", "d", "s", ["x"] * 62, labels, [str(i) for i in range(62)])
    with pytest.raises(ValidationError, match=r"fewer than 20 examples.*'b': 12"):
        check_task(task)


def test_shipped_tasks_are_valid():
    for name in ("sotu-era", "sotu-party", "sotu-president"):
        task = build_task(name)
        check_task(task)
    president = build_task("sotu-president")
    assert president.one_vs_rest and len(president.classes) == 10 and "Roosevelt" in president.classes
    era = build_task("sotu-era", per_doc=2)
    assert era.classes == ["1900 on", "before 1900"] and "may have trained" in era.source
    with pytest.raises(ValidationError, match="Unknown probing task"):
        build_task("nope")
