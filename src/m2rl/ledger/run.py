"""`Run`: one run directory and its manifest; every change goes through a method, so the manifest on
disk stays current (rewritten atomically by the attempt's main process only)."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from m2rl.errors import UserError
from m2rl.ledger.costs import process_tree_cpu_seconds
from m2rl.ledger.files import write_json_atomic
from m2rl.ledger.locks import try_lock, unlock, while_free
from m2rl.ledger.manifest import LOCK, MANIFEST, METRICS, PROGRESS_DIR, read_manifest
from m2rl.ledger.owner import describe_owner, read_as_killed
from m2rl.specs import TRAINING_KINDS

CLAIM_WAIT_S = 5.0  # a reader holds a run's lock for an instant; an attempt retries this long


class Run:
    """One run directory and its manifest; mutate through methods so the manifest stays current."""

    def __init__(self, path: Path, manifest: dict[str, Any]):
        self.path = path
        self.manifest = manifest
        self.writes_manifest = True  # False on accelerate ranks other than 0: one writer per run
        self.killed = False  # read as killed: `running` on disk, but nobody held its lock
        self._attempt_started: float | None = None  # perf_counter at the start of the live attempt
        self._cpu_started = 0.0  # process-tree CPU seconds at the start of the live attempt

    # -- identity ---------------------------------------------------------------------------
    @property
    def id(self) -> str:
        return self.manifest["id"]

    @property
    def name(self) -> str:
        return self.manifest["name"]

    @property
    def kind(self) -> str:
        return self.manifest["kind"]

    @property
    def is_expert(self) -> bool:
        """A single-domain RL run that is not a stage of a study's cascade (those record `cascade`)."""
        domains = self.manifest.get("domains") or []
        return self.kind == "rl" and len(domains) == 1 and not self.manifest.get("cascade")

    @property
    def status(self) -> str:
        return self.manifest["status"]

    @property
    def model_dir(self) -> Path:
        return self.path / self.manifest.get("artifacts", {}).get("model", "model")

    def complete_checkpoints(self) -> list[Path]:
        """The run's `checkpoints/checkpoint-N` directories that were saved to the end, oldest first.

        transformers writes `trainer_state.json` last (after weights, optimizer, scheduler and RNG
        states), so a checkpoint without it was cut short by a kill and cannot be resumed from.
        """
        found = [
            p
            for p in (self.path / "checkpoints").glob("checkpoint-*")
            if p.name.split("-")[-1].isdigit() and (p / "trainer_state.json").is_file()
        ]
        return sorted(found, key=lambda p: int(p.name.split("-")[-1]))

    def resume_advice(self) -> tuple[str, str]:
        """(the command that resumes this stopped run, "") or, where nothing can resume it, ("", why)."""
        if self.kind not in TRAINING_KINDS:
            return "", f"a {self.kind} run restarts whole"
        if self.complete_checkpoints():
            return f"m2rl {self.kind} --resume {self.id}", ""
        return "", f"it saved no checkpoint yet ({self.kind}.save_steps), so nothing can resume it"

    def __repr__(self) -> str:
        return f"Run({self.id!r}, kind={self.kind!r}, status={self.status!r})"

    # -- ownership --------------------------------------------------------------------------
    def claim(self) -> None:
        """Own the run for an attempt: take its lock (UserError while a live attempt holds it), re-read it."""
        deadline = time.monotonic() + CLAIM_WAIT_S
        while not try_lock(self.path / LOCK):
            if time.monotonic() > deadline:
                owner = describe_owner(read_manifest(self.path))
                raise UserError(f"run {self.id} is running ({owner}): wait for it or stop that process")
            time.sleep(0.05)
        self.manifest = read_manifest(self.path)
        attempts = self.manifest.get("attempts") or []
        if attempts and attempts[-1].get("status") == "running":  # we hold the lock: its owner died
            attempts[-1]["status"] = "killed"

    # -- persistence ------------------------------------------------------------------------
    def save(self) -> None:
        """Write the manifest, first bringing the live attempt's wall time and device-hours up to date,
        so a run killed outright still accounts for the time it ran until its last save. A status other
        than `running` gives up the run's lock."""
        if not self.writes_manifest:
            return
        if self._attempt_started is not None:
            self._account(time.perf_counter() - self._attempt_started)
        write_json_atomic(self.path / MANIFEST, self.manifest)
        if self.manifest["status"] != "running":
            unlock(self.path / LOCK)

    def _account(self, wall: float) -> None:
        attempts = self.manifest["attempts"]
        count = int(self.manifest["device"]["count"])
        cpu = max(process_tree_cpu_seconds() - self._cpu_started, 0.0)
        attempts[-1].update(
            wall_seconds=round(wall, 3), device_hours=wall * count / 3600, cpu_seconds=round(cpu, 3)
        )
        self.manifest["wall_seconds"] = round(sum(a["wall_seconds"] for a in attempts), 3)
        self.manifest["device_hours"] = sum(a["device_hours"] for a in attempts)
        self.manifest["cpu_seconds"] = round(sum(a.get("cpu_seconds", 0.0) for a in attempts), 3)

    @classmethod
    def load(cls, path: Path) -> Run:
        """The run at `path` (ManifestError if unusable); `running` with its lock free reads as killed."""
        path = Path(path)
        manifest = read_manifest(path)
        killed = False
        if manifest["status"] == "running":
            with while_free(path / LOCK) as free:
                if free:  # re-read while no attempt can start: it may have closed the run meanwhile
                    manifest = read_manifest(path)
                    killed = manifest["status"] == "running"
        if killed:
            read_as_killed(manifest)
        run = cls(path, manifest)
        run.killed = killed
        return run

    # -- recording --------------------------------------------------------------------------
    def add_stage_seconds(self, seconds: dict[str, float]) -> None:
        """Add wall seconds to named stages, in one manifest write."""
        stages = self.manifest.setdefault("stage_seconds", {})
        for stage, value in seconds.items():
            stages[stage] = round(stages.get(stage, 0.0) + value, 3)
        self.save()

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time a block of wall-clock work under a named stage (generation, training, eval, ...)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add_stage_seconds({name: time.perf_counter() - start})

    def log_metrics(self, record: dict[str, Any]) -> None:
        """Append one record to metrics.jsonl."""
        with open(self.path / METRICS, "a") as handle:
            handle.write(json.dumps(record, default=float) + "\n")

    def read_metrics(self) -> list[dict[str, Any]]:
        path = self.path / METRICS
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def update(self, **fields: Any) -> None:
        self.manifest.update(fields)
        self.save()

    def write_progress(self, job: str, done: float, total: float, note: str = "") -> None:
        """Publish how far `job` (sft, rl, eval, ...) is, for the study's live view."""
        directory = self.path / PROGRESS_DIR
        directory.mkdir(exist_ok=True)
        payload = {"done": done, "total": total, "note": note, "time": time.time()}
        write_json_atomic(directory / f"{job}.json", payload)

    def read_progress(self, job: str) -> dict[str, Any] | None:
        """The last progress `job` published, if any."""
        with contextlib.suppress(OSError, ValueError):
            return json.loads((self.path / PROGRESS_DIR / f"{job}.json").read_text())
        return None

    def set_metrics(self, **metrics: Any) -> None:
        self.manifest.setdefault("metrics", {}).update(metrics)
        self.save()

    @property
    def device_hours(self) -> float:
        return float(self.manifest.get("device_hours", 0.0))
