"""Which job a CLI `--resume [JOB_OR_NAME]` means, for any job kind (the framework knows no kind; the caller names it).

Rules, in order:
  1. Jobs left `running` by a dead process are marked stopped *first* (`JobRegistry.recover`: the runner lock is a
     kernel flock, free the instant its holder dies, even by SIGKILL). Without this an immediate `--resume` after
     a kill found nothing stopped: the dead job still read `running`.
  2. A job id resumes that job (refused if it is of another kind).
  3. Otherwise the target is a run name (`--resume NAME`, or `--name NAME --resume`): exactly one stopped job of
     that kind with that name is resumed. None: say what the jobs of that name are doing. Several: refuse and list
     their ids — a name never silently picks one of several, nor a job with another name.
  4. No target and no name: the most recently started stopped job of that kind.
"""
from __future__ import annotations

from ..platform.errors import NotFoundError, ValidationError
from ..platform.store import shown
from .registry import RESUMABLE


def resume_target(reg, kind: str, target: str | None = None, name: str | None = None) -> str:
    """The id of the job `--resume [target]` (with `--name name`) means; raises a MistudioError naming the fix."""
    reg.recover()
    if target:
        try:
            record = reg.get(target)
        except NotFoundError:
            return _by_name(reg, kind, target)
        if record["kind"] != kind:
            raise ValidationError(f"Job {shown(target)} is a {record['kind']!r} job, not {kind!r}; resume it with "
                                  f"`jobs resume {record['id']}`.")
        return record["id"]
    if name:
        return _by_name(reg, kind, name)
    stopped = [r for r in reg.list(kind) if r["status"] in RESUMABLE]
    if not stopped:
        raise NotFoundError(f"No interrupted, cancelled or failed {kind} job to resume. See `jobs list --kind "
                            f"{kind}`, then `--resume JOB_ID`.")
    return max(stopped, key=_last_attempt)["id"]


def _by_name(reg, kind: str, name: str) -> str:
    named = [r for r in reg.list(kind) if r["name"] == name]
    stopped = [r for r in named if r["status"] in RESUMABLE]
    if len(stopped) == 1:
        return stopped[0]["id"]
    if len(stopped) > 1:
        ids = ", ".join(f"{r['id']} ({r['status']}, step {r['progress']['step']})"
                        for r in sorted(stopped, key=_last_attempt))
        raise ValidationError(f"The name {shown(name)} is ambiguous: {len(stopped)} stopped {kind} jobs have it: "
                              f"{ids}. Resume one by its id: `--resume JOB_ID`.")
    if named:
        states = ", ".join(f"{r['id']} is {r['status']}" for r in named[-5:])
        raise NotFoundError(f"No stopped {kind} job named {shown(name)} to resume ({states}). Only interrupted, "
                            "cancelled or failed jobs can be resumed; start a new one without --resume.")
    raise NotFoundError(f"No {kind} job with id or name {shown(name)}. See `jobs list --kind {kind}`, then "
                        "`--resume JOB_ID`.")


def _last_attempt(r: dict) -> float:
    return max(r.get("started") or 0, r.get("created") or 0)
