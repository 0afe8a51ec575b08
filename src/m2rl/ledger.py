"""Run directories and their `run.json` manifests: lineage, status, stage times and device-hours.

Every command writes one run directory under the runs root. The manifest is rewritten atomically
(temp file + rename) at every change, so a reader never sees a half-written file, and a run that
raises, is interrupted or is terminated is recorded as `failed`, never `completed`. A run whose
process was killed outright (SIGKILL, power loss) is detected by its dead pid and reported failed.
A run the study executor created but has not started yet is `queued`.

Two costs are recorded per attempt: wall seconds x devices (`device_hours`, the GPU-hours of a
dedicated allocation) and the CPU time its processes used (`cpu_seconds`: user + system of this
process and every descendant, live or reaped), which does not grow when other load shares the cores.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import platform
import signal
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from m2rl.errors import Interrupted, UserError

MANIFEST = "run.json"
METRICS = "metrics.jsonl"
RUN_KINDS = ("sft", "rl", "merge")
PROGRESS_DIR = "progress"


class Terminated(BaseException):
    """Raised in the main thread on SIGTERM so the run is closed as failed."""


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write JSON through a temp file in the same directory and rename it into place."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as handle:
        json.dump(payload, handle, indent=2, sort_keys=False, default=str)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def cpu_name() -> str:
    """A human-readable CPU model name."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


@dataclass
class Device:
    """What a run computes on; device-hours count `count` devices for the run's wall time."""

    type: str = "cpu"  # "cpu" or "cuda"
    name: str = field(default_factory=cpu_name)
    count: int = 1  # GPUs on cuda; processes on cpu

    @property
    def hours_label(self) -> str:
        return "GPU-hours" if self.type == "cuda" else "CPU-hours"

    @classmethod
    def detect(cls, world_size: int = 1, want_gpu: bool | None = None) -> Device:
        """The device this process will use: CUDA when available (and wanted), else the CPU."""
        import torch

        use_gpu = torch.cuda.is_available() if want_gpu is None else want_gpu and torch.cuda.is_available()
        if use_gpu:
            return cls("cuda", torch.cuda.get_device_name(0), world_size)
        return cls("cpu", cpu_name(), world_size)


def process_tree_cpu_seconds() -> float:
    """User + system CPU seconds of this process and all its descendants, live and reaped."""
    import psutil

    me = psutil.Process()
    total = 0.0
    for proc in [me, *me.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            # a process's reaped children are in its children_* fields; live ones are visited themselves
            total += times.user + times.system + times.children_user + times.children_system
    return total


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Run:
    """One run directory and its manifest; mutate through methods so the manifest stays current."""

    def __init__(self, path: Path, manifest: dict[str, Any]):
        self.path = path
        self.manifest = manifest
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
    def status(self) -> str:
        return self.manifest["status"]

    @property
    def model_dir(self) -> Path:
        return self.path / self.manifest.get("artifacts", {}).get("model", "model")

    def __repr__(self) -> str:
        return f"Run({self.id!r}, kind={self.kind!r}, status={self.status!r})"

    # -- persistence ------------------------------------------------------------------------
    def save(self) -> None:
        """Write the manifest, first bringing the live attempt's wall time and device-hours up to date,
        so a run killed outright still accounts for the time it ran until its last save."""
        if self._attempt_started is not None:
            self._account(time.perf_counter() - self._attempt_started)
        write_json_atomic(self.path / MANIFEST, self.manifest)

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
        try:
            manifest = json.loads((path / MANIFEST).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise UserError(f"{path / MANIFEST}: unreadable run manifest ({exc})") from exc
        run = cls(path, manifest)
        run._mark_if_orphaned()
        return run

    def _mark_if_orphaned(self) -> None:
        """A `running` run whose process is gone on this host died without closing: mark it failed."""
        m = self.manifest
        if m.get("status") != "running" or m.get("host") != socket.gethostname():
            return
        if not _pid_alive(int(m.get("pid", -1))):
            m["status"] = "failed"
            m["error"] = f"process {m.get('pid')} ended without closing the run (killed?)"
            m["finished"] = m.get("finished") or _now()
            if m.get("attempts") and m["attempts"][-1].get("status") == "running":
                m["attempts"][-1]["status"] = "killed"
            with contextlib.suppress(OSError):
                self.save()

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


def _new_id(kind: str, name: str) -> str:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in name)[:48]
    return f"{stamp}-{safe}-{uuid.uuid4().hex[:6]}"


class Ledger:
    """All runs under one runs root."""

    def __init__(self, root: Path | str):
        self.root = Path(root).expanduser().resolve()

    def runs(self) -> list[Run]:
        """Every run under the root, oldest first."""
        if not self.root.is_dir():
            return []
        found = [Run.load(p.parent) for p in sorted(self.root.glob(f"*/{MANIFEST}"))]
        return sorted(found, key=lambda r: (r.manifest.get("created", ""), r.id))

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
        """A new run directory with a `running` (or `queued`) manifest and its resolved config."""
        if kind not in RUN_KINDS:
            raise ValueError(f"unknown run kind {kind!r}")
        device = device or Device()
        run_id = _new_id(kind, name)
        path = self.root / run_id
        path.mkdir(parents=True, exist_ok=False)
        from omegaconf import OmegaConf

        (path / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(config)))
        manifest = {
            "id": run_id,
            "kind": kind,
            "name": name,
            "status": status,
            "study": study,
            "seed": seed,
            "created": _now(),
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
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "error": None,
        }
        run = Run(path, manifest)
        run.save()
        return run


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    def handler(signum, frame):  # noqa: ARG001
        raise Terminated(f"terminated by signal {signum}")

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def attempt(run: Run) -> Iterator[Run]:
    """Run one attempt of `run`: on success `completed`, on any exception or signal `failed`.

    Wall time and device-hours of every attempt (a resumed run has several) are summed.
    """
    run.manifest.setdefault("attempts", []).append(
        {"started": _now(), "wall_seconds": 0.0, "device_hours": 0.0, "status": "running"}
    )
    run._attempt_started = time.perf_counter()
    run._cpu_started = process_tree_cpu_seconds()
    run.update(status="running", pid=os.getpid(), host=socket.gethostname(), error=None, finished=None)
    status, error = "failed", None
    try:
        with _sigterm_raises():
            yield run
        status = "completed"
    except (KeyboardInterrupt, Terminated) as exc:
        signum = signal.SIGINT if isinstance(exc, KeyboardInterrupt) else signal.SIGTERM
        error = f"interrupted ({'Ctrl-C' if signum == signal.SIGINT else 'SIGTERM'})"
        resume = (
            f"m2rl {run.kind} --resume {run.id}"
            if run.kind in ("sft", "rl")
            else "run the same command again"
        )
        raise Interrupted(signum, [run.id], resume) from None
    except BaseException as exc:
        error = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
        raise
    finally:
        run._account(time.perf_counter() - run._attempt_started)
        run._attempt_started = None
        run.manifest["attempts"][-1]["status"] = status
        run.update(status=status, error=error, finished=_now())
