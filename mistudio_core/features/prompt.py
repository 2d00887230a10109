"""Which features fire on a typed prompt, token by token (the Features tab's prompt view)."""
from __future__ import annotations

import torch

from ..platform.errors import ValidationError

MAX_PROMPT_TOKENS = 512


@torch.no_grad()
def prompt_features(loaded_model, sae, hook_name: str, text: str, top_n: int = 5, threshold: float = 0.0) -> dict:
    """Tokenize `text` (with BOS if the tokenizer adds one), run the model to the hook, encode.

    Returns `{"tokens": [str], "features": [[{"index", "act"}] per token, strongest first, only > threshold],
    "totals": [{"index", "max_act", "n_tokens"}] over the prompt, strongest first}`."""
    from ..model.hooks import capture

    if not text or not text.strip():
        raise ValidationError("The prompt is empty. Type some text to see which features fire on it.")
    tok = loaded_model.tokenizer
    ids = tok(text, return_tensors="pt")["input_ids"][:, :MAX_PROMPT_TOKENS]
    acts = capture(loaded_model.model, ids, [hook_name])[hook_name]
    p = next(sae.parameters())
    codes = sae.encode(acts.to(p.device, p.dtype))[0].float().cpu()  # [T, d_sae]
    tokens = tok.batch_decode([[i] for i in ids[0].tolist()], clean_up_tokenization_spaces=False)
    vals, idx = codes.topk(min(top_n, codes.shape[1]), dim=1)
    per_token = [[{"index": int(i), "act": float(v)} for v, i in zip(vr, ir) if v > threshold]
                 for vr, ir in zip(vals, idx)]
    mx = codes.amax(0)
    n_fire = (codes > threshold).sum(0)
    order = torch.argsort(mx, descending=True)[:50]
    totals = [{"index": int(f), "max_act": float(mx[f]), "n_tokens": int(n_fire[f])}
              for f in order if mx[f] > threshold]
    return {"tokens": tokens, "features": per_token, "totals": totals}
