"""Extraction results on disk and their read API.

`saes/<sae_id>/features/` holds (written together, atomically, by renaming a finished temp folder):
- `stats.safetensors`: per-feature `count, sum, max, hist [F, bins]`, `hist_edges`, the top-k and quantile
  example slots (`*_val, *_ctx, *_pos, *_start [F, S]`, ctx -1 = empty), decoder logits, co-occurrence counts,
  and the tokens of every context used by an example (`ctx_ids [U]`, `ctx_tokens [U, T]`), so the results do
  not depend on the dataset still existing.
- `windows.safetensors`: `top_acts [F, k, W]`, `quant_acts [F, Q·E, W]` (float16), read one feature at a time
  through safetensors' memory map, so loading is instant even at 16k features × 1000 examples.
- `meta.json` (config, hook, token counts) and `vocab.json` (display string of every token id).
- Input/output scores (`scores.py`), when computed: `lens_ids [F, 20]`, `input_score, output_score, output_prob`
  (NaN = none: a dead feature), `output_rank, output_token` (-1 = none) in `stats.safetensors`, and
  `meta["scores"]` (how they were computed, or why not). Results from before them load and say "not computed".
"""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from ..platform.errors import NotFoundError, ValidationError
from ..platform.store import atomic_dir, read_json, write_json_atomic


SCORES_MISSING = ("not computed: these results predate input/output scores; re-run the extraction to get them")


def _num(x: float) -> float | None:
    return None if x != x else float(x)  # NaN (no score) -> None (null in JSON)


def features_dir(store, sae_id: str) -> Path:
    return store.path("saes", sae_id) / "features"


