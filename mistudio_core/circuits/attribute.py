"""Attribution of one target (a logit, or a difference of two) to SAE features, errors and input tokens.

Sites are residual-stream hooks with an SAE each, in execution order s = 1..n; site 0 is the token embedding
(`blocks.0.hook_resid_pre`). One forward pass of the frozen model (`frozen.py`) runs with every site's activation
h_s replaced by a leaf r_s of the same value, so the graph splits into segments r_{s-1} → h_s. Then:

- g_s = ∂m/∂r_s is chained back segment by segment (one backward each): the total effect of the residual at s.
- At a site, h = decode(encode(h)) + err exactly, so its nodes are the active features (value a = the code),
  one error node per position (the vector err, whose "activation" is its norm) and the decoder bias (a constant,
  not a node). Node effect (Marks et al.'s indirect effect, gradient × activation): feature a·∂⟨g,decode(z)⟩/∂z,
  error ⟨err, g⟩, token ⟨emb, g⟩.
- An edge u → d, u at site s−1 and d at site s, is the part of u's effect that flows through d:
  u · ∂(d's effect-weighted value)/∂u through the segment. For a feature d the value is ∂m/∂a_d · a_d(h_s), for an
  error ⟨g_s, err(h_s)⟩, both differentiated through the SAE's public `encode`/`decode`. Since the node values of a
  site add up to g_s·h_s, a node's out-edges to all of the next site's nodes sum to its effect exactly (in the
  linearised model) — the property the tests check.

Position 0 (BOS, the attention sink, with a norm several times the others) has no feature nodes by default: its
codes are zeroed and its whole residual is that position's error node, as circuit-tracer does (`zero_start`);
its features otherwise dominate every graph, and ablating any of them breaks the model whatever the prompt.

Only the residual stream is decomposed (SAEs at hook_resid_pre / hook_resid_post): every path from one site to a
later one passes through the sites between, so edges between consecutive sites are the whole graph.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from ..model import hooks
from .frozen import frozen


@dataclass
class Site:
    """One SAE at one residual hook."""

    hook: str
    """TransformerLens hook name, e.g. `blocks.8.hook_resid_post`."""
    sae: Any
    """An SAE with public `encode(x) -> codes` and `decode(codes) -> x̂` (any architecture)."""
    sae_id: str = ""
    """Library id (for labels, links and export); empty for an in-memory SAE."""


@dataclass
class SiteState:
    """What one forward pass left at a site (site 0, the embedding, has no SAE)."""

    h: torch.Tensor          # [T, d] the residual, a function of the previous site's leaf
    r: torch.Tensor          # [T, d] the leaf that replaced it downstream
    codes: torch.Tensor | None = None   # [T, F] SAE codes
    err: torch.Tensor | None = None     # [T, d] h − decode(codes)
    g: torch.Tensor | None = None       # [T, d] ∂m/∂r
    dz: torch.Tensor | None = None      # [T, F] ∂m/∂codes


@dataclass
class Attribution:
    """Everything an attribution pass computed (unpruned)."""

    sites: list[Site]
    states: list[SiteState]
    """states[0] is the embedding; states[s] belongs to sites[s-1]."""
    value: float
    """The target m in the unmodified forward pass."""
    logits: torch.Tensor
    """Last position's logits [V]."""
    bias_effects: list[float] = field(default_factory=list)
    """Per site, the effect of the decoder bias (a constant, not a node)."""
    zero_start: bool = True
    """Position 0's features were folded into its error node."""

    def feature_effects(self, s: int) -> torch.Tensor:
        """[T, F] effect of every code at site s (zero where inactive)."""
        st = self.states[s]
        return st.dz * st.codes

    def error_effects(self, s: int) -> torch.Tensor:
        st = self.states[s]
        return (st.err * st.g).sum(-1)

    def embedding_effects(self) -> torch.Tensor:
        st = self.states[0]
        return (st.r.detach()[0] * st.g).sum(-1)


