"""Absorption and k=1 probing of several SAEs at one hook, the model read once (for bench/bench_arch.py).

The benchmark suite (`mistudio_core.benchsuite`, `eval --suite`) runs the model again for every SAE it scores;
a comparison of several SAEs at the same hook needs the model's activations only once. This reads them with the
suite's own defaults (`BenchSpec`: 1,500 first-letter words, 4 snippets of 64 tokens per document of every
shipped probing task) and scores each SAE with the suite's functions (`absorption.absorption`,
`probing.probe_task` at k = 1). Auto-interpretation is left out: with the built-in 135M model as labeler it
scores chance (0.50 on the quick preset's SAE, docs/PRESETS.md), so it cannot rank architectures.
"""
from __future__ import annotations

from dataclasses import fields

import torch

from mistudio_core.benchsuite import absorption as absorption_mod
from mistudio_core.benchsuite import acts, probing
from mistudio_core.benchsuite.spec import BenchSpec, available_tasks
from mistudio_core.benchsuite.tasks import build_task
from mistudio_core.model import hooks

DEFAULTS = {f.name: f.default for f in fields(BenchSpec) if f.name in ("absorption_words", "probing_per_doc",
                                                                         "probing_tokens", "seed")}


class SuiteInputs:
    """The hook's activations on the absorption words and the probing snippets, kept for every SAE to score."""

    def __init__(self, loaded, hook: str, batch_size: int = 16):
        seed = DEFAULTS["seed"]
        tokenizer = loaded.tokenizer
        words = absorption_mod.vocab_words(tokenizer, DEFAULTS["absorption_words"], seed)
        rows = absorption_mod.prompt_rows(tokenizer, [i for i, _ in words])
        x = acts.at_position(loaded, hook, rows, -1)
        letters = [w[0].lower() for _, w in words]
        order = torch.randperm(len(words), generator=torch.Generator().manual_seed(seed)).tolist()
        cut = int(0.7 * len(order))  # the suite's 70/30 split of the words
        self.absorb = (x[order[:cut]], [letters[i] for i in order[:cut]],
                       x[order[cut:]], [letters[i] for i in order[cut:]])
        self.tasks = [build_task(name, DEFAULTS["probing_per_doc"]) for name in available_tasks()]
        texts = list(dict.fromkeys(t for task in self.tasks for t in task.texts))
        self.row = {t: i for i, t in enumerate(texts)}
        ids, lengths = acts.encode_texts(tokenizer, texts, DEFAULTS["probing_tokens"])
        model = loaded.model
        self.snippets = []  # (activations [b, T, d] in bf16, mask [b, T, 1]) per batch, BOS left out
        for i in range(0, len(ids), batch_size):
            h = hooks.capture(model, ids[i:i + batch_size], [hook])[hook][:, 1:].float()
            mask = (torch.arange(h.shape[1])[None, :] < lengths[i:i + batch_size, None]).float()[..., None]
            self.snippets.append((h.to(torch.bfloat16), mask))
        self.raw = torch.cat([(h.float() * m).sum(1) / m.sum(1).clamp(min=1) for h, m in self.snippets])

    def _pooled_latents(self, sae) -> torch.Tensor:
        out = []
        with torch.no_grad():
            for h, m in self.snippets:
                z = sae.encode(h.float().to(sae.device)).float().cpu()
                out.append((z * m).sum(1) / m.sum(1).clamp(min=1))
        return torch.cat(out)

    def score(self, sae) -> dict:
        """{"absorption": SAEBench's absorption fraction (mean over letters), "full_absorption", "k1": k=1 probe
        accuracy (mean over tasks), "raw": the raw-activation probe's}."""
        ab = absorption_mod.absorption(*self.absorb, sae, acts.decoder_directions(sae))
        lat = self._pooled_latents(sae)
        results = {}
        for task in self.tasks:
            rows = torch.tensor([self.row[t] for t in task.texts])
            results[task.name] = probing.probe_task(task, self.raw[rows], lat[rows], ks=(1,), seed=DEFAULTS["seed"])
        summary = probing.summarize(results, ks=(1,))
        return {"absorption": ab["absorption_fraction"], "full_absorption": ab["absorption_rate"],
                "k1": summary.get("k1"), "raw": summary.get("raw")}
