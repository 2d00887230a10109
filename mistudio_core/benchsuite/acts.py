"""Activations the benchmark parts read: texts → token rows → hook activations (the forward stops after the
hook's layer), pooled per text or taken at one position, with the SAE's latents beside them.

Rows are `[BOS, t1, ..., t_n]` like the training tokenization; texts shorter than n are right-padded. The model
is causal, so padding after a token never changes that token's activation; pooling masks it out, and position 0
(BOS, several times the typical norm, never trained on) is left out of every mean.
"""
from __future__ import annotations

from typing import Callable

import torch

from ..model import hooks


def _model(loaded):
    return loaded if isinstance(loaded, torch.nn.Module) else loaded.model


def bos_id(tokenizer) -> int | None:
    return tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id


def encode_texts(tokenizer, texts: list[str], n_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`(ids [N, 1 + n_tokens], lengths [N])`: each text's first `n_tokens` tokens after BOS, right-padded."""
    bos = bos_id(tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (bos or 0)
    encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
    ids = torch.full((len(texts), 1 + n_tokens), pad, dtype=torch.long)
    lengths = torch.zeros(len(texts), dtype=torch.long)
    for i, row in enumerate(encoded):
        row = row[:n_tokens]
        ids[i, 0] = bos if bos is not None else row[0]
        ids[i, 1:1 + len(row)] = torch.tensor(row, dtype=torch.long)
        lengths[i] = len(row)
    return ids, lengths


def _batches(n: int, size: int, progress, should_stop, what: str):
    for i in range(0, n, size):
        if should_stop is not None and should_stop():
            return
        yield i
        if progress:
            progress(min(1.0, (i + size) / n), f"{what}: {min(n, i + size)}/{n}")


def pooled(loaded, hook_name: str, sae, ids: torch.Tensor, lengths: torch.Tensor, batch_size: int = 16,
           progress: Callable[[float, str], None] | None = None,
           should_stop: Callable[[], bool] | None = None) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Mean over each row's real tokens (BOS excluded) of the activation `[N, d]` and of the SAE's latents
    `[N, d_sae]` (the mean of the codes, not the code of the mean). None when stopped."""
    model = _model(loaded)
    raw, lat = [], []
    for i in _batches(len(ids), batch_size, progress, should_stop, "texts"):
        batch, n = ids[i:i + batch_size], lengths[i:i + batch_size]
        x = hooks.capture(model, batch, [hook_name])[hook_name][:, 1:].float()
        mask = (torch.arange(x.shape[1])[None, :] < n[:, None]).to(x.device, x.dtype)[..., None]
        denom = mask.sum(1).clamp(min=1)
        with torch.no_grad():
            z = sae.encode(x.to(sae.device)).float().to(x.device)
        raw.append(((x * mask).sum(1) / denom).cpu())
        lat.append(((z * mask).sum(1) / denom).cpu())
    if len(raw) * batch_size < len(ids):
        return None
    return torch.cat(raw), torch.cat(lat)


def at_position(loaded, hook_name: str, ids: torch.Tensor, position: int, batch_size: int = 32,
                progress: Callable[[float, str], None] | None = None,
                should_stop: Callable[[], bool] | None = None) -> torch.Tensor | None:
    """The activation `[N, d]` at one position of equal-length rows `ids [N, T]`; None when stopped."""
    model = _model(loaded)
    out = []
    for i in _batches(len(ids), batch_size, progress, should_stop, "prompts"):
        out.append(hooks.capture(model, ids[i:i + batch_size], [hook_name])[hook_name][:, position].float().cpu())
    if len(out) * batch_size < len(ids):
        return None
    return torch.cat(out)


def token_acts(loaded, hook_name: str, ids: torch.Tensor, batch_size: int = 8,
               should_stop: Callable[[], bool] | None = None) -> torch.Tensor | None:
    """The activations `[N, T, d]` of every position of `ids` (float32, on the CPU); None when stopped."""
    model = _model(loaded)
    out = []
    for i in _batches(len(ids), batch_size, None, should_stop, "contexts"):
        out.append(hooks.capture(model, ids[i:i + batch_size], [hook_name])[hook_name].float().cpu())
    if len(out) * batch_size < len(ids):
        return None
    return torch.cat(out)


def decoder_directions(sae, chunk: int = 1024) -> torch.Tensor:
    """[d_sae, d_in] what one unit of each latent adds to the reconstruction, in raw activation units:
    decode(e_i) − decode(0) (any architecture whose decoder is linear; folds `norm_scale` by construction)."""
    with torch.no_grad():
        zero = sae.decode(torch.zeros(1, sae.cfg.d_sae, device=sae.device)).float()
        rows = []
        for i in range(0, sae.cfg.d_sae, chunk):
            n = min(chunk, sae.cfg.d_sae - i)
            eye = torch.zeros(n, sae.cfg.d_sae, device=sae.device)
            eye[torch.arange(n), i + torch.arange(n)] = 1.0
            rows.append((sae.decode(eye).float() - zero).cpu())
    return torch.cat(rows)
