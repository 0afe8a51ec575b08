"""`Ledger`: every run under one runs root; it reads what it can (an unusable manifest is named on
stderr, one line each, and left out), checks the root for problems, finds runs by id, prefix, folder
or name, and creates new ones."""

from __future__ import annotations

import datetime as dt
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from m2rl.errors import UserError
from m2rl.ledger.costs import Device
from m2rl.ledger.locks import try_lock
from m2rl.ledger.manifest import (
    LOCK,
    MANIFEST,
    METRICS,
    PROGRESS_DIR,
    ManifestError,
    Problem,
    now,
)
from m2rl.ledger.owner import owner
from m2rl.ledger.run import Run
from m2rl.provenance import provenance
from m2rl.specs import MODEL_KINDS, RUN_KINDS

STALE_TEMP_S = 600.0  # a temp file this old was left by a write that never finished


def _new_id(kind: str, name: str) -> str:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in name)[:48]
    return f"{stamp}-{safe}-{uuid.uuid4().hex[:6]}"


_WARNED: set[Path] = set()


def warn_once(problem: Problem) -> None:
    """Name a run the ledger leaves out on stderr, once per process."""
    if problem.path not in _WARNED:
        _WARNED.add(problem.path)
        print(f"m2rl: warning: skipped {problem} (`m2rl runs --check` lists every problem)", file=sys.stderr)


def _resume_hint(run: Run) -> str:
    study = f", or run the study {run.manifest['study']} again" if run.manifest.get("study") else ""
    command, why = run.resume_advice()
    return (
        f"resume it with `{command}`" if command else f"{why}: run the command that made it again"
    ) + study


def _run_problems(run: Run) -> list[Problem]:
    """What is wrong with one readable run."""
    problems = []
    if run.killed:
        problems.append(Problem(run.path, run.manifest["error"], _resume_hint(run)))
    holds_model = run.kind in MODEL_KINDS
    if run.status == "completed" and holds_model and not (run.model_dir / "config.json").is_file():
        problems.append(
            Problem(run.model_dir, "the completed run's model is missing", "delete the run and make it again")
        )
    return problems


def _stale_temps(folder: Path) -> list[Problem]:
    """Temp files and folders a killed write left in `folder`."""
    cutoff = time.time() - STALE_TEMP_S
    return [
        Problem(p, "left by a write that never finished", "delete it")
        for p in sorted(folder.glob(".*.tmp"))
        if p.lstat().st_mtime < cutoff
    ]


class Ledger:
    """All runs under one runs root."""

    def __init__(self, root: Path | str, report: Callable[[Problem], None] | None = warn_once):
        self.root = Path(root).expanduser().resolve()
        self.report = report  # told about each run folder left out

    def runs(self) -> list[Run]:
        """Every readable run under the root, oldest first; each unreadable one is reported."""
        if not self.root.is_dir():
            return []
        found = []
        for manifest in sorted(self.root.glob(f"*/{MANIFEST}")):
            try:
                found.append(Run.load(manifest.parent))
            except ManifestError as exc:
                if self.report is not None:
                    self.report(exc.problem)
        return sorted(found, key=lambda r: (r.manifest.get("created", ""), r.id))

    def check(self) -> list[Problem]:
        """Every problem under the root (unusable manifests, killed runs, missing models, leftovers)."""
        if not self.root.is_dir():
            return []
        problems = _stale_temps(self.root)
        for folder in sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if not (folder / MANIFEST).exists():
                if (folder / "config.yaml").is_file():  # Ledger.create writes it just before run.json
                    problems.append(
                        Problem(
                            folder, "a run folder without run.json (its creation was cut short)", "delete it"
                        )
                    )
                continue
            try:
                problems += _run_problems(Run.load(folder))
            except ManifestError as exc:
                problems.append(exc.problem)
            problems += _stale_temps(folder) + _stale_temps(folder / PROGRESS_DIR)
        return problems

    def get(self, ref: str) -> Run:
        """A run by id, by unique id prefix, by directory path, or by name (the newest of that name)."""
        try:
            candidate = Path(ref).expanduser()
        except RuntimeError:  # `~name` of a user that does not exist
            candidate = Path(ref)
        if (candidate / MANIFEST).is_file():
            return Run.load(candidate.resolve())
        if (self.root / ref / MANIFEST).is_file():
            return Run.load(self.root / ref)
        runs = self.runs()
        by_name = [r for r in runs if r.name == ref]
        if by_name:
            return by_name[-1]
        by_prefix = [r for r in runs if r.id.startswith(ref)]
        if len(by_prefix) == 1:
            return by_prefix[0]
        if len(by_prefix) > 1:
            raise UserError(f"run {ref!r} is ambiguous: {', '.join(r.id for r in by_prefix)}")
        raise UserError(f"no run {ref!r} under {self.root} (see `m2rl runs`)")

    def find_completed(self, name: str, config_hash: str) -> Run | None:
        """The newest completed run with this name and config, for idempotent re-runs."""
        for run in reversed(self.runs()):
            if (
                run.name == name
                and run.status == "completed"
                and run.manifest.get("config_hash") == config_hash
            ):
                return run
        return None

    def create(
        self,
        kind: str,
        name: str,
        config: dict[str, Any],
        parents: list[str] | None = None,
        device: Device | None = None,
        world_size: int = 1,
        config_hash: str | None = None,
        seed: int | None = None,
        study: str | None = None,
        status: str = "running",
    ) -> Run:
        """A new run directory and its config: `running` (owned by this process until then) or `queued`."""
        if kind not in RUN_KINDS:
            raise ValueError(f"unknown run kind {kind!r}")
        device = device or Device()
        run_id = _new_id(kind, name)
        path = self.root / run_id
        path.mkdir(parents=True, exist_ok=False)
        if status == "running":
            try_lock(path / LOCK)  # a new folder: nobody else can hold it
        (path / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(config)))
        manifest = {
            "id": run_id,
            "kind": kind,
            "name": name,
            "status": status,
            "study": study,
            "seed": seed,
            "created": now(),
            "finished": None,
            "parents": list(parents or []),
            "device": {"type": device.type, "name": device.name, "count": device.count},
            "device_hours_label": device.hours_label,
            "world_size": world_size,
            "stage_seconds": {},
            "wall_seconds": 0.0,
            "device_hours": 0.0,
            "cpu_seconds": 0.0,
            "attempts": [],
            "metrics": {},
            "artifacts": {"config": "config.yaml", "metrics": METRICS, "model": "model"},
            "config_hash": config_hash,
            **owner(),
            "error": None,
            "provenance": provenance(),
        }
        run = Run(path, manifest)
        run.save()
        return run
