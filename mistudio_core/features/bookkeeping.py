"""Streaming per-feature statistics over SAE codes, in memory that grows with d_sae × k, never with tokens.

Each batch is its nonzero codes `(tok, feat, vals)` (`update_sparse`; `update` lists them from dense `codes
[B, T, F]`) with the global ids of its B contexts and an eligibility mask `[B, T]` (token filters; ineligible
positions count as "not firing"). A feature *fires* at a token when its code is `> threshold`.

Everything below is computed from S = the firing (token, feature) entries (for a TopK SAE k per token, so the
per-token work does not grow with d_sae); per batch, a few [F, B] and [F, k] vectors are touched:
- count[f] += |S_f|, sum[f] += Σ_{S_f} a, max[f] = max(max[f], max_{S_f} a)       (mean = sum / count)
- hist[f, bin(a)] += 1 for a in S_f, with fixed log-spaced bins shared by all features (so merging batches is
  exact; values outside [hist_min, hist_max) go to the first/last bin)
- top-k examples: one candidate per (context, feature) — the context's peak value and first peak position —
  merged with the current k by an unsorted `torch.topk` over `[F', k + B]` for the F' features with a candidate
  above their current worst slot (fewer and fewer as the stream goes on); a newcomer overwrites an evicted slot
  in place. Cost O(F'·(k+B)) per batch, independent of T; the slots are sorted once at the end (`sorted_top`).
- quantile reservoir: the same merge on uniform random keys gives, per feature, a uniform random sample of R
  contexts in which it fired (a bottom-k sketch); quantile examples are drawn from it at the end.
- co-occurrence (optional): token-level co-firing counts among the N features that fired most in the first batch.
- example windows (optional, `window=W`): each top/reservoir slot also keeps the W activations around its peak,
  cut from the batch's codes when the slot is taken (two binary searches per window in the batch's entries,
  sorted feature-major), so extraction needs no second pass over the examples' contexts. Cost: F·(k+R)·W
  float16 (the output's own size) plus the newly taken slots' windows per batch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class TopSlots:
    """k best (value, context, position) per feature; unused slots hold value -inf and context -1."""

    values: torch.Tensor
    ctx: torch.Tensor
    pos: torch.Tensor
    win: torch.Tensor | None = None
    """[F, S, W] float16 activations of the window around each slot's peak (None when windows are off)."""

    @classmethod
    def empty(cls, n_features: int, k: int, device, window: int = 0) -> "TopSlots":
        return cls(
            torch.full((n_features, k), -math.inf, device=device),
            torch.full((n_features, k), -1, dtype=torch.long, device=device),
            torch.zeros((n_features, k), dtype=torch.long, device=device),
            torch.zeros((n_features, k, window), dtype=torch.float16, device=device) if window else None,
        )

    def gather(self, idx: torch.Tensor) -> "TopSlots":
        """The slots `idx [F, S']` of every row (windows included)."""
        win = None if self.win is None else self.win.gather(1, idx[..., None].expand(-1, -1, self.win.shape[2]))
        return TopSlots(self.values.gather(1, idx), self.ctx.gather(1, idx), self.pos.gather(1, idx), win)


def hist_edges(n_bins: int, lo: float, hi: float) -> torch.Tensor:
    """Log-spaced bin edges shared by all features: n_bins + 1 values from lo to hi."""
    return torch.logspace(math.log10(lo), math.log10(hi), n_bins + 1, dtype=torch.float64)


def hist_bins(values: torch.Tensor, n_bins: int, lo: float, hi: float) -> torch.Tensor:
    """Bin index of each positive value on the log-spaced grid; out-of-range values are clamped to the ends."""
    scaled = (torch.log10(values.double()) - math.log10(lo)) / (math.log10(hi) - math.log10(lo)) * n_bins
    return scaled.floor().clamp_(0, n_bins - 1).long()


