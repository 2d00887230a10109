"""Watch a door go through the one front door: `DoorSpy` wraps `mistudio_core.spec.build` (which every door calls
as `front_door.build`) to record the spec each call built, optionally to misspell one field the door passes (as
a door with a typo would) or to stop right after the build (before any model loads)."""
from __future__ import annotations

from mistudio_core import spec as front_door
from mistudio_core.platform.errors import ValidationError

STOPPED = "stopped by the test after the spec was built"


class DoorSpy:
    def __init__(self, monkeypatch, misspell: tuple[str, str] | None = None, stop: bool = False):
        self.kinds: list[str] = []
        self.built: list[dict] = []
        real = getattr(front_door.build, "real", front_door.build)  # a second spy replaces the first

        def build(kind, preset=None, store=None, **fields):
            self.kinds.append(kind)
            if misspell:
                right, wrong = misspell
                assert right in fields, f"the door did not pass {right!r}: {sorted(fields)}"
                fields[wrong] = fields.pop(right)
            spec = real(kind, preset, store, **fields)
            self.built.append(spec)
            if stop:
                raise ValidationError(STOPPED)
            return spec

        build.real = real
        monkeypatch.setattr(front_door, "build", build)

    @property
    def spec(self) -> dict:
        assert len(self.built) == 1, f"expected one spec built, got {self.kinds}"
        return self.built[0]