class FeatureResults:
    """Per-feature statistics and examples of one SAE (in memory after extraction, or loaded from disk)."""

    def __init__(self, meta: dict, tensors: dict, vocab: list[str], windows=None, labels: dict | None = None):
        self.meta, self.t, self.vocab = meta, tensors, vocab
        self._windows = windows  # dict of tensors, or a Path to windows.safetensors
        self.labels = labels or {}
        self._peak_tokens: torch.Tensor | None = None

    # ---- persistence -----------------------------------------------------------------------------------------
    def save(self, folder: Path) -> Path:
        if not isinstance(self._windows, dict):
            self._windows = {n: self._window_tensor(n, slice(None)) for n in ("top_acts", "quant_acts")}
        with atomic_dir(Path(folder)) as tmp:
            save_file(self.t, str(tmp / "stats.safetensors"))
            save_file(self._windows, str(tmp / "windows.safetensors"))
            write_json_atomic(tmp / "meta.json", self.meta)
            write_json_atomic(tmp / "vocab.json", self.vocab)
        return Path(folder)

    @classmethod
    def load(cls, store, sae_id: str) -> "FeatureResults":
        folder = features_dir(store, sae_id)
        if not (folder / "meta.json").is_file():
            store.manifest("saes", sae_id)  # unknown SAE -> NotFoundError listing the known ones
            raise NotFoundError(f"SAE {sae_id!r} has no extracted features yet. Run an extraction first "
                                f"(Features tab, or `python -m mistudio_core extract run --sae {sae_id} ...`).")
        try:
            tensors = load_file(str(folder / "stats.safetensors"))
        except Exception as e:  # safetensors raises its own error types on a corrupt header
            raise ValidationError(f"Corrupt feature results in {folder}: {e}. Re-run the extraction.") from e
        labels = {}
        try:
            from ..labeling.store import LabelStore
            labels = LabelStore(store, sae_id).all()
        except ImportError:
            pass
        meta = read_json(folder / "meta.json")
        meta["sae_id"] = sae_id
        return cls(meta, tensors, read_json(folder / "vocab.json"), folder / "windows.safetensors", labels)

    def _window_tensor(self, name: str, rows) -> torch.Tensor:
        if isinstance(self._windows, dict):
            return self._windows[name][rows]
        with safe_open(str(self._windows), framework="pt") as f:
            return f.get_slice(name)[rows]

    # ---- per-feature numbers ---------------------------------------------------------------------------------
    @property
    def n_features(self) -> int:
        return int(self.t["count"].shape[0])

    @property
    def n_tokens(self) -> int:
        return int(self.meta["n_tokens"])

    def frequencies(self) -> torch.Tensor:
        """Fraction of (unfiltered) tokens on which each feature fired."""
        return self.t["count"].double() / max(self.n_tokens, 1)

    def means(self) -> torch.Tensor:
        c = self.t["count"]
        return torch.where(c > 0, self.t["sum"] / c.clamp_min(1), torch.zeros_like(self.t["sum"]))

    def label(self, i: int) -> str:
        entry = self.labels.get(i) or self.labels.get(str(i)) or {}
        return entry.get("label", "") if isinstance(entry, dict) else str(entry)

    def table(self) -> list[dict]:
        """One row per feature: index, frequency, mean/max activation, dead/dense flags, label, input and output
        score (None where not computed, or for a dead feature)."""
        freq, mean, mx = self.frequencies().tolist(), self.means().tolist(), self.t["max"].tolist()
        dense_at = self.meta["config"]["dense_threshold"]
        ins, outs = (self.score_column(k).tolist() for k in ("input_score", "output_score"))
        return [{"index": i, "frequency": freq[i], "mean_activation": mean[i], "max_activation": mx[i],
                 "dead": freq[i] == 0, "dense": freq[i] > dense_at, "label": self.label(i),
                 "input_score": _num(ins[i]), "output_score": _num(outs[i])} for i in range(self.n_features)]

    # ---- input / output scores -------------------------------------------------------------------------------
    @property
    def has_scores(self) -> bool:
        return "output_score" in self.t

    def scores_note(self) -> str | None:
        """Why there are no scores (None when there are)."""
        if self.has_scores:
            return None
        return (self.meta.get("scores") or {}).get("why") or SCORES_MISSING

    def score_column(self, name: str) -> torch.Tensor:
        """`input_score` or `output_score` of every feature `[F]` float32, NaN where there is none."""
        if name not in self.t:
            return torch.full((self.n_features,), float("nan"))
        return self.t[name].float()

    def scores(self, i: int) -> dict:
        """Feature `i`'s scores: `{computed, input_score, output_score, output_rank, output_prob, output_token,
        lens_tokens, why}` (numbers None, `why` saying so, when not computed or the feature is dead)."""
        if not self.has_scores:
            return {"computed": False, "input_score": None, "output_score": None, "output_rank": None,
                    "output_prob": None, "output_token": None, "lens_tokens": [], "why": self.scores_note()}
        rank, tok = int(self.t["output_rank"][i]), int(self.t["output_token"][i])
        out = _num(float(self.t["output_score"][i]))
        why = None if out is not None else (self.meta.get("scores") or {}).get("dead", "dead feature")
        return {"computed": True, "input_score": _num(float(self.t["input_score"][i])), "output_score": out,
                "output_rank": rank if rank >= 0 else None, "output_prob": _num(float(self.t["output_prob"][i])),
                "output_token": self.vocab[tok] if tok >= 0 else None,
                "lens_tokens": [self.vocab[t] for t in self.t["lens_ids"][i].tolist()], "why": why}

    # ---- one feature -----------------------------------------------------------------------------------------
    def _rows(self, ctx: torch.Tensor) -> torch.Tensor:
        return torch.searchsorted(self.t["ctx_ids"], ctx.long())

    def start_token_id(self) -> int | None:
        """The id every stored context starts with (BOS, when the tokenization prepends one), else None."""
        first = self.t["ctx_tokens"][:, 0] if len(self.t["ctx_tokens"]) else None
        return int(first[0]) if first is not None and bool((first == first[0]).all()) else None

    def _at_start(self, ctx: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """Whether each peak is at position 0 or right after the start token (BOS, also one inside a context):
        tokens whose residual norm is several times the typical one and that dominate many features' tops."""
        rows = self._rows(ctx)
        prev = self.t["ctx_tokens"][rows, (pos.long() - 1).clamp_min(0)]
        start = self.start_token_id()
        return (pos <= 0) | ((prev == start) if start is not None else torch.zeros_like(pos, dtype=torch.bool))

    def _examples(self, prefix: str, i: int, cols=slice(None), skip_start: bool = False) -> list[dict]:
        ctx = self.t[f"{prefix}_ctx"][i, cols]
        valid = ctx >= 0
        if skip_start and bool(valid.any()):
            idx = torch.nonzero(valid).flatten()
            valid[idx[self._at_start(ctx[idx], self.t[f"{prefix}_pos"][i, cols][idx])]] = False
        keep = torch.nonzero(valid).flatten()
        if not len(keep):
            return []
        acts = self._window_tensor(f"{prefix}_acts", i)[cols][keep].float()
        start, pos = self.t[f"{prefix}_start"][i, cols][keep], self.t[f"{prefix}_pos"][i, cols][keep]
        vals, rows, W = self.t[f"{prefix}_val"][i, cols][keep], self._rows(ctx[keep]), acts.shape[1]
        out = []
        for j in range(len(keep)):
            ids = self.t["ctx_tokens"][rows[j], int(start[j]):int(start[j]) + W].tolist()
            out.append({"tokens": [self.vocab[t] for t in ids], "token_ids": ids, "acts": acts[j].tolist(),
                        "peak": int(pos[j] - start[j]), "context_id": int(ctx[keep[j]]), "value": float(vals[j])})
        return out

    def _quantile_examples(self, i: int, skip_start: bool = False) -> list[dict]:
        Q, E = self.meta["n_quantiles"], self.meta["quantile_examples"]
        groups = []
        for q in range(Q):
            name = f"{100 * q // Q}–{100 * (q + 1) // Q}%"
            groups.append({"quantile": name,
                           "examples": self._examples("quant", i, slice(q * E, (q + 1) * E), skip_start)})
        return groups

    def _histogram(self, i: int) -> dict:
        counts, edges = self.t["hist"][i], self.t["hist_edges"]
        nz = torch.nonzero(counts).flatten()
        if not len(nz):
            return {"edges": [], "counts": []}
        lo, hi = int(nz[0]), int(nz[-1]) + 1
        return {"edges": edges[lo:hi + 1].tolist(), "counts": counts[lo:hi].tolist()}

    def _logits(self, which: str, i: int) -> list:
        ids, vals = self.t[f"{which}_logit_ids"][i].tolist(), self.t[f"{which}_logit_vals"][i].tolist()
        return [[self.vocab[t], v] for t, v in zip(ids, vals)]

    def cooccurring(self, i: int, n: int = 10) -> list[dict]:
        """Features that fire on the same tokens as `i` (only among the tracked most frequent features)."""
        if "cooc_ids" not in self.t:
            return []
        where = torch.nonzero(self.t["cooc_ids"] == i).flatten()
        if not len(where):
            return []
        row = self.t["cooc"][int(where[0])].double()
        diag = self.t["cooc"].diagonal().double()
        jacc = row / (diag[int(where[0])] + diag - row).clamp_min(1)
        jacc[int(where[0])] = -1
        top = jacc.topk(min(n, len(jacc)))
        return [{"index": int(self.t["cooc_ids"][j]), "jaccard": float(v)} for v, j in zip(*top) if v > 0]

    def feature(self, i: int, skip_start: bool = False) -> dict:
        """Everything about feature `i`. `skip_start` leaves out examples peaking at position 0 or on the first
        token after BOS (`n_start_hidden` says how many top examples that hid); the statistics stay whole."""
        if not 0 <= i < self.n_features:
            raise ValidationError(f"Feature {i} does not exist; this SAE has features 0..{self.n_features - 1}.")
        freq = float(self.frequencies()[i])
        top = self._examples("top", i, skip_start=skip_start)
        n_top = int((self.t["top_ctx"][i] >= 0).sum())
        return {
            "index": i, "label": self.label(i), "frequency": freq, "count": int(self.t["count"][i]),
            "mean_activation": float(self.means()[i]), "max_activation": float(self.t["max"][i]),
            "dead": freq == 0, "dense": freq > self.meta["config"]["dense_threshold"],
            "top_examples": top, "n_start_hidden": n_top - len(top),
            "quantile_examples": self._quantile_examples(i, skip_start),
            "histogram": self._histogram(i), "top_logits": self._logits("top", i),
            "bottom_logits": self._logits("bottom", i), "cooccurring": self.cooccurring(i),
            "scores": self.scores(i),
        }

    # ---- search ----------------------------------------------------------------------------------------------
    def peak_tokens(self) -> torch.Tensor:
        """Token id at the peak of every top example `[F, k]` (-1 for empty slots); built once, then cached."""
        if self._peak_tokens is None:
            ctx, pos = self.t["top_ctx"], self.t["top_pos"]
            rows = self._rows(ctx.clamp_min(0).flatten()).clamp_max(len(self.t["ctx_ids"]) - 1)
            toks = self.t["ctx_tokens"][rows, pos.flatten()].view_as(ctx).long()
            self._peak_tokens = toks.masked_fill(ctx < 0, -1)
        return self._peak_tokens

    def token_ids(self, text: str) -> list[int]:
        """Vocabulary ids whose display string is `text` (exactly; else ignoring case and surrounding spaces)."""
        exact = [i for i, s in enumerate(self.vocab) if s == text]
        return exact or [i for i, s in enumerate(self.vocab) if s.strip().lower() == text.strip().lower()]

    def search_token(self, text: str, n: int = 50) -> list[dict]:
        """Features whose top examples peak on the token `text`, most examples (then highest peak) first."""
        ids = self.token_ids(text)
        if not ids or not len(self.t["ctx_ids"]):
            return []
        hit = torch.isin(self.peak_tokens(), torch.tensor(ids))
        n_hit = hit.sum(1)
        best = self.t["top_val"].masked_fill(~hit, 0).amax(1)
        order = sorted(torch.nonzero(n_hit).flatten().tolist(), key=lambda f: (-int(n_hit[f]), -float(best[f])))
        return [{"index": f, "n_examples": int(n_hit[f]), "max_activation": float(best[f]), "label": self.label(f)}
                for f in order[:n]]
