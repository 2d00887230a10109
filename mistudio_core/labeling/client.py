"""The LLM provider: OpenAI, or any server speaking OpenAI's chat-completions protocol (Ollama at `/v1`, vLLM,
llama.cpp server, LM Studio), through the `openai` client.

Retries are ours, not the client's (`max_retries=0` there): a 429 or 5xx answer, a timeout or a dropped
connection is retried with exponential backoff and jitter, waiting at least what the server's `Retry-After` asks,
and every wait is cut short when the job is cancelled. Errors retrying cannot fix (bad key, unknown model, a
server that stays down) raise `ProviderError`, which stops a labeling job; the message never contains the key.
"""
from __future__ import annotations

import email.utils
import random
import threading
import time
from typing import Callable

import openai

from ..platform.errors import ValidationError
from .keys import redact
from .provider import (LOCAL_URL, NO_KEY, OPENAI_URL, PRESETS, ProviderConfig, ProviderError,  # noqa: F401
                       Reply, Stopped)

def retry_after_s(response) -> float | None:
    """Seconds a `Retry-After` (or `retry-after-ms`) header asks for; None when absent or unreadable."""
    headers = getattr(response, "headers", None) or {}
    if headers.get("retry-after-ms"):
        try:
            return float(headers["retry-after-ms"]) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


class LLMClient:
    """`chat(messages) -> Reply` with retries; `test_connection() -> dict`. `stop` (an Event) aborts waits."""

    def __init__(self, cfg: ProviderConfig, api_key: str | None, stop: threading.Event | None = None,
                 sleep: Callable[[float], None] | None = None):
        if cfg.needs_key and not api_key:
            raise ValidationError("No OpenAI API key: set OPENAI_API_KEY before starting the app, or type the key "
                                  "in the Labeling tab (it is kept in memory only).")
        self.cfg = cfg
        self._key = api_key or NO_KEY
        self.stop = stop or threading.Event()
        self._sleep = sleep
        self._client = openai.OpenAI(api_key=self._key, base_url=cfg.base_url, timeout=cfg.timeout_s,
                                     max_retries=0)

    def __repr__(self) -> str:  # never show the key
        return f"LLMClient(base_url={self.cfg.base_url!r}, model={self.cfg.model!r})"

    def _wait(self, seconds: float) -> None:
        if self._sleep:
            self._sleep(seconds)
        elif self.stop.wait(seconds):
            raise Stopped()

    def _backoff(self, attempt: int, err: Exception) -> float:
        base = min(self.cfg.max_backoff_s, self.cfg.backoff_s * 2 ** attempt) * random.uniform(0.5, 1.5)
        asked = retry_after_s(getattr(err, "response", None))
        return min(300.0, max(base, asked)) if asked is not None else base

    def _describe(self, err: Exception) -> str:
        where = f"{self.cfg.base_url} (model {self.cfg.model})"
        if isinstance(err, openai.AuthenticationError):
            return f"{where} refused the API key (401). Check the key or OPENAI_API_KEY and try again."
        if isinstance(err, openai.NotFoundError):
            return f"{where} answered 404: is the model name right (see 'Test connection') and the URL's /v1 there?"
        if isinstance(err, openai.APITimeoutError):
            return f"{where} did not answer within {self.cfg.timeout_s:g} s; raise the timeout or check the server."
        if isinstance(err, openai.APIConnectionError):
            return f"Cannot reach {where}: is the server running? Start it, then resume the job."
        status = getattr(err, "status_code", "?")
        return redact(f"{where} answered HTTP {status}: {str(err)[:300]}", self._key)

    @staticmethod
    def _retryable(err: Exception) -> bool:
        if isinstance(err, (openai.APITimeoutError, openai.APIConnectionError, openai.RateLimitError)):
            return True
        return isinstance(err, openai.APIStatusError) and (err.status_code >= 500 or err.status_code in (408, 409))

    def chat(self, messages: list[dict], max_tokens: int | None = None) -> Reply:
        """One chat completion; retries transient failures, raises `ProviderError` when it cannot succeed."""
        waits: list[float] = []
        extra = {"response_format": {"type": "json_object"}} if self.cfg.json_mode else {}
        for attempt in range(self.cfg.max_retries + 1):
            if self.stop.is_set():
                raise Stopped()
            try:
                resp = self._client.chat.completions.create(
                    model=self.cfg.model, messages=messages, temperature=self.cfg.temperature,
                    max_tokens=max_tokens or self.cfg.max_tokens, **extra)
            except openai.APIError as err:
                if not self._retryable(err) or attempt == self.cfg.max_retries:
                    raise ProviderError(self._describe(err)) from None
                waits.append(self._backoff(attempt, err))
                self._wait(waits[-1])
                continue
            usage = resp.usage
            text = (resp.choices[0].message.content or "") if resp.choices else ""
            return Reply(text, getattr(usage, "prompt_tokens", 0) or 0, getattr(usage, "completion_tokens", 0) or 0,
                         retries=attempt, waits=waits)
        raise AssertionError("unreachable")

    def test_connection(self) -> dict:
        """List the server's models; where listing is not offered, send a 1-token chat instead."""
        try:
            models = sorted(m.id for m in self._client.models.list())
            ok = self.cfg.model in models
            note = "model found" if ok else f"model {self.cfg.model!r} not in the server's list"
            return {"ok": True, "method": "models.list", "models": models[:200], "model_found": ok, "note": note}
        except openai.APIError as err:
            if isinstance(err, (openai.APIConnectionError, openai.AuthenticationError)):
                raise ProviderError(self._describe(err)) from None
        reply = self.chat([{"role": "user", "content": "Say OK."}], max_tokens=1)
        return {"ok": True, "method": "chat", "models": [], "model_found": True,
                "note": f"1-token chat answered {reply.text!r}"}


def make_client(cfg: ProviderConfig, api_key: str | None, stop: threading.Event | None = None, store=None):
    """The client for `cfg`: `LLMClient` for a server, `LocalClient` (needs `store`) for `local://`."""
    if cfg.is_local:
        if store is None:
            raise ValidationError("A local labeling model needs the data directory; pass the store.")
        from .local import LocalClient

        return LocalClient(cfg, store, stop=stop)
    return LLMClient(cfg, api_key, stop=stop)
