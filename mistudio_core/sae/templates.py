"""User templates of training settings: named JSON files under `<home>/templates/training/`, exportable and
importable. A template holds only `TrainConfig` fields; importing validates them, so a bad file is refused with
the field that is wrong."""
from __future__ import annotations

import json

from ..platform.errors import NotFoundError, ValidationError
from .train_config import TrainConfig
from ..platform.store import Store, read_json, slugify, write_json_atomic


def _dir(store: Store):
    folder = store.home / "templates" / "training"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def list_templates(store: Store) -> list[str]:
    folder = store.home / "templates" / "training"  # listing creates nothing (a read-only app writes nothing)
    return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []


def save_template(store: Store, name: str, settings: dict) -> str:
    """Validate `settings` as a TrainConfig and save it under `name`; returns the file name used."""
    if not name or not name.strip():
        raise ValidationError("Give the template a name.")
    cfg = TrainConfig.from_dict(settings)
    slug = slugify(name)
    write_json_atomic(_dir(store) / f"{slug}.json", {"name": name.strip(), "train": cfg.to_dict()})
    return slug


def load_template(store: Store, name: str) -> dict:
    path = _dir(store) / f"{slugify(name)}.json"
    if not path.is_file():
        raise NotFoundError(f"No template {name!r}. Saved templates: {', '.join(list_templates(store)) or '(none)'}.")
    return TrainConfig.from_dict(read_json(path).get("train", {})).to_dict()


def import_template(store: Store, text: str, name: str | None = None) -> str:
    """Import a template from exported JSON text (ours, or a bare TrainConfig dict)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValidationError(f"The template is not valid JSON ({e}).") from e
    if not isinstance(data, dict):
        raise ValidationError("A template must be a JSON object of training settings.")
    settings = data.get("train", data)  # save_template refuses an unknown setting, naming the nearest valid one
    return save_template(store, name or data.get("name") or "imported", settings)
