"""Run directories and their `run.json` manifests: lineage, status, stage times and device-hours.

Every command writes one run directory under the runs root. The manifest is rewritten atomically
(temp file + rename, the temp name unique per host and process) at every change, by the attempt's
main process only, so a reader never sees a half-written file, and a run that raises, is interrupted
or is terminated is recorded as `failed`, never `completed`. A run the study executor created but
has not started yet is `queued`.

An attempt owns its run through an exclusive `flock` on `<run>/run.lock`, held for the attempt's
life; the kernel drops it when the process dies, however it dies. `running` means "the lock is
held": a manifest that says `running` while nobody holds the lock belongs to a process that was
killed (SIGKILL, OOM killer, power loss, a lost node), and is read as `failed` with its last attempt
`killed`, resumable from any machine. pid, host, boot id and process start time are kept for display
only: pids repeat across PID namespaces and nodes, and host names repeat or change across
containers. A reader probes the lock with a shared lock, held only while it re-reads the manifest.
flock is shared between machines where the filesystem shares lock semantics (local disks, NFSv4,
Lustre mounted with `-o flock`).

The ledger reads what it can: a manifest that is not valid JSON or not shaped like one is named on
stderr, one line each, and left out, so one bad file never stops a command; `Ledger.check` lists
every problem under the root with what to do about it.

Two costs are recorded per attempt: wall seconds x devices (`device_hours`, the GPU-hours of a
dedicated allocation) and the CPU time its processes used (`cpu_seconds`: user + system of this
process and every descendant, live or reaped), which does not grow when other load shares the cores.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import errno
import fcntl
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from m2rl.errors import Interrupted, UserError
from m2rl.provenance import provenance

MANIFEST = "run.json"
METRICS = "metrics.jsonl"
LOCK = "run.lock"
RUN_KINDS = ("sft", "rl", "merge", "analyze", "distill")
# the kinds whose runs hold a model (an analyze run holds a report)
MODEL_KINDS = ("sft", "rl", "merge", "distill")
TRAINING_KINDS = ("sft", "rl", "distill")  # kinds that save checkpoints and resume from them
STATUSES = ("queued", "running", "completed", "failed")
PROGRESS_DIR = "progress"
CLAIM_WAIT_S = 5.0  # a reader holds a run's lock for an instant; an attempt retries this long
STALE_TEMP_S = 600.0  # a temp file this old was left by a write that never finished


class Terminated(BaseException):
    """Raised in the main thread on SIGTERM so the run is closed as failed."""


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


# -- atomic writes ---------------------------------------------------------------------------------
def temp_sibling(path: Path) -> Path:
    """A hidden temp name beside `path`, unique per host and process (pids repeat across nodes)."""
    return path.with_name(f".{path.name}.{socket.gethostname()}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


@contextlib.contextmanager
def _replacing(path: Path) -> Iterator[IO[str]]:
    """A text handle on a temp sibling that replaces `path` once the block ends without error."""
    tmp = temp_sibling(path)
    try:
        with open(tmp, "w") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write JSON through a temp file in the same directory and rename it into place."""
    with _replacing(path) as handle:
        json.dump(payload, handle, indent=2, sort_keys=False, default=str)


def write_text_atomic(path: Path, text: str) -> None:
    """Write text through a temp file in the same directory and rename it into place."""
    with _replacing(path) as handle:
        handle.write(text)


_RENAME_EXCHANGE = 2


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2); False where the system or filesystem cannot."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    at_cwd = -100
    if renameat2(at_cwd, os.fsencode(a), at_cwd, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    if ctypes.get_errno() in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False
    raise OSError(ctypes.get_errno(), f"cannot swap {a} and {b}")


def replace_dir(tmp: Path, target: Path) -> None:
    """Put the finished folder `tmp` at its sibling `target`, so readers see the old folder or the new one."""
    try:
        os.rename(tmp, target)  # nothing there yet
        return
    except OSError as exc:
        if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
            raise
    if _exchange(tmp, target):  # one step where the filesystem can
        shutil.rmtree(tmp)  # now the previous output
        return
    old = temp_sibling(target)  # else two renames, the old folder moving aside first
    os.rename(target, old)
    os.rename(tmp, target)
    shutil.rmtree(old)


# -- locks -----------------------------------------------------------------------------------------
_HELD: dict[Path, int] = {}  # lock files this process holds -> their descriptors


def _forget_inherited_locks() -> None:
    """In a forked child: drop the inherited descriptors, so a lock lives no longer than its owner."""
    for fd in _HELD.values():
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD.clear()


os.register_at_fork(after_in_child=_forget_inherited_locks)


def try_lock(path: Path) -> bool:
    """Take the exclusive flock on `path` (created if missing) without waiting; False if another holds it."""
    path = path.resolve()
    if path in _HELD:
        return True
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return False
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP):
            raise UserError(
                f"{path}: this filesystem does not support file locks; put the runs root on one that does "
                "(a local disk, NFSv4, Lustre mounted with -o flock)"
            ) from None
        raise
    except BaseException:
        os.close(fd)
        raise
    _HELD[path] = fd
    return True


def unlock(path: Path) -> None:
    """Release a lock this process took with `try_lock` (nothing if it holds none)."""
    fd = _HELD.pop(path.resolve(), None)
    if fd is not None:
        os.close(fd)


