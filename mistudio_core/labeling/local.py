"""Label with a chat model registered in Models, run in this process: no key, no server, no network.

`LocalClient` offers what the labeling engine needs of `LLMClient` (`chat`, `test_connection`, `stop`) plus
`yes_probability`, which the scorers use to ask one Yes/No question per snippet (`judges_one_by_one`).

Small models are weak labelers; two things keep their answers usable:
- Labeling prompts get the answer's start prefilled (`{"label": "`), so the model only has to continue a JSON
  string; when it never closes the object, the label is the text up to its first quote or line break.
- Scoring reads P(" Yes") vs P(" No") of the next token instead of parsing generated JSON.
Labels of the built-in SmolLM2-135M-Instruct are rough; its detection/fuzzing scores say how rough.

Prompts are formatted with the tokenizer's chat template (a plain `role: text` layout when it has none) and
cut from the left to fit the model's context. Requests are serialised (one generation at a time per model).
"""
from __future__ import annotations

import json
import threading

import torch

from ..platform.errors import ValidationError
from .provider import ProviderConfig, Reply, Stopped
from .prompts import extract_json

LABEL_PREFILL = '{"label": "'
WEAK_MODELS = {"smollm2-135m-instruct": "135M parameters: expect rough labels; use it to try the loop offline"}
_LOCKS: dict[int, threading.Lock] = {}


class LocalClient:
    judges_one_by_one = True

    def __init__(self, cfg: ProviderConfig, store, stop: threading.Event | None = None, loader=None):
        from ..model.models import load_model

        self.cfg, self.stop = cfg, stop or threading.Event()
        try:
            self.loaded = (loader or load_model)(store, cfg.model)
        except Exception as err:  # NotFoundError lists the registered models
            raise ValidationError(f"Cannot load local labeling model {cfg.model!r}: {err} Register a chat model "
                                  "in the Models tab (the built-in smollm2-135m-instruct works offline).") from err
        self.tok, self.model = self.loaded.tokenizer, self.loaded.model
        self._lock = _LOCKS.setdefault(id(self.model), threading.Lock())

    def __repr__(self) -> str:
        return f"LocalClient(model={self.cfg.model!r})"

    def _ids(self, messages: list[dict], prefill: str = "", room: int = 0) -> torch.Tensor:
        if getattr(self.tok, "chat_template", None):
            text = self.tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            ids = self.tok(text + prefill, add_special_tokens=False)["input_ids"]
        else:
            text = "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant: " + prefill
            ids = self.tok(text)["input_ids"]
        limit = int(getattr(self.model.config, "max_position_embeddings", 2048) or 2048) - room
        return torch.tensor([ids[-max(limit, 16):]], device=self.model.device)

    @torch.no_grad()
    def _generate(self, ids: torch.Tensor, max_new: int, no_empty: bool = False) -> str:
        """Greedy (temperature 0) or sampled continuation; `no_empty`: the first token may not close the
        prefilled string or end the answer (an empty label is the commonest failure of small models)."""
        sample = self.cfg.temperature > 0
        first_banned = ([self.tok('"', add_special_tokens=False)["input_ids"][0], self.tok.eos_token_id]
                        if no_empty else [])
        # Embedding rows past the tokenizer's vocabulary (padded matrices) decode to nothing: never emit them.
        padded = list(range(len(self.tok), self.model.get_output_embeddings().weight.shape[0]))
        out = self.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new,
                                  min_new_tokens=1, do_sample=sample, suppress_tokens=padded or None,
                                  begin_suppress_tokens=[t for t in first_banned if t is not None] or None,
                                  pad_token_id=self.tok.pad_token_id or self.tok.eos_token_id,
                                  **({"temperature": self.cfg.temperature} if sample else {}))
        return self.tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)

    def chat(self, messages: list[dict], max_tokens: int | None = None) -> Reply:
        """Generate an answer; a labeling prompt (one asking for `"label"`) gets the JSON start prefilled."""
        if self.stop.is_set():
            raise Stopped()
        prefill = LABEL_PREFILL if '"label"' in messages[-1]["content"] else ""
        max_new = max_tokens or self.cfg.max_tokens
        ids = self._ids(messages, prefill, room=max_new)
        with self._lock:
            text = self._generate(ids, max_new, no_empty=bool(prefill))
        if prefill:
            text = repair_label(text)
        return Reply(text, prompt_tokens=int(ids.shape[1]), completion_tokens=len(self.tok(text)["input_ids"]))

    @torch.no_grad()
    def yes_probability(self, messages: list[dict]) -> tuple[float, Reply]:
        """P(Yes) / (P(Yes) + P(No)) for the next token of the answer, and a Reply for token accounting."""
        if self.stop.is_set():
            raise Stopped()
        ids = self._ids(messages, room=1)
        yes, no = (self.tok(w, add_special_tokens=False)["input_ids"][0] for w in ("Yes", "No"))
        with self._lock:
            logits = self.model(ids).logits[0, -1].float()
        pair = torch.softmax(logits[[yes, no]], dim=0)
        p = float(pair[0])
        return p, Reply("Yes" if p > 0.5 else "No", prompt_tokens=int(ids.shape[1]), completion_tokens=1)

    def test_connection(self) -> dict:
        reply = self.chat([{"role": "user", "content": "Say OK."}], max_tokens=4)
        note = f"local model loaded; it answered {reply.text.strip()[:40]!r}"
        if self.cfg.model in WEAK_MODELS:
            note += f" (weak labeler: {WEAK_MODELS[self.cfg.model]})"
        return {"ok": True, "method": "local", "models": [self.cfg.model], "model_found": True, "note": note}


def repair_label(continuation: str) -> str:
    """The prefilled JSON answer made whole: kept as is when it parses, else the label is cut at the first
    quote or line break and the object closed."""
    text = LABEL_PREFILL + continuation
    if extract_json(text) is not None:
        return text
    label = continuation.split('"')[0].split("\n")[0].strip()
    if not label:  # the model closed the string at once: take its first words that are not JSON syntax
        label = next((ln for ln in (x.strip(' "{}:,') for x in continuation.splitlines()) if ln), "")
    return json.dumps({"label": label[:80], "category": "", "description": ""})
