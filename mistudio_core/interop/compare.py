"""Compare two SAEs on the same model and hook point by their decoder directions.

For each feature i of A: its best match j in B by cosine of decoder rows, cos(W_dec_A[i], W_dec_B[j]).
A histogram of best-match cosines answers "does my SAE have Gemma Scope's features?": mass near 1 means shared
features, mass near 0 means directions only one SAE learned. Computed in chunks so 16k × 16k stays small.
"""
from __future__ import annotations

import torch

from ..platform.errors import ValidationError
from ..sae.library import load_library_sae
from ..platform.store import Store


def best_matches(w_a: torch.Tensor, w_b: torch.Tensor, chunk: int = 2048) -> tuple[torch.Tensor, torch.Tensor]:
    """(cosine, index) of each row of `w_a`'s nearest row of `w_b`."""
    a = torch.nn.functional.normalize(w_a.float(), dim=1)
    b = torch.nn.functional.normalize(w_b.float(), dim=1)
    cos, idx = [], []
    for start in range(0, a.shape[0], chunk):
        sims = a[start:start + chunk] @ b.T
        c, i = sims.max(dim=1)
        cos.append(c)
        idx.append(i)
    return torch.cat(cos), torch.cat(idx)


def compare_saes(store: Store, sae_a: str, sae_b: str, bins: int = 20) -> dict:
    """Best-match decoder cosines of A's features in B. Comparing an SAE with itself returns `same: True` and a
    warning instead (every feature would match itself at 1.0, which says nothing); two ids holding identical
    decoders are compared but say so."""
    ma, mb = store.manifest("saes", sae_a), store.manifest("saes", sae_b)
    if sae_a == sae_b:
        return {"a": sae_a, "b": sae_b, "same": True, "n_features": ma.get("d_sae"),
                "warning": f"You compared {sae_a!r} with itself: every feature matches itself at cosine 1.0, which "
                           "says nothing. Pick a different SAE B (another training run, or a Gemma Scope SAE of the "
                           "same hook point)."}
    if ma["d_in"] != mb["d_in"]:
        raise ValidationError(f"SAEs have different d_in ({sae_a}: {ma['d_in']}, {sae_b}: {mb['d_in']}); they do not "
                              "read the same activations.")
    warning = None
    if (ma.get("model_id"), ma.get("hook_name")) != (mb.get("model_id"), mb.get("hook_name")):
        warning = (f"Different model/hook: {ma.get('model_id')}@{ma.get('hook_name')} vs "
                   f"{mb.get('model_id')}@{mb.get('hook_name')}; cosines are only meaningful on the same space.")
    cos, idx = best_matches(load_library_sae(store, sae_a).W_dec.detach(),
                            load_library_sae(store, sae_b).W_dec.detach())
    cos = cos.clamp(-1.0, 1.0)  # float rounding gives 1.0000001 for identical rows, which histc would drop
    counts = torch.histc(cos, bins=bins, min=-1.0, max=1.0)
    edges = torch.linspace(-1, 1, bins + 1)
    order = torch.argsort(cos, descending=True)
    if len(cos) and bool((cos > 0.9999).all()) and bool((idx == torch.arange(len(idx))).all()):
        warning = (f"{sae_a!r} and {sae_b!r} have identical decoders (the same SAE twice?): every feature matches "
                   "itself at cosine 1.0.")
    return {"a": sae_a, "b": sae_b, "same": False, "warning": warning, "n_features": len(cos),
            "mean_best_cosine": float(cos.mean()), "fraction_above_0.9": float((cos >= 0.9).float().mean()),
            "fraction_above_0.7": float((cos >= 0.7).float().mean()),
            "histogram": {"edges": edges.tolist(), "counts": counts.tolist()},
            "matches": [{"feature": int(i), "match": int(idx[i]), "cosine": float(cos[i])} for i in order.tolist()]}