@contextlib.contextmanager
def _while_free(path: Path) -> Iterator[bool]:
    """Yield whether nobody holds the lock on `path`; a shared lock meanwhile keeps anyone from taking it."""
    if path.resolve() in _HELD:
        yield False
        return
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:  # never locked: nobody holds it
        yield True
        return
    except OSError:  # cannot tell: a reader does not declare a run dead on a guess
        yield False
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def lock_held(path: Path) -> bool:
    """Whether some process (this one included) holds the lock on `path`."""
    with _while_free(path) as free:
        return not free


# -- the manifest's shape ----------------------------------------------------------------------------
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


# -- who runs an attempt -------------------------------------------------------------------------------
def _boot_id() -> str | None:
    with contextlib.suppress(OSError):
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    return None


def _owner() -> dict[str, Any]:
    """This process, for display: pid, host, boot id and start time (liveness is the lock's job)."""
    import psutil

    started = dt.datetime.fromtimestamp(psutil.Process().create_time(), dt.UTC)
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "boot_id": _boot_id(),
        "process_started": started.isoformat(timespec="seconds"),
    }


def describe_owner(manifest: dict[str, Any]) -> str:
    """`process 123 on host-a (started ...)`: who last ran the run, as its manifest records."""
    started = f", started {manifest['process_started']}" if manifest.get("process_started") else ""
    return f"process {manifest.get('pid')} on {manifest.get('host')}{started}"


def _read_as_killed(manifest: dict[str, Any]) -> None:
    """A `running` manifest nobody holds the lock of: its process died without closing the run."""
    manifest["status"] = "failed"
    manifest["error"] = f"killed: {describe_owner(manifest)} ended without closing the run"
    if manifest.get("attempts") and manifest["attempts"][-1].get("status") == "running":
        manifest["attempts"][-1]["status"] = "killed"


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
            with _while_free(path / LOCK) as free:
                if free:  # re-read while no attempt can start: it may have closed the run meanwhile
                    manifest = read_manifest(path)
                    killed = manifest["status"] == "running"
        if killed:
            _read_as_killed(manifest)
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
            **_owner(),
            "error": None,
            "provenance": provenance(),
        }
        run = Run(path, manifest)
        run.save()
        return run


# The exceptions SIGTERM handlers raised inside `sigterm_raises` contexts still open (innermost last).
_raised_by_signal: list[BaseException] = []


@contextlib.contextmanager
def sigterm_raises(error: Callable[[int], BaseException]) -> Iterator[None]:
    """SIGTERM raises `error(signum)` in the main thread while inside (elsewhere it is left as it is).

    Python runs a signal handler between any two bytecodes, also inside a finalizer (`__del__`, a
    weakref callback), where an exception is printed as "ignored" and lost: the process would go on
    as if never signalled. So the raised exception is also kept until the context ends, and
    `raise_lost_signal` (called where long work reports progress) raises it again.
    """

    def handler(signum, frame):  # noqa: ARG001
        exc = error(signum)
        _raised_by_signal.append(exc)
        raise exc

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    depth = len(_raised_by_signal)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        del _raised_by_signal[depth:]


def raise_lost_signal() -> None:
    """Raise again the exception a SIGTERM handler raised in this still-open `sigterm_raises`
    context, if a finalizer swallowed it (a no-op when no signal came)."""
    if _raised_by_signal:
        raise _raised_by_signal[-1]


def signal_behind(exc: BaseException) -> int | None:
    """SIGINT or SIGTERM if `exc` is Ctrl-C or SIGTERM, or was raised while unwinding from one; else None.

    A signal can land in a library's bookkeeping (rich's live display pushing its render hook), whose
    cleanup then fails on the half-done state (IndexError: pop from empty list) and would mask it."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt):
            return signal.SIGINT
        if isinstance(current, Terminated):
            return signal.SIGTERM
        seen.add(id(current))
        current = current.__context__
    return None


@contextlib.contextmanager
def attempt(run: Run) -> Iterator[Run]:
    """Run one attempt of `run`, owning it (its lock) throughout: on success `completed`, on any
    exception or signal `failed`. Wall time and device-hours of every attempt (a resumed run has
    several) are summed."""
    run.claim()
    try:
        run.manifest.setdefault("attempts", []).append(
            {"started": _now(), "wall_seconds": 0.0, "device_hours": 0.0, "status": "running"}
        )
        run._attempt_started = time.perf_counter()
        run._cpu_started = process_tree_cpu_seconds()
        run.update(status="running", **_owner(), error=None, finished=None)
        status, error = "failed", None
        try:
            with sigterm_raises(lambda signum: Terminated(f"terminated by signal {signum}")):
                yield run
            status = "completed"
        except BaseException as exc:
            signum = signal_behind(exc)
            if signum is None:
                error = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
                raise
            error = f"interrupted ({'Ctrl-C' if signum == signal.SIGINT else 'SIGTERM'})"
            resume, why = run.resume_advice()
            raise Interrupted(signum, [run.id], resume, why) from None
        finally:
            run._account(time.perf_counter() - run._attempt_started)
            run._attempt_started = None
            run.manifest["attempts"][-1]["status"] = status
            run.update(status=status, error=error, finished=_now())
    finally:
        unlock(run.path / LOCK)
