"""k-sparse probing (SAEBench's sparse probing, on a CPU budget): how much of a task can k SAE latents carry?

For each binary task (a two-class task, or one class against the rest of a multi-class task):
1. inputs are the mean over a snippet's tokens of the hook activation (`raw`, d_in wide) and of the SAE's latents
   (`sae`, d_sae wide); classes are balanced by subsampling, and train/test split by document;
2. the k latents with the largest |class-mean difference| on the training rows are chosen (k = 1, 2, 5);
3. logistic regression (`linear.fit_logistic`) on those k latents, on all latents ("sae_full") and on the raw
   activations ("raw") is fitted on the training rows and scored on the test rows (accuracy; chance 0.5).

A multi-class task reports the mean over its one-vs-rest subtasks. An SAE whose latents carry the task shows
k=1 close to raw; the raw probe is the ceiling a linear read-out of the model can reach at this hook.
"""
from __future__ import annotations

import torch

from .linear import accuracy, balanced, fit_logistic, top_mean_difference
from .tasks import Task, split_groups

KS = (1, 2, 5)
TEST_FRACTION = 0.3


def binary_subtasks(task: Task) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """(name, y [N] in {0,1}, rows used): the two classes, or each class against the rest."""
    classes = task.classes
    labels = task.labels
    if not task.one_vs_rest:
        positive = classes[-1]
        return [(f"{positive} vs {classes[0]}", torch.tensor([lab == positive for lab in labels]),
                 torch.arange(len(labels)))]
    return [(f"{c} vs rest", torch.tensor([lab == c for lab in labels]), torch.arange(len(labels)))
            for c in classes]


def probe_binary(raw: torch.Tensor, lat: torch.Tensor, y: torch.Tensor, train: torch.Tensor, test: torch.Tensor,
                 ks=KS, seed: int = 0) -> dict:
    """Accuracies of the raw, full-SAE and k-sparse probes on one binary task; the chosen latents per k."""
    g = torch.Generator().manual_seed(seed)
    train = train[balanced(y[train], g)]
    test = test[balanced(y[test], g)]
    ytr, yte = y[train], y[test]
    out = {"n_train": len(train), "n_test": len(test)}
    out["raw"] = accuracy(fit_logistic(raw[train], ytr), raw[test], yte)
    out["sae_full"] = accuracy(fit_logistic(lat[train], ytr, l2=1e-2), lat[test], yte)
    for k in ks:
        chosen = top_mean_difference(lat[train], ytr, k)
        out[f"k{k}"] = accuracy(fit_logistic(lat[train][:, chosen], ytr), lat[test][:, chosen], yte)
        out[f"latents_k{k}"] = chosen.tolist()
    return out


def probe_task(task: Task, raw: torch.Tensor, lat: torch.Tensor, ks=KS, seed: int = 0) -> dict:
    """Scores of one task (mean over its binary subtasks) with the per-subtask details."""
    g = torch.Generator().manual_seed(seed)
    train, test = split_groups(task.groups, task.labels, TEST_FRACTION, g)
    subs = {}
    for i, (name, y, _) in enumerate(binary_subtasks(task)):
        subs[name] = probe_binary(raw, lat, y, train, test, ks, seed=seed + i)
    keys = ["raw", "sae_full"] + [f"k{k}" for k in ks]
    summary = {k: sum(s[k] for s in subs.values()) / len(subs) for k in keys}
    return dict(summary, task=task.name, description=task.description, source=task.source,
                n_examples=len(task.labels), n_documents=len(set(task.groups)), classes=task.classes,
                subtasks=subs)


def summarize(tasks: dict[str, dict], ks=KS) -> dict:
    """Mean accuracy over tasks of each probe (`raw`, `sae_full`, `k1`, ...)."""
    keys = ["raw", "sae_full"] + [f"k{k}" for k in ks]
    return {k: sum(t[k] for t in tasks.values()) / len(tasks) for k in keys} if tasks else {}
