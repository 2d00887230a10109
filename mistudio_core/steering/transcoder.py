"""Steering with a transcoder: its features are read at one hook and written at another.

A transcoder (an SAE whose config sets `d_out`, e.g. reading `blocks.8.hook_mlp_in` and reconstructing
`blocks.8.hook_mlp_out`) has features that *write* W_dec[f] into its output hook, so every steering write (additive,
orthogonal, projection_cap, the clamps, concept vectors) happens there: the steering functions' `hook_name` is the
output hook. A feature's *activation* a_f is the encoding of the input hook's activation of the same forward pass.
The input hook runs earlier in the same block, so `steer` installs a capture there that hands the `Steerer` each
forward pass's input, and the intervention at the output hook reads it: a clamp to c adds (c − a_f(x_in))·W_dec[f].

Encoding the output hook's activation instead would run without an error (mlp_in and mlp_out have the same width)
and mean nothing, so `read_hook` is the one place that says which hook an SAE encodes, and a transcoder's `Steerer`
refuses to run without its input activation.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

from ..platform.errors import ValidationError


def is_transcoder(sae) -> bool:
    """`sae` reads one hook and writes another (its config sets `d_out`)."""
    return getattr(getattr(sae, "cfg", None), "d_out", None) is not None


def read_hook(sae, hook_name: str) -> str:
    """The hook whose activation `sae` encodes when steering writes at `hook_name`: `hook_name` itself for an SAE; a
    transcoder's input hook, after checking that `hook_name` is its output hook (where its features write)."""
    if not is_transcoder(sae):
        return hook_name
    hook_in, hook_out = sae.cfg.hook_name, sae.cfg.hook_name_out
    if not hook_in or not hook_out:
        raise ValidationError("This transcoder's config does not name both its hooks (metadata hook_name and "
                              "hook_name_out); re-import it with them, or load it through the SAE library.")
    if hook_name != hook_out:
        raise ValidationError(f"This transcoder reads {hook_in} and writes {hook_out}: its features write at "
                              f"{hook_out}, so steer there, not at {hook_name}.")
    return hook_in


@contextlib.contextmanager
def steer(model, hook_name: str, steerer) -> Iterator[None]:
    """`hooks.intervene(model, hook_name, steerer)`, and for a transcoder a capture at its input hook that hands the
    steerer each forward pass's input activation (`Steerer.see_input`) before the output hook runs. The one way a
    `Steerer` is installed on a model."""
    from ..model.hooks import intervene

    hook_in = read_hook(steerer.sae, hook_name)
    with contextlib.ExitStack() as stack:
        if is_transcoder(steerer.sae):
            stack.enter_context(intervene(model, hook_in, steerer.see_input))
        stack.enter_context(intervene(model, hook_name, steerer))
        yield
