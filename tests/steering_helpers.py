"""Tiny stand-ins for steering tests: an SAE-like module with the contract's names, and a tiny Llama."""
from __future__ import annotations

import torch

from tiny_models import tiny_config, tiny_model


class TinySAE(torch.nn.Module):
    """ReLU SAE with `W_enc [d_in, d_sae]`, `b_enc`, `W_dec [d_sae, d_in]`, `b_dec`, `encode`, `decode`.

    `tied=True` makes W_enc = W_decᵀ with unit-norm decoder rows, so W_dec[f]·W_enc[:, f] = 1 and a feature-space
    clamp re-encodes exactly to its target."""

    def __init__(self, d_in: int = 32, d_sae: int = 64, seed: int = 0, tied: bool = True):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        w_dec = torch.randn(d_sae, d_in, generator=g)
        w_dec = w_dec / w_dec.norm(dim=1, keepdim=True)
        self.W_dec = torch.nn.Parameter(w_dec)
        self.W_enc = torch.nn.Parameter(w_dec.T.clone() if tied else torch.randn(d_in, d_sae, generator=g) * 0.2)
        self.b_enc = torch.nn.Parameter(torch.zeros(d_sae))
        self.b_dec = torch.nn.Parameter(torch.randn(d_in, generator=g) * 0.01)

    def encode(self, x):
        return torch.relu((x - self.b_dec) @ self.W_enc + self.b_enc)

    def decode(self, z):
        return z @ self.W_dec + self.b_dec

    def forward(self, x):
        return self.decode(self.encode(x))


def llama(seed: int = 0):
    return tiny_model("llama", seed=seed)


HOOK = "blocks.1.hook_resid_post"


def tiny_target(tokenizer_dir):
    """A `SteeringTarget` (what `load_target` returns) over a tiny Llama with a real tokenizer and a TinySAE."""
    import transformers as tf

    from mistudio_core.steering.loader import SteeringTarget
    from tiny_tokenizer import make_tiny_tokenizer

    tok = make_tiny_tokenizer(tokenizer_dir)
    cfg = tiny_config("llama")
    cfg.vocab_size, cfg.eos_token_id = len(tok), tok.eos_token_id
    torch.manual_seed(0)
    model = tf.AutoModelForCausalLM.from_config(cfg, attn_implementation="eager").eval()
    return SteeringTarget(sae=TinySAE(), hook_name=HOOK, model=model, tokenizer=tok,
                          manifest={"id": "tiny", "d_sae": 64})
