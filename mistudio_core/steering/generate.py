"""Baseline and steered generation from the same seed, streamed token by token.

One manual decoding loop with a KV cache serves everything: the baseline and the steered output are two rows of
one batch (the steering hook edits only the steered row), and a strength sweep is one row per strength. Every
row draws its token from the *same* uniform number at each step (inverse-CDF sampling over the top-p set), so
with equal logits two rows pick equal tokens: the difference between baseline and steered is the steering alone,
and strength 0 reproduces the baseline token for token. Temperature 0 is greedy.

The loop, not `model.generate`, because it owns its random generator (a seed means the same thing whatever else
runs in the process), streams without a helper thread, and lets rows stop at EOS independently.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, dataclass
from typing import Callable, Iterator

import torch

from ..platform.errors import ValidationError
from ..platform.records import from_dict
from .methods import Steerer, SteeringConfig
from .score import score_continuation, strip_eos


@dataclass
class SamplingConfig:
    """How tokens are picked."""

    max_new_tokens: int = 48
    """How many tokens to generate at most (per row)."""
    temperature: float = 0.7
    """Softmax temperature; 0 means greedy (argmax)."""
    top_p: float = 0.9
    """Nucleus sampling: sample among the most likely tokens whose probabilities sum to top_p."""
    seed: int = 0
    """Seed of the shared random stream; baseline and steered rows use the same draws."""
    chat: bool = False
    """Wrap the prompt in the tokenizer's chat template (for instruct models) as one user turn."""
    stop_at_eos: bool = True
    """Stop a row when it emits the end-of-sequence token."""

    def __post_init__(self):
        if not 1 <= int(self.max_new_tokens) <= 4096:
            raise ValidationError(f"max_new_tokens={self.max_new_tokens} must be between 1 and 4096.")
        if self.temperature < 0:
            raise ValidationError(f"temperature={self.temperature} must be >= 0 (0 = greedy).")
        if not 0 < self.top_p <= 1:
            raise ValidationError(f"top_p={self.top_p} must be in (0, 1].")
        self.max_new_tokens, self.seed = int(self.max_new_tokens), int(self.seed)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "SamplingConfig":
        """Input and saved records alike (records hold only these fields), strictly: an unknown key is refused
        naming the nearest field; renamed keys of older records go through `records.MIGRATIONS`."""
        return from_dict(cls, d, "sampling setting")


def encode_prompt(tokenizer, prompt: str, chat: bool = False) -> list[int]:
    """Token ids of the prompt, through the chat template when `chat`."""
    if not prompt:
        raise ValidationError("The prompt is empty. Type a prompt to continue.")
    if chat:
        if not getattr(tokenizer, "chat_template", None):
            raise ValidationError("This model's tokenizer has no chat template. Untick 'chat template' to use the "
                                  "prompt as plain text.")
        # Render to text first, then tokenize: the rendered text already holds the special tokens.
        text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                             add_generation_prompt=True)
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])
    return list(tokenizer(prompt)["input_ids"])


def pick_tokens(logits: torch.Tensor, u: float, temperature: float, top_p: float) -> torch.Tensor:
    """Next token per row from logits [B, V] and one shared uniform `u` in [0, 1): greedy at temperature 0, else
    the inverse CDF of the top-p-truncated, renormalised distribution."""
    if temperature <= 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    sorted_p, order = probs.sort(-1, descending=True)
    cum = sorted_p.cumsum(-1)
    sorted_p = torch.where(cum - sorted_p < top_p, sorted_p, torch.zeros_like(sorted_p))  # always keeps the top 1
    cum = sorted_p.cumsum(-1)
    idx = (cum < u * cum[:, -1:]).sum(-1).clamp(max=logits.shape[-1] - 1)
    return order.gather(-1, idx[:, None])[:, 0]


def _eos_ids(tokenizer, model) -> set[int]:
    ids = {getattr(tokenizer, "eos_token_id", None)}
    cfg_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids.update(cfg_eos if isinstance(cfg_eos, (list, tuple)) else [cfg_eos])
    return {int(i) for i in ids if i is not None}


