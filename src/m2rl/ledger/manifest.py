"""The manifest (`run.json`): its file names, the run statuses (the kinds come from m2rl.specs), and the
shape every command relies on; a file that is not valid JSON or not shaped like a manifest is a
`ManifestError`."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from m2rl.errors import UserError
from m2rl.specs import RUN_KINDS

MANIFEST = "run.json"
METRICS = "metrics.jsonl"
LOCK = "run.lock"
STATUSES = ("queued", "running", "completed", "failed")
PROGRESS_DIR = "progress"


def now() -> str:
    """The current UTC time as the manifest records it."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


_NONE = type(None)
_SHAPE: dict[str, tuple[type, ...]] = {
    "id": (str,),
    "kind": (str,),
    "name": (str,),
    "status": (str,),
    "created": (str,),
    "finished": (str, _NONE),
    "error": (str, _NONE),
    "study": (str, _NONE),
    "seed": (int, _NONE),
    "config_hash": (str, _NONE),
    "pid": (int, _NONE),
    "host": (str, _NONE),
    "parents": (list,),
    "attempts": (list,),
    "domains": (list, _NONE),
    "metrics": (dict,),
    "device": (dict,),
    "artifacts": (dict,),
    "stage_seconds": (dict,),
    "device_hours": (int, float),
    "wall_seconds": (int, float),
    "cpu_seconds": (int, float),
}
_REQUIRED = ("id", "kind", "name", "status")
_WORDS = {
    str: "a string",
    int: "an integer",
    float: "a number",
    list: "a list",
    dict: "an object",
    _NONE: "null",
}


def _shape_problem(manifest: Any) -> str | None:
    """What makes `manifest` unusable as a run manifest, or None."""
    if not isinstance(manifest, dict):
        return f"expected a JSON object, found {_WORDS.get(type(manifest), type(manifest).__name__)}"
    missing = [key for key in _REQUIRED if key not in manifest]
    if missing:
        return f"no {', '.join(repr(k) for k in missing)} field"
    for key, types in _SHAPE.items():
        value = manifest.get(key)
        if key in manifest and (not isinstance(value, types) or isinstance(value, bool)):
            expected = " or ".join(dict.fromkeys(_WORDS[t] for t in types))
            return f"{key!r} is {json.dumps(value, default=str)[:40]}, expected {expected}"
    if manifest["kind"] not in RUN_KINDS:
        return f"unknown kind {manifest['kind']!r} (known: {', '.join(RUN_KINDS)})"
    if manifest["status"] not in STATUSES:
        return f"unknown status {manifest['status']!r} (known: {', '.join(STATUSES)})"
    if not all(isinstance(p, str) for p in manifest.get("parents", [])):
        return "'parents' must be a list of run ids"
    if not all(isinstance(a, dict) for a in manifest.get("attempts", [])):
        return "'attempts' must be a list of objects"
    return None


@dataclass(frozen=True)
class Problem:
    """Something wrong under a runs root: where, what, and what to do about it."""

    path: Path
    what: str
    fix: str

    def __str__(self) -> str:
        return f"{self.path}: {self.what}; {self.fix}"


class ManifestError(UserError):
    """A run.json that cannot be used (unreadable, not JSON, or not shaped like a manifest)."""

    def __init__(self, problem: Problem):
        self.problem = problem
        super().__init__(str(problem))


def read_manifest(run_dir: Path) -> dict[str, Any]:
    """The manifest of `run_dir`, checked for the shape every command relies on (ManifestError if not)."""
    path = Path(run_dir) / MANIFEST
    fix = "fix the file or move its folder out of the runs root"
    try:
        manifest = json.loads(path.read_bytes())
    except OSError as exc:
        raise ManifestError(Problem(path, f"unreadable ({exc.strerror or exc})", fix)) from None
    except ValueError as exc:  # invalid JSON or invalid UTF-8
        raise ManifestError(Problem(path, f"not valid JSON ({str(exc).splitlines()[0]})", fix)) from None
    problem = _shape_problem(manifest)
    if problem is not None:
        raise ManifestError(Problem(path, f"not a run manifest: {problem}", fix))
    return manifest
