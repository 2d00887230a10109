"""Steering sessions and prompt sets, as JSON files in the data directory.

    $MISTUDIO_HOME/steering/sessions/<id>.json      prompt, SAE, features + strengths, method, sampling, outputs
    $MISTUDIO_HOME/steering/prompt_sets/<id>.json   a named list of prompts, reusable as a batch template

Each file is written atomically; ids are readable slugs with a random suffix, and only such ids are accepted
back (no paths), so a typed id can never reach outside these folders.
"""
from __future__ import annotations

import re
import time
from pathlib import Path

from ..platform.errors import NotFoundError, ValidationError
from ..platform.store import Store, check_name, new_id, read_json, shown, write_json_atomic

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,80}$")
SESSION_FIELDS = ("sae_id", "prompt", "steering", "sampling", "outputs")


def _folder(store: Store, kind: str) -> Path:
    return store.home / "steering" / kind


def _file(store: Store, kind: str, item_id: str) -> Path:
    if not isinstance(item_id, str) or not _ID.match(item_id):
        raise ValidationError(f"Invalid {kind[:-1].replace('_', ' ')} id {shown(item_id)}; pick one from the list.")
    path = _folder(store, kind) / f"{item_id}.json"
    if not path.is_file():
        known = ", ".join(x["id"] for x in _list(store, kind)) or "(none yet)"
        raise NotFoundError(f"No saved {kind[:-1].replace('_', ' ')} {shown(item_id)}. Saved: {known}")
    return path


def _list(store: Store, kind: str) -> list[dict]:
    folder = _folder(store, kind)
    out = []
    for p in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            out.append(read_json(p))
        except ValidationError:
            continue  # a corrupt file is skipped, not fatal to the listing
    return sorted(out, key=lambda d: d.get("created", 0), reverse=True)


def save_session(store: Store, name: str, session: dict) -> dict:
    """Save a steering session (`sae_id`, `prompt`, `steering` (SteeringConfig dict), `sampling`, `outputs`
    (baseline/steered texts, optional sweep)); returns it with `id`, `name`, `created`."""
    name = check_name(name or "", "session name") or check_name(session.get("prompt") or "session")[:40]
    missing = [k for k in ("sae_id", "prompt", "steering") if not session.get(k)]
    if missing:
        raise ValidationError(f"Cannot save the session: {', '.join(missing)} missing. Pick an SAE, write a "
                              "prompt and add a feature first.")
    record = {"id": new_id(name), "name": name, "created": time.time(),
              **{k: session.get(k) for k in SESSION_FIELDS}}
    write_json_atomic(_folder(store, "sessions") / f"{record['id']}.json", record)
    return record


def load_session(store: Store, session_id: str) -> dict:
    return read_json(_file(store, "sessions", session_id))


def list_sessions(store: Store) -> list[dict]:
    """Saved sessions, newest first (full records)."""
    return _list(store, "sessions")


def delete_session(store: Store, session_id: str) -> None:
    _file(store, "sessions", session_id).unlink()


def save_prompt_set(store: Store, name: str, prompts: list[str] | str) -> dict:
    """Save a named prompt set (a list, or text with one prompt per line)."""
    if isinstance(prompts, str):
        prompts = prompts.splitlines()
    prompts = [p.strip() for p in prompts if p and p.strip()]
    if not prompts:
        raise ValidationError("The prompt set is empty. Write one prompt per line.")
    name = (name or "").strip()
    if not name:
        raise ValidationError("Give the prompt set a name.")
    record = {"id": new_id(name), "name": name, "created": time.time(), "prompts": prompts}
    write_json_atomic(_folder(store, "prompt_sets") / f"{record['id']}.json", record)
    return record


def load_prompt_set(store: Store, set_id: str) -> dict:
    return read_json(_file(store, "prompt_sets", set_id))


def list_prompt_sets(store: Store) -> list[dict]:
    return _list(store, "prompt_sets")


def delete_prompt_set(store: Store, set_id: str) -> None:
    _file(store, "prompt_sets", set_id).unlink()
