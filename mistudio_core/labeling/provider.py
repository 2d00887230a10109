"""What a labeling provider is — where and how to ask the LLM (`ProviderConfig`, saved with job specs, never
with a key), what it answers (`Reply`), and how asking fails (`ProviderError`, `Stopped`) — shared by the server
client (`client.py`) and the in-process model (`local.py`)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..platform.records import from_dict
from ..platform.errors import MistudioError, ValidationError

OPENAI_URL = "https://api.openai.com/v1"
LOCAL_URL = "local://in-process"  # a chat model registered in Models, run in this process (`local.py`)
NO_KEY = "no-key-needed"  # local servers ignore the key, but the client insists on one
PRESETS = {
    "OpenAI": (OPENAI_URL, "gpt-4o-mini"),
    "Ollama": ("http://localhost:11434/v1", "llama3.2"),
    "vLLM": ("http://localhost:8000/v1", ""),
    "llama.cpp server": ("http://localhost:8080/v1", ""),
    "LM Studio": ("http://localhost:1234/v1", ""),
    "Local model (in-process, no server)": (LOCAL_URL, "smollm2-135m-instruct"),
}


class ProviderError(MistudioError):
    """The provider cannot be used right now (unreachable after retries, bad key, unknown model)."""


class Stopped(Exception):
    """The job was asked to stop while a request waited to be (re)sent; not an error of the provider."""


@dataclass
class ProviderConfig:
    """Where and how to ask the LLM. Holds no API key on purpose: this is saved with job specs."""

    base_url: str = OPENAI_URL
    """The server's OpenAI-compatible root, e.g. `http://localhost:11434/v1` for Ollama."""
    model: str = "gpt-4o-mini"
    """Model name as the server knows it (`ollama list`, `/v1/models`)."""
    temperature: float = 0.0
    """Sampling temperature; 0 keeps labels reproducible."""
    max_tokens: int = 300
    """Cap on the answer's length in tokens."""
    timeout_s: float = 60.0
    """Per-request timeout in seconds."""
    max_retries: int = 4
    """Retries of one request after a 429/5xx/timeout/connection error before giving up."""
    backoff_s: float = 1.0
    """First backoff wait; doubles each retry (with ±50% jitter), capped by `max_backoff_s`."""
    max_backoff_s: float = 30.0
    """Longest single wait between retries (a longer `Retry-After` is still honoured up to 5 minutes)."""
    price_in_per_1m: float = 0.0
    """Cost per million prompt tokens (USD) for the estimate; 0 for local servers."""
    price_out_per_1m: float = 0.0
    """Cost per million completion tokens (USD)."""
    json_mode: bool = False
    """Ask for `response_format={"type": "json_object"}` (OpenAI, Ollama and vLLM support it)."""

    def __post_init__(self):
        self.base_url = (self.base_url or "").strip().rstrip("/")
        if not self.base_url.startswith(("http://", "https://", "local://")):
            raise ValidationError(f"Base URL {self.base_url!r} must start with http:// or https:// "
                                  f"(e.g. {OPENAI_URL} or http://localhost:11434/v1 for Ollama), or be {LOCAL_URL} "
                                  "for a model registered in the Models tab.")
        if not (self.model or "").strip():
            raise ValidationError("No model name given; type one (e.g. gpt-4o-mini, or llama3.2 for Ollama).")
        for name in ("timeout_s", "backoff_s", "max_backoff_s"):
            if getattr(self, name) <= 0:
                raise ValidationError(f"{name} must be > 0 seconds.")
        if self.max_retries < 0 or self.max_tokens < 1:
            raise ValidationError("max_retries must be ≥ 0 and max_tokens ≥ 1.")
        if self.price_in_per_1m < 0 or self.price_out_per_1m < 0:
            raise ValidationError("Prices per million tokens cannot be negative; use 0 for local servers.")

    @property
    def is_local(self) -> bool:
        return self.base_url.startswith("local://")

    @property
    def needs_key(self) -> bool:
        return "api.openai.com" in self.base_url

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ProviderConfig":
        return from_dict(cls, d or {})

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.price_in_per_1m + completion_tokens * self.price_out_per_1m) / 1e6


@dataclass
class Reply:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: int = 0
    waits: list = field(default_factory=list)