def _decode_vjp(sae, codes: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """∂⟨v, decode(z)⟩/∂z at z = codes (the decoder is affine: this is W_dec·v / scale per row)."""
    z = codes.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        out = sae.decode(z)
        (grad,) = torch.autograd.grad(out, z, grad_outputs=v.to(out.dtype))
    return grad.to(codes.dtype)


def _codes(sae, h: torch.Tensor, zero_start: bool) -> torch.Tensor:
    codes = sae.encode(h)
    if zero_start and codes.shape[0] > 1:
        keep = torch.ones(codes.shape[0], 1, dtype=codes.dtype, device=codes.device)
        keep[0] = 0
        codes = codes * keep
    return codes


def run(model, sites: list[Site], input_ids: torch.Tensor, target: Callable[[torch.Tensor], torch.Tensor],
        zero_start: bool = True) -> Attribution:
    """The forward pass and the chain of total-effect gradients; `target(last_logits[V]) -> scalar`."""
    net = hooks.unwrap(model)
    states: list[SiteState] = []

    def embed(h):
        r = h.detach().clone().requires_grad_(True)
        states.append(SiteState(h=h, r=r))
        return r

    def at_site(site: Site):
        def fn(h):
            with torch.no_grad():
                codes = _codes(site.sae, h[0], zero_start)
                err = h[0] - site.sae.decode(codes).to(h.dtype)
            r = h.detach().clone().requires_grad_(True)
            states.append(SiteState(h=h, r=r, codes=codes, err=err))
            return r
        return fn

    ids = input_ids.reshape(1, -1).to(net.device)
    with torch.enable_grad(), frozen(net), contextlib.ExitStack() as stack:
        stack.enter_context(hooks.intervene(net, "blocks.0.hook_resid_pre", embed))
        for site in sites:
            stack.enter_context(hooks.intervene(net, site.hook, at_site(site)))
        logits = net(input_ids=ids, use_cache=False).logits[0, -1]
        m = target(logits)
        states[-1].g = torch.autograd.grad(m, states[-1].r, retain_graph=True)[0]
        for s in range(len(states) - 1, 0, -1):
            states[s - 1].g = torch.autograd.grad(states[s].h, states[s - 1].r, grad_outputs=states[s].g,
                                                  retain_graph=True)[0]
    att = Attribution(sites=sites, states=states, value=float(m.detach()), logits=logits.detach(),
                      zero_start=zero_start)
    for s, site in enumerate(sites, start=1):
        st = states[s]
        st.g = st.g[0]
        st.dz = _decode_vjp(site.sae, st.codes, st.g)
        with torch.no_grad():
            bias = site.sae.decode(torch.zeros_like(st.codes[:1]))
            att.bias_effects.append(float((bias.to(st.g.dtype) * st.g).sum()))
    states[0].g = states[0].g[0]
    return att


def edge_vectors(att: Attribution, s: int, targets: list[tuple[str, int, int]]) -> torch.Tensor:
    """For kept nodes at site s ≥ 1 — ("feature", pos, index) or ("error", pos, -1) — the gradient of each one's
    effect-weighted value w.r.t. the previous site's leaf: [n, T, d]. Edge weights to upstream nodes follow by
    multiplying with their values (`upstream_weights`)."""
    st, prev, sae = att.states[s], att.states[s - 1], att.sites[s - 1].sae
    if not targets:
        return torch.zeros(0, *prev.r.shape[1:], dtype=prev.r.dtype)
    with torch.enable_grad():
        hj = st.h.detach()[0].clone().requires_grad_(True)
        codes = _codes(sae, hj, att.zero_start)
        recon = sae.decode(codes).to(hj.dtype)
        scalars = torch.stack([codes[pos, feat] * st.dz[pos, feat] if kind == "feature"
                               else (st.g[pos] * (hj[pos] - recon[pos])).sum() for kind, pos, feat in targets])
        try:  # one batched backward per site (vmap over the targets); some ops have no batching rule
            eye = torch.eye(len(targets), dtype=scalars.dtype)
            (vh,) = torch.autograd.grad(scalars, hj, grad_outputs=eye, retain_graph=True, is_grads_batched=True)
            (vr,) = torch.autograd.grad(st.h, prev.r, grad_outputs=vh.unsqueeze(1), retain_graph=True,
                                        is_grads_batched=True)
            return vr[:, 0].detach()
        except RuntimeError:
            pass
        out = torch.zeros(len(targets), *prev.r.shape[1:], dtype=prev.r.dtype)
        for n in range(len(targets)):
            (vh,) = torch.autograd.grad(scalars[n], hj, retain_graph=True)
            (vr,) = torch.autograd.grad(st.h, prev.r, grad_outputs=vh.unsqueeze(0), retain_graph=True)
            out[n] = vr[0]
    return out


def upstream_weights(att: Attribution, s: int, vectors: torch.Tensor, sources: list[tuple[str, int, int]]
                     ) -> torch.Tensor:
    """Edge weights [n_targets, n_sources] from nodes at site s−1 (`sources`, as in `edge_vectors`, plus
    ("embedding", pos, -1) at site 0) given the target vectors of `edge_vectors(att, s, ...)`."""
    prev = att.states[s - 1]
    w = torch.zeros(vectors.shape[0], len(sources), dtype=vectors.dtype)
    feats = [(j, p, f) for j, (k, p, f) in enumerate(sources) if k == "feature"]
    if feats:
        sae = att.sites[s - 2].sae
        for n in range(vectors.shape[0]):
            dz = _decode_vjp(sae, prev.codes, vectors[n])
            for j, p, f in feats:
                w[n, j] = dz[p, f] * prev.codes[p, f]
    for j, (kind, p, _f) in enumerate(sources):
        if kind == "error":
            w[:, j] = vectors[:, p] @ prev.err[p]
        elif kind == "embedding":
            w[:, j] = vectors[:, p] @ prev.r.detach()[0, p]
    return w
