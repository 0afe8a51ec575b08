"""Where a study stage runs: a process on this machine, or a Slurm job (through submitit).

Both call `m2rl.jobs.run_job` with the stage's job spec and run directory; a stage's logs land in
`<run>/logs/`. submitit is what labs use to send Python functions to Slurm: it writes the sbatch
script, pickles the call, polls `sacct` and brings back the result or the traceback.

Locally, stages are forked from a multiprocessing forkserver that imported torch, transformers and
TRL once. submitit's local executor would start a fresh interpreter per stage (a controller plus the
task), and importing that stack costs ~6 s of CPU each time (measured here: `import torch,
transformers, trl` 5.8-6.9 s user): over the tiny study's 18 stages that is ~100 s of CPU, a sixth
of its 10-minute budget on two cores. The forkserver imports nothing but those libraries and never
runs torch ops, so its children start with no threads or CUDA state to inherit.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from m2rl.errors import Interrupted
from m2rl.jobs import run_job
from m2rl.specs import SlurmSettings

# What the local forkserver imports once, so that no stage pays for it.
PRELOAD = ["torch", "transformers", "trl", "datasets", "m2rl.jobs.rl", "m2rl.jobs.sft", "m2rl.engine.grpo"]
ERROR_FILE = "error.txt"


@dataclass(frozen=True)
class Resources:
    """What one stage may use: torch CPU threads and, on a GPU node, which devices."""

    threads: int
    devices: tuple[int, ...] = ()


class Handle(Protocol):
    """A submitted stage."""

    def finished(self) -> bool: ...

    def error(self) -> str | None:
        """After `finished`: None on success, else the last line of what went wrong."""
        ...

    def cancel(self) -> None: ...


@dataclass
class SubmititHandle:
    """A submitit job (local process or Slurm job)."""

    job: Any
    poll_mode: str = "force"

    def finished(self) -> bool:
        try:
            return bool(self.job.done(force_check=True))
        except Exception:  # noqa: BLE001 (sacct hiccups: ask again next poll)
            return False

    def error(self) -> str | None:
        try:
            exc = self.job.exception()
        except Exception as failure:  # noqa: BLE001
            return f"{type(failure).__name__}: {failure}"
        if exc is None:
            return None
        return last_error_line(str(exc)) or type(exc).__name__

    def cancel(self) -> None:
        try:
            self.job.cancel(check=False)
        except Exception:  # noqa: BLE001 (already gone)
            pass


def last_error_line(trace: str) -> str:
    """The exception line of a Python traceback (its last non-empty line before submitit's footer)."""
    lines = [line.strip() for line in trace.splitlines() if line.strip()]
    for line in reversed(lines):
        if not line.startswith(("-----", "You can check", "or at paths", "- /")) and ":" in line:
            return line[:300]
    return lines[-1][:300] if lines else ""


class Backend(Protocol):
    """Starts stages."""

    name: str

    def submit(
        self, spec_json: str, run_dir: Path, resume: bool, resources: Resources, logs: Path
    ) -> Handle: ...


@dataclass
class ProcessHandle:
    """A stage running as a forked process on this machine."""

    process: Any
    logs: Path

    def finished(self) -> bool:
        return self.process.exitcode is not None

    def error(self) -> str | None:
        code = self.process.exitcode
        if code == 0:
            return None
        written = self.logs / ERROR_FILE
        if written.is_file():
            return written.read_text().strip() or f"exited with status {code}"
        reason = (
            f"killed by signal {-code}" if code is not None and code < 0 else f"exited with status {code}"
        )
        return f"{reason} (see {self.logs / 'stage.log'})"

    def cancel(self) -> None:
        if self.process.exitcode is None:
            self.process.terminate()  # SIGTERM: the stage closes its run as failed


def _stage_process(spec_json: str, run_dir: str, resume: bool, devices: tuple[int, ...], logs: str) -> None:
    """A local stage's process: its output to `<logs>/stage.log`, its failure to `<logs>/error.txt`."""
    Path(logs).mkdir(parents=True, exist_ok=True)
    (Path(logs) / ERROR_FILE).unlink(missing_ok=True)
    log = os.open(Path(logs) / "stage.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
    sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)
    signal.signal(
        signal.SIGINT, signal.default_int_handler
    )  # the forkserver ignores Ctrl-C; a stage must not
    if devices:
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, devices))
    try:
        run_job(spec_json, run_dir, resume)
    except BaseException as exc:
        import traceback

        traceback.print_exc()
        (Path(logs) / ERROR_FILE).write_text(last_error_line(traceback.format_exc()) or repr(exc))
        # SystemExit lets multiprocessing run its exit handlers (semaphores a library made are released)
        raise SystemExit(130 if isinstance(exc, KeyboardInterrupt | Interrupted) else 1) from None


@dataclass
class LocalBackend:
    """Each stage in its own process on this machine, forked from a forkserver with torch and TRL loaded."""

    name: str = "local"

    def __post_init__(self) -> None:
        self.context = multiprocessing.get_context("forkserver")
        self.context.set_forkserver_preload(PRELOAD)

    def submit(self, spec_json: str, run_dir: Path, resume: bool, resources: Resources, logs: Path) -> Handle:
        process = self.context.Process(
            target=_stage_process,
            args=(spec_json, str(run_dir), resume, resources.devices, str(logs)),
            name=f"m2rl-{run_dir.name}",
        )
        process.start()
        return ProcessHandle(process, logs)


@dataclass
class SlurmBackend:
    """Each stage as a Slurm job (submitit writes the sbatch script and polls sacct)."""

    settings: SlurmSettings
    name: str = "slurm"
    extra: dict[str, Any] = field(default_factory=dict)

    def executor(self, logs: Path, job_name: str):
        """The submitit SlurmExecutor for one stage, with the study's Slurm settings."""
        import submitit

        s = self.settings
        executor = submitit.SlurmExecutor(folder=str(logs))
        parameters: dict[str, Any] = {
            "job_name": job_name,
            "time": s.time_min,
            "nodes": 1,
            "ntasks_per_node": 1,
            "cpus_per_task": s.cpus_per_job,
            "gpus_per_node": s.gpus_per_job or None,
            "setup": list(s.setup),
            "additional_parameters": dict(s.additional),
        }
        optional = {"partition": s.partition, "account": s.account, "mem": s.mem, "qos": s.qos}
        parameters.update({key: value for key, value in optional.items() if value})
        executor.update_parameters(**parameters)
        return executor

    def submit(self, spec_json: str, run_dir: Path, resume: bool, resources: Resources, logs: Path) -> Handle:  # noqa: ARG002
        executor = self.executor(logs, f"m2rl-{run_dir.name}"[:64])
        return SubmititHandle(executor.submit(run_job, spec_json, str(run_dir), resume))
