"""Feature groups: a named set of features with strengths (from the table, Find or a concept) that steer together.

    $MISTUDIO_HOME/steering/groups/<id>.json    {id, name, created, sae_id, steering (SteeringConfig dict), note}

A group is a `SteeringConfig` with a name and the SAE it belongs to: steering with it is steering with its config;
exporting it writes the same JSON (`format: "mistudio.feature_group"`, version 1) to
`exports/feature_groups/<id>.json`, which `import_group` reads back (strictly: unknown keys are refused).
Dead features and NaN/inf/huge strengths are refused before anything is written.
"""
from __future__ import annotations

import time

from ..platform.errors import ValidationError
from ..platform.store import Store, new_id, read_json, write_json_atomic
from .loader import check_steerable
from .methods import SteeringConfig
from .sessions import _file, _folder, _list

FORMAT, VERSION = "mistudio.feature_group", 1
_KEYS = {"format", "version", "id", "name", "created", "sae_id", "steering", "note"}


def save_group(store: Store, name: str, sae_id: str, steering: SteeringConfig, note: str = "",
               stats: dict | None = None) -> dict:
    """Save a group; `stats` (`loader.feature_stats`) lets dead features be refused. Returns the record."""
    name = (name or "").strip()
    if not name:
        raise ValidationError("Give the feature group a name.")
    if not sae_id:
        raise ValidationError("No SAE selected: a group belongs to one SAE. Pick the SAE first.")
    if not steering.features and not steering.vectors:
        raise ValidationError("The group is empty. Put at least one feature in a slot (or pick one in Find) first.")
    check_steerable(stats or {}, steering.features)
    record = {"format": FORMAT, "version": VERSION, "id": new_id(name), "name": name, "created": time.time(),
              "sae_id": sae_id, "steering": steering.to_dict(), "note": note or ""}
    write_json_atomic(_folder(store, "groups") / f"{record['id']}.json", record)
    return record


def load_group(store: Store, group_id: str) -> dict:
    return read_json(_file(store, "groups", group_id))


def list_groups(store: Store, sae_id: str | None = None) -> list[dict]:
    """Saved groups, newest first; only `sae_id`'s when given."""
    return [g for g in _list(store, "groups") if sae_id is None or g.get("sae_id") == sae_id]


def delete_group(store: Store, group_id: str) -> None:
    _file(store, "groups", group_id).unlink()


def group_config(record: dict) -> SteeringConfig:
    """The group's steering config (validated again: a hand-edited file can hold anything)."""
    return SteeringConfig.from_dict(record["steering"])


def export_group(store: Store, group_id: str):
    """Write the group as `exports/feature_groups/<id>.json`; returns the path."""
    record = load_group(store, group_id)
    path = store.home / "exports" / "feature_groups" / f"{record['id']}.json"
    write_json_atomic(path, record)
    return path


def import_group(store: Store, data: dict) -> dict:
    """Save an exported group under a new id (strict: the format tag must match and unknown keys are refused)."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValidationError(f"Not a feature group file: expected format {FORMAT!r}. Export one from the Steering "
                              "tab's feature groups.")
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        raise ValidationError(f"Unknown keys in the feature group file: {', '.join(unknown)}. Remove them.")
    return save_group(store, data.get("name", ""), data.get("sae_id", ""), SteeringConfig.from_dict(data["steering"]),
                      data.get("note", ""))