def _device(model) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def iter_rows(model, prompt_ids: list[int], n_rows: int, sampling: SamplingConfig, steerer: Steerer | None = None,
              hook_name: str | None = None, eos_ids: set[int] = frozenset(),
              on_logits: Callable[[torch.Tensor], None] | None = None) -> Iterator[list[list[int]]]:
    """Generate `n_rows` continuations of one prompt in one batch; yields every row's tokens after each step.
    A row stops growing after its EOS (which is kept); the loop ends when all rows stopped. `on_logits` gets each
    step's next-token logits [n_rows, vocab] (the distribution the step's tokens are drawn from)."""
    from .transcoder import steer

    g = torch.Generator().manual_seed(sampling.seed)
    ids = torch.tensor([prompt_ids] * n_rows, device=_device(model))
    rows: list[list[int]] = [[] for _ in range(n_rows)]
    done = [False] * n_rows
    if steerer is not None:
        steerer.reset()
        steerer.prompt_len = len(prompt_ids)
    hook = steer(model, hook_name, steerer) if steerer is not None else contextlib.nullcontext()
    with hook:
        out = model(input_ids=ids, use_cache=True)
        for _ in range(sampling.max_new_tokens):
            u = float(torch.rand((), generator=g))
            if on_logits is not None:
                on_logits(out.logits[:, -1])
            tok = pick_tokens(out.logits[:, -1], u, sampling.temperature, sampling.top_p)
            for r, t in enumerate(tok.tolist()):
                if not done[r]:
                    rows[r].append(t)
                    done[r] = sampling.stop_at_eos and t in eos_ids
            yield rows
            if all(done):
                break
            if steerer is not None:  # a stopped row's padding steps are not steered text: not recorded
                steerer.live = torch.tensor([not d for d in done])
            out = model(input_ids=tok[:, None], past_key_values=out.past_key_values, use_cache=True)


def decode(tokenizer, tokens: list[int], eos_ids: set[int] = frozenset()) -> str:
    """Text of generated tokens, without a trailing EOS."""
    if tokens and tokens[-1] in eos_ids:
        tokens = tokens[:-1]
    return tokenizer.decode(tokens, skip_special_tokens=False)


def compare_stream(model, tokenizer, sae, hook_name: str, prompt: str, steering: SteeringConfig,
                   sampling: SamplingConfig) -> Iterator[dict]:
    """Baseline (row 0) and steered (row 1) side by side; yields `{baseline, steered, baseline_tokens,
    steered_tokens, n_prompt_tokens, seconds, done}` after every step. The last one has `done=True` and the
    readings of `readings()`: `steered_feature_mean`, `feature_mean`, `baseline_feature_mean`, `perplexity`,
    `baseline_perplexity`."""
    prompt_ids = encode_prompt(tokenizer, prompt, sampling.chat)
    eos = _eos_ids(tokenizer, model)
    steerer = Steerer(steering, sae, rows=torch.tensor([False, True]))
    t0 = time.perf_counter()
    state = {"baseline": "", "steered": "", "baseline_tokens": [], "steered_tokens": [], "n_prompt_tokens":
             len(prompt_ids), "seconds": 0.0, "done": False}
    for rows in iter_rows(model, prompt_ids, 2, sampling, steerer, hook_name, eos):
        state.update(baseline=decode(tokenizer, rows[0], eos), steered=decode(tokenizer, rows[1], eos),
                     baseline_tokens=list(rows[0]), steered_tokens=list(rows[1]),
                     seconds=time.perf_counter() - t0)
        yield dict(state)
    state.update(readings(model, sae, hook_name, prompt_ids, state, steerer, eos), done=True)
    yield state


def readings(model, sae, hook_name: str, prompt_ids: list[int], state: dict, steerer: Steerer,
             eos: set[int]) -> dict:
    """The two activations of a finished run, named (see `score.py`): `steered_feature_mean` — the SAE's
    encoding of the steered residual at the hook, recorded while generating (row 1); `feature_mean` /
    `baseline_feature_mean` — the unsteered model reading the steered / baseline output; and both perplexities."""
    feats = [f.index for f in steerer.cfg.features]
    means = steerer.steered_means()
    steered = score_continuation(model, sae, hook_name, prompt_ids, strip_eos(state["steered_tokens"], eos), feats)
    base = score_continuation(model, sae, hook_name, prompt_ids, strip_eos(state["baseline_tokens"], eos), feats)
    return {"steered_feature_mean": means[1] if means else {f: None for f in feats},
            "feature_mean": steered["feature_mean"], "baseline_feature_mean": base["feature_mean"],
            "perplexity": steered["perplexity"], "baseline_perplexity": base["perplexity"]}


def compare(model, tokenizer, sae, hook_name: str, prompt: str, steering: SteeringConfig,
            sampling: SamplingConfig) -> dict:
    """The final state of `compare_stream`."""
    last = {}
    for last in compare_stream(model, tokenizer, sae, hook_name, prompt, steering, sampling):
        pass
    return last


def run_prompt_set(model, tokenizer, sae, hook_name: str, prompts: list[str], steering: SteeringConfig,
                   sampling: SamplingConfig, progress=None) -> list[dict]:
    """`compare` for each prompt of a prompt set: `[{prompt, baseline, steered, steered_feature_mean,
    feature_mean}, ...]`."""
    prompts = [p for p in (p.strip() for p in prompts) if p]
    if not prompts:
        raise ValidationError("The prompt set is empty. Add one prompt per line.")
    out = []
    for i, p in enumerate(prompts):
        if progress:
            progress(i / len(prompts), f"prompt {i + 1}/{len(prompts)}")
        r = compare(model, tokenizer, sae, hook_name, p, steering, sampling)
        out.append({"prompt": p, "baseline": r["baseline"], "steered": r["steered"],
                    "steered_feature_mean": r["steered_feature_mean"], "feature_mean": r["feature_mean"]})
    return out
