"""Reading and describing the dataclass records that specs, configs and manifests are made of — one set of rules.

- `from_dict(cls, d)`: strict. A key the dataclass does not have is refused, naming it and the nearest valid
  field, whatever door the record came through (a misspelt `lr_warmup_step` never trains silently with the
  default). Records written by older versions pass `migrate` first: the one place that knows renamed keys. (One
  structural change is read by its own class: `TrainConfig`, split into parts, routes a flat record's keys to
  their parts in `TrainConfig.flatten`.)
- `field_docs(cls)`: the one-line doc under each field, which the CLI's `--help`, the Training tab's generated
  "Advanced" section and the API schema all show.
- `coerce(cls, name, raw)`: a raw value (a CLI string, a form number) as the field's declared type.
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
import types
import typing

from .errors import ValidationError

# Keys renamed or dropped since records were first written, per record type: {type name: {old key: new key | None}}.
# None drops the key (it meant nothing any more). Reading an old record applies these before the strict check.
MIGRATIONS: dict[str, dict[str, str | None]] = {}


def unknown_keys_message(unknown: list[str], valid: list[str], what: str) -> str:
    """'Unknown <what> field 'x' (did you mean 'y'?)' for each key, then the valid names."""
    parts = []
    for key in unknown:
        near = difflib.get_close_matches(str(key), valid, n=1, cutoff=0.6)
        parts.append(f"{key!r}" + (f" (did you mean {near[0]!r}?)" if near else ""))
    return (f"Unknown {what} field{'s' if len(unknown) > 1 else ''} {', '.join(parts)}. "
            f"Valid fields: {', '.join(valid)}.")


def check_keys(cls, d: dict, what: str | None = None) -> None:
    """Raise ValidationError when `d` has keys `cls` (a dataclass) lacks, naming each and its nearest field."""
    if not isinstance(d, dict):
        raise ValidationError(f"A {what or cls.__name__} must be a JSON object of fields (got {type(d).__name__}).")
    valid = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in d if k not in valid]
    if unknown:
        raise ValidationError(unknown_keys_message(unknown, valid, what or cls.__name__))


def migrate(cls, d: dict) -> dict:
    """`d` with the renames and drops recorded for `cls` in MIGRATIONS applied (a copy; unchanged if none)."""
    moves = MIGRATIONS.get(cls.__name__)
    if not moves or not isinstance(d, dict):
        return d
    out = {}
    for key, value in d.items():
        new = moves.get(key, key)
        if new is not None:
            out[new] = value
    return out


def from_dict(cls, d: dict, what: str | None = None):
    """An instance of dataclass `cls` from `d`: migrated, then strictly checked, then built (its own
    `__post_init__` validates the values)."""
    d = migrate(cls, d)
    check_keys(cls, d, what)
    return cls(**d)


@functools.lru_cache(maxsize=None)
def field_docs(cls) -> dict[str, str]:
    """`{field: docstring}` of a dataclass, read from the string literal under each field (parsed once per class:
    the form asks once per input). Treat the answer as read-only."""
    import ast
    import inspect
    import textwrap

    body = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0].body
    docs = {}
    for node, nxt in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
            docs[node.target.id] = " ".join(str(nxt.value.value).split())
    return docs


def field_type(cls, name: str):
    """The declared type of field `name` without `None` (`int | None` → int; `tuple[float, float]` → tuple)."""
    hint = typing.get_type_hints(cls)[name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and args:
        hint = args[0]
    return typing.get_origin(hint) or hint


def _element_type(cls, name: str):
    """The element type of a `list[int]` / `tuple[float, float]` field (float when unsaid)."""
    hint = typing.get_type_hints(cls)[name]
    for arg in typing.get_args(hint) or (hint,):
        inner = typing.get_args(arg)
        if inner and inner[0] in (int, float, str):
            return inner[0]
    return float


def optional(cls, name: str) -> bool:
    """Whether field `name` of `cls` accepts None."""
    return type(None) in typing.get_args(typing.get_type_hints(cls)[name])


def coerce(cls, name: str, raw):
    """`raw` (a string from a flag, a float from a number box) as field `name`'s type; None and "" stay None."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    kind = field_type(cls, name)
    try:
        if kind is bool:
            return raw if isinstance(raw, bool) else str(raw).strip().lower() in ("1", "true", "yes", "on")
        if kind is int:
            value = float(raw)
            if value != int(value):
                raise ValueError(f"{raw!r} is not a whole number")
            return int(value)
        if kind is float:
            return float(raw)
        if kind in (tuple, list):
            items = raw if isinstance(raw, (list, tuple)) else str(raw).replace(",", " ").split()
            return kind(_element_type(cls, name)(x) for x in items)
    except (TypeError, ValueError) as e:
        raise ValidationError(f"{name}: {e}. Give a {getattr(kind, '__name__', kind)}.") from e
    return raw


def spec_checks(cls, check_inputs):
    """`(build, validate)` for a job kind whose spec is the dataclass `cls` and whose library check is
    `check_inputs(store, spec)`: the pair `mistudio_core.spec` calls. `validate(spec, store=None)` reads the spec
    strictly and, given a store, checks it there; `build(preset=None, store=None, **fields)` makes the spec from
    the fields given (None: the default) and validates it."""
    def validate(spec: dict, store=None):
        parsed = cls.from_dict(spec)
        if store is not None:
            check_inputs(store, parsed)
        return parsed

    def build(preset: str | None = None, store=None, **fields) -> dict:
        spec = cls.from_dict({k: v for k, v in fields.items() if v is not None}).to_dict()
        validate(spec, store)
        return spec

    return build, validate
