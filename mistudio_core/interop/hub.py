"""Hugging Face Hub transfers for SAEs: download one SAE folder from a repo, upload an export bundle.

Tokens are passed straight to `huggingface_hub` for the one call and never stored or logged. Offline (or with
`HF_HUB_OFFLINE=1`) both fail within seconds with an `OfflineError` that says what to do instead.
"""
from __future__ import annotations

from pathlib import Path

from ..platform.hub import hub_offline_reason
from ..platform.errors import NotFoundError, OfflineError, ValidationError
from ..platform.store import Store
from .importers import import_sae

SAE_FILE_PATTERNS = ["cfg.json", "sae_weights.safetensors", "sparsity.safetensors", "sae.safetensors", "params.npz"]


def _require_online(what: str) -> None:
    reason = hub_offline_reason()
    if reason:
        raise OfflineError(f"Cannot {what}: {reason}. Connect to the internet and unset HF_HUB_OFFLINE, or "
                           "download the files elsewhere and import the folder (or a zip of it) locally.")


def download_sae_folder(repo_id: str, path_in_repo: str = "", token: str | None = None) -> Path:
    """Download only the SAE files under `path_in_repo` (e.g. `layer_20/width_16k/average_l0_71`)."""
    from huggingface_hub import errors as hf_errors
    from huggingface_hub import snapshot_download

    if not repo_id or repo_id.count("/") != 1:
        raise ValidationError(f"Hub repo id {repo_id!r} must look like owner/name.")
    _require_online(f"download {repo_id!r} from the Hugging Face hub")
    prefix = path_in_repo.strip("/")
    patterns = [f"{prefix}/{p}" if prefix else p for p in SAE_FILE_PATTERNS]
    try:
        root = Path(snapshot_download(repo_id, allow_patterns=patterns, token=token or None))
    except hf_errors.GatedRepoError as e:
        raise ValidationError(f"{repo_id!r} is gated: accept its terms on huggingface.co and pass a token.") from e
    except hf_errors.RepositoryNotFoundError as e:
        raise NotFoundError(f"Hub repo {repo_id!r} not found (or private: pass a token).") from e
    except (hf_errors.HfHubHTTPError, ConnectionError, TimeoutError, OSError) as e:
        raise OfflineError(f"Downloading {repo_id!r} failed ({type(e).__name__}: {e}).") from e
    folder = root / prefix if prefix else root
    if not folder.is_dir() or not any(folder.iterdir()):
        raise NotFoundError(f"No SAE files under {path_in_repo!r} in {repo_id!r}; check the path.")
    return folder


def import_from_hub(store: Store, repo_id: str, path_in_repo: str = "", token: str | None = None,
                    model_id: str | None = None, name: str | None = None, hook_name: str | None = None) -> dict:
    folder = download_sae_folder(repo_id, path_in_repo, token)
    return import_sae(store, folder, model_id=model_id, name=name, hook_name=hook_name, repo_id=repo_id,
                      path_in_repo=path_in_repo)


def upload_bundle(folder: Path, repo_id: str, token: str, path_in_repo: str = "", private: bool = False) -> str:
    """Upload an export bundle folder to a Hub model repo (created if needed); returns the repo URL."""
    from huggingface_hub import HfApi
    from huggingface_hub import errors as hf_errors

    if not token:
        raise ValidationError("Uploading needs a Hugging Face write token (used for this upload only, never stored).")
    if not Path(folder).is_dir():
        raise NotFoundError(f"Export bundle {folder} does not exist; export the SAE first.")
    _require_online(f"upload to {repo_id!r}")
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        api.upload_folder(folder_path=str(folder), repo_id=repo_id, path_in_repo=path_in_repo or None,
                          commit_message="Upload SAE from miStudio")
    except hf_errors.HfHubHTTPError as e:
        raise ValidationError(f"Upload to {repo_id!r} was refused: {e}. Check the token has write access.") from e
    except (ConnectionError, TimeoutError, OSError) as e:
        raise OfflineError(f"Upload to {repo_id!r} failed ({type(e).__name__}: {e}).") from e
    return f"https://huggingface.co/{repo_id}"
