"""User-facing errors.

Every error a researcher can cause (bad path, wrong hook name, offline hub, shape mismatch) is a
`MistudioError` whose message names the problem *and* the fix. The UI shows `str(err)` as-is and the CLI
prints it without a traceback; anything that is not a `MistudioError` is a bug and keeps its traceback.
"""


class MistudioError(Exception):
    """Base class: a problem the user can fix; the message says how."""


class NotFoundError(MistudioError):
    """An artifact, file or name does not exist."""


class ValidationError(MistudioError):
    """Input or configuration is invalid (bad value, shape mismatch, wrong hook name)."""


class OfflineError(MistudioError):
    """A Hugging Face hub request could not be made (offline, DNS, or HF_HUB_OFFLINE=1)."""


class UnsupportedError(MistudioError):
    """The request is valid but cannot run here (e.g. 4-bit quantization without CUDA)."""