class FeatureAccumulator:
    """Accumulates the statistics above; call `update` per batch, then read the attributes."""

    def __init__(self, n_features: int, k: int = 100, threshold: float = 0.0, reservoir: int = 64,
                 n_bins: int = 64, hist_min: float = 1e-3, hist_max: float = 1e3, cooc_features: int = 0,
                 seed: int = 0, device: str | torch.device = "cpu", window: int = 0, window_before: int = 0):
        self.n_features, self.k, self.threshold = n_features, k, threshold
        self.window, self.window_before = window, window_before  # W tokens kept per slot, W_b of them before
        self.n_bins, self.hist_min, self.hist_max = n_bins, hist_min, hist_max
        self.device = torch.device(device)
        self.n_tokens = 0
        self.count = torch.zeros(n_features, dtype=torch.long, device=self.device)
        self.sum = torch.zeros(n_features, dtype=torch.float64, device=self.device)
        self.max = torch.zeros(n_features, device=self.device)
        self.hist = torch.zeros(n_features * n_bins, dtype=torch.long, device=self.device)
        self.top = TopSlots.empty(n_features, k, self.device, window)
        self.res = TopSlots.empty(n_features, reservoir, self.device, window)
        self._entries: tuple | None = None  # the current batch's (sorted keys, values, tokens): _window_codes
        self.res_keys = torch.full((n_features, reservoir), -math.inf, device=self.device)
        self.cooc_n = cooc_features
        self.cooc_ids: torch.Tensor | None = None
        self.cooc: torch.Tensor | None = None
        self._gen = torch.Generator(device=self.device).manual_seed(seed)

    def update(self, codes: torch.Tensor, ctx_ids: torch.Tensor, mask: torch.Tensor | None = None,
               inplace: bool = False) -> None:
        """Add one batch: `codes [B, T, F]`, `ctx_ids [B]` (global context ids), `mask [B, T]` (True = count it).
        Reads the dense codes once to list their nonzero entries, then `update_sparse`. (`inplace` is kept for
        callers of the old signature; the codes are never written.)"""
        B, T, F = codes.shape
        flat = codes.detach().to(self.device, torch.float32).reshape(B * T, F)
        tok, feat = flat.nonzero(as_tuple=True)  # the one pass over the dense batch (row-major: keys sorted)
        self.update_sparse(tok, feat, flat[tok, feat], B, T, ctx_ids, mask)

    def update_sparse(self, tok: torch.Tensor, feat: torch.Tensor, vals: torch.Tensor, B: int, T: int,
                      ctx_ids: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        """Add one batch given as its nonzero codes: entry i is `vals[i]` at token `tok[i]` (0..B·T-1, context
        `tok // T`) of feature `feat[i]`; every other code is 0. Per-token work is proportional to the entries
        (a TopK SAE's k per token), not to d_sae."""
        dev = self.device
        tok, feat = tok.to(dev, torch.long), feat.to(dev, torch.long)
        vals, ctx_ids = vals.detach().to(dev, torch.float32), ctx_ids.to(dev, torch.long)
        fired = vals > self.threshold
        if mask is not None:
            mask = mask.to(dev).reshape(-1)
            fired &= mask[tok]  # filtered tokens never count as firing (windows still show them)
            self.n_tokens += int(mask.sum())
        else:
            self.n_tokens += B * T
        ftok, ffeat, fvals = tok[fired], feat[fired], vals[fired]
        self._update_stats(ffeat, fvals)
        cmax, cpos = self._context_peaks(ftok, ffeat, fvals, B, T)
        if self.window:  # entries sorted feature-major, so a window's entries are one contiguous run
            keys, order = (feat * (B * T) + tok).sort()
            self._entries = (keys, vals[order], B * T)
        self._T = T
        self._update_top(cmax, cpos, ctx_ids)
        self._update_reservoir(cmax, cpos, ctx_ids)
        self._entries = None
        if self.cooc_n:
            self._update_cooc(ftok, ffeat, B * T)

    def _window_codes(self, feat: torch.Tensor, tok0: torch.Tensor, W: int) -> torch.Tensor:
        """Codes of feature `feat[i]` at batch tokens `tok0[i] .. tok0[i] + W - 1`, `[L, W]` (0 where no entry):
        two binary searches per window in the feature-major keys, then one scatter of the entries found."""
        keys, vals, n_tok = self._entries
        out = torch.zeros((len(feat), W), device=self.device)
        base = feat * n_tok + tok0
        lo, hi = torch.searchsorted(keys, base), torch.searchsorted(keys, base + W)
        n = hi - lo
        total = int(n.sum())
        if total:
            slot = torch.repeat_interleave(torch.arange(len(feat), device=self.device), n)
            e = lo[slot] + torch.arange(total, device=self.device) - (n.cumsum(0) - n)[slot]
            out[slot, keys[e] - base[slot]] = vals[e]
        return out

    def _update_stats(self, feat: torch.Tensor, vals: torch.Tensor) -> None:
        self.count += torch.bincount(feat, minlength=self.n_features)
        self.sum.index_add_(0, feat, vals.double())
        self.max.scatter_reduce_(0, feat, vals, reduce="amax")
        bins = hist_bins(vals, self.n_bins, self.hist_min, self.hist_max)
        self.hist += torch.bincount(feat * self.n_bins + bins, minlength=self.n_features * self.n_bins)

    def _context_peaks(self, tok, feat, vals, B: int, T: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Per (context, feature): the peak value (0 if it never fired) and its first position, `[B, F]` each,
        computed from the firing entries only (TopK codes are ~0.2% of the dense batch)."""
        F = self.n_features
        key = (tok // T) * F + feat
        cmax = torch.zeros(B * F, device=self.device).scatter_reduce_(0, key, vals, reduce="amax")
        at_peak = vals == cmax[key]
        cpos = torch.full((B * F,), T, dtype=torch.long, device=self.device)
        cpos.scatter_reduce_(0, key[at_peak], (tok % T)[at_peak], reduce="amin")
        return cmax.view(B, F), cpos.clamp_max_(T - 1).view(B, F)

    def _merge_rows(self, slots: TopSlots, ranks: torch.Tensor, keys, ctx_ids, cpos, vals=None):
        """Keep the S best `ranks` per feature among the current slots and the batch's candidates `keys [F, B]`,
        for the features with a candidate above their current worst slot only (fewer and fewer as the stream
        goes on). Slots stay in place: a candidate that gets in overwrites one evicted slot, so only the new
        slots' values, contexts, positions and windows are written. `vals` (reservoir) are carried values when
        the ranking keys are random; for the top slots the keys are the values (`ranks is slots.values`)."""
        rows = torch.nonzero(keys.amax(1) > ranks.amin(1)).flatten()
        if not len(rows):
            return
        S, new_keys = ranks.shape[1], keys[rows]
        top, idx = torch.topk(torch.cat([ranks[rows], new_keys], 1), S, dim=1, sorted=False)
        taken = (idx >= S) & (top > -math.inf)  # batch candidates that got in (a -inf never displaces a slot)
        n_new = taken.sum(1, keepdim=True)
        evicted = torch.ones((len(rows), S + keys.shape[1]), dtype=torch.bool, device=self.device)
        evicted = evicted.scatter_(1, idx, False)[:, :S]
        evicted &= evicted.cumsum(1) <= n_new  # the first n_new evicted slots of each row take the newcomers
        r, j = taken.nonzero(as_tuple=True)  # row-major, so row by row the two lists pair up in order
        r_ev, slot = evicted.nonzero(as_tuple=True)
        f, b = rows[r], idx[r, j] - S
        ranks[f, slot] = new_keys[r, b]
        if vals is not None:
            slots.values[f, slot] = vals[f, b]
        slots.ctx[f, slot], slots.pos[f, slot] = ctx_ids[b], cpos[b, f]
        if slots.win is not None:  # cut from the batch's codes around the peak, kept inside the context
            W, T = slots.win.shape[2], self._T
            start = (cpos[b, f] - self.window_before).clamp(0, max(T - W, 0))
            slots.win[f, slot] = self._window_codes(f, b * T + start, W).half()

    def _update_top(self, cmax, cpos, ctx_ids) -> None:
        keys = cmax.T.masked_fill(cmax.T <= self.threshold, -math.inf)  # [F, B]; non-firing never enter
        self._merge_rows(self.top, self.top.values, keys, ctx_ids, cpos)

    def _update_reservoir(self, cmax, cpos, ctx_ids) -> None:
        fired = cmax.T > self.threshold
        keys = torch.rand(fired.shape, generator=self._gen, device=self.device).masked_fill(~fired, -math.inf)
        vals = cmax.T.masked_fill(~fired, -math.inf)
        self._merge_rows(self.res, self.res_keys, keys, ctx_ids, cpos, vals)

    def _update_cooc(self, tok, feat, n_tok: int) -> None:
        if self.cooc_ids is None:  # track the features that fire most in the first batch
            n = min(self.cooc_n, self.n_features)
            self.cooc_ids = torch.topk(torch.bincount(feat, minlength=self.n_features), n).indices.sort().values
            self.cooc = torch.zeros((n, n), dtype=torch.long, device=self.device)
            self._cooc_slot = torch.full((self.n_features,), -1, dtype=torch.long, device=self.device)
            self._cooc_slot[self.cooc_ids] = torch.arange(n, device=self.device)
        slot = self._cooc_slot[feat]
        keep = slot >= 0
        fired = torch.zeros((n_tok, len(self.cooc_ids)), device=self.device)
        fired[tok[keep], slot[keep]] = 1.0
        self.cooc += (fired.T @ fired).round().long()

    # ---- results -------------------------------------------------------------------------------------------
    def sorted_top(self) -> TopSlots:
        """The top-k slots, best first (slots are kept unsorted while streaming)."""
        return self.top.gather(self.top.values.argsort(dim=1, descending=True))

    def mean(self) -> torch.Tensor:
        """Mean activation over the tokens where the feature fired (0 for dead features)."""
        return torch.where(self.count > 0, self.sum / self.count.clamp_min(1), torch.zeros_like(self.sum))

    def histogram(self) -> torch.Tensor:
        return self.hist.view(self.n_features, self.n_bins)

    def edges(self) -> torch.Tensor:
        return hist_edges(self.n_bins, self.hist_min, self.hist_max)

    def quantile_picks(self, n_quantiles: int, per_quantile: int) -> TopSlots:
        """From each feature's random sample (minus its top-k contexts), sort by value, split into n_quantiles
        equal-count groups and pick `per_quantile` evenly spaced examples per group. Shape [F, Q·E]."""
        vals, ctx, pos = self.res.values.clone(), self.res.ctx, self.res.pos
        for start in range(0, self.n_features, 2048):  # chunked: [f, R, k] comparison would be large at once
            sl = slice(start, start + 2048)
            in_top = (ctx[sl, :, None] == self.top.ctx[sl, None, :]).any(-1)
            vals[sl] = vals[sl].masked_fill(in_top, -math.inf)
        order = vals.argsort(dim=1, descending=True)  # valid (finite) first, highest first
        vals, ctx, pos = vals.gather(1, order), ctx.gather(1, order), pos.gather(1, order)
        n_valid = torch.isfinite(vals).sum(1, keepdim=True)  # [F, 1]
        q = torch.arange(n_quantiles, device=self.device).repeat_interleave(per_quantile)  # group of each slot
        j = torch.arange(per_quantile, device=self.device).repeat(n_quantiles)
        # group q holds the q-th lowest slice of the sorted-descending list, i.e. ranks [lo, hi) from the bottom
        lo = (n_valid * q[None] // n_quantiles)
        hi = (n_valid * (q[None] + 1) // n_quantiles)
        width = hi - lo
        spread = lo + (width * (2 * j[None] + 1)) // (2 * per_quantile)
        from_bottom = torch.where(width >= per_quantile, spread, lo + j[None])
        idx = (n_valid - 1 - from_bottom).clamp_min(0)
        ok = (width > 0) & (j[None] < width)  # fewer samples than picks: keep only distinct ones
        out = self.res.gather(order.gather(1, idx))  # windows follow their slots
        out.values, out.ctx = vals.gather(1, idx).masked_fill(~ok, -math.inf), ctx.gather(1, idx).masked_fill(~ok, -1)
        return out
