"""Where a study stage runs: a process on this machine, or a Slurm job (through submitit).

Both call `m2rl.jobs.run_job` with the stage's job spec and run directory; a stage's logs land in
`<run>/logs/`. submitit is what labs use to send Python functions to Slurm: it writes the sbatch
script, pickles the call and brings back the result or the traceback. A Slurm job asks
for what its stage's launcher starts (`slurm_request`: one GPU per process, on the launcher's
machines); the dry-run renders one job's sbatch script through the same submitit code, and checks the
partition against what `sinfo` lists.

A Slurm job's state is read from the controller first (`scontrol show job`, which knows pending,
running and ended jobs until `MinJobAge` after their end), from `sacct` only for a job the controller
no longer lists, and from submitit's result file when neither knows it. submitit itself polls `sacct`
alone, and on a cluster without slurmdbd (a one-node cluster, many small ones) `sacct` answers
"accounting storage is disabled": submitit then reads every job as UNKNOWN and waits forever on a job
that was cancelled or killed before it wrote its result. Starting slurmdbd for the study's sake would
need a MySQL server and an accounting database: the controller already knows what the study asks.

Each submission is recorded in `<logs>/slurm-jobs` (one job id a line) before the command goes on, and
the attempt inside the job records its `slurm_job` in the run's manifest. A command started again after
the one before it died (SIGKILL, a lost login node) follows a stage's job that is still in Slurm's queue
instead of submitting it a second time.

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
import re
import shutil
import signal
import subprocess
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from m2rl.errors import Interrupted, UserError
from m2rl.jobs import run_job
from m2rl.specs import EvalSection, JobSpec, LauncherSpec, SlurmSettings, load_spec

# What the local forkserver imports once, so that no stage pays for it.
PRELOAD = ["torch", "transformers", "trl", "datasets", "m2rl.jobs.rl", "m2rl.jobs.sft", "m2rl.engine.grpo"]
ERROR_FILE = "error.txt"
SLURM_JOBS_FILE = "slurm-jobs"  # in a stage's logs: the id of every job submitted for it


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


@dataclass(frozen=True)
class SlurmRequest:
    """What one stage's Slurm job asks for."""

    nodes: int
    gpus_per_node: int
    cpus_per_task: int
    time_min: int
    mem: str | None
    partition: str | None

    @property
    def gpus(self) -> int:
        return self.nodes * self.gpus_per_node


def slurm_request(
    settings: SlurmSettings,
    launcher: LauncherSpec | None = None,
    eval_section: EvalSection | None = None,
) -> SlurmRequest:
    """A stage's request: a training stage (`launcher` given) on the launcher's machines, an eval or
    analyze stage or a tuned merge (`eval_section`) on one node, a merge on one node with no GPU.

    `study.slurm.gpus_per_job: auto` gives a training stage one GPU per process of its launcher
    (num_processes over num_machines per node; none with launcher.use_cpu=true), an eval or analyze
    stage its vLLM tensor-parallel size (one GPU with the hf backend), a merge none (merges run on CPU).
    """
    nodes = launcher.num_machines if launcher is not None else 1
    gpus = settings.gpus_per_job
    if gpus == "auto":
        if launcher is not None:
            gpus = 0 if launcher.use_cpu is True else launcher.num_processes // launcher.num_machines
        elif eval_section is not None:
            gpus = eval_section.vllm.tensor_parallel_size if eval_section.backend == "vllm" else 1
        else:
            gpus = 0
    return SlurmRequest(
        nodes, int(gpus), settings.cpus_per_job, settings.time_min, settings.mem, settings.partition
    )


def spec_request(settings: SlurmSettings, spec: JobSpec) -> SlurmRequest:
    """The request of a stage's job spec (a tuned merge's trials sample as an eval stage does)."""
    search = getattr(spec, "search", None)
    evaluated = getattr(spec, "eval", None) or (search.eval if search is not None else None)
    return slurm_request(settings, getattr(spec, "launcher", None), evaluated)


def slurm_parameters(settings: SlurmSettings, request: SlurmRequest, job_name: str) -> dict[str, Any]:
    """submitit's SlurmExecutor parameters for one job (one task per node: the launcher starts the ranks)."""
    parameters: dict[str, Any] = {
        "job_name": job_name,
        "time": request.time_min,
        "nodes": request.nodes,
        "ntasks_per_node": 1,
        "cpus_per_task": request.cpus_per_task,
        "gpus_per_node": request.gpus_per_node or None,
        "setup": list(settings.setup),
        "additional_parameters": dict(settings.additional),
    }
    optional = {
        "partition": request.partition,
        "account": settings.account,
        "mem": request.mem,
        "qos": settings.qos,
    }
    parameters.update({key: value for key, value in optional.items() if value})
    return parameters


def sbatch_preview(settings: SlurmSettings, request: SlurmRequest, folder: Path, job_name: str) -> str:
    """The sbatch script submitit writes for such a job, rendered by submitit itself; nothing is submitted
    and nothing is written."""
    import submitit  # only the Slurm backend needs it (~0.1 s to import)

    class Preview(submitit.SlurmExecutor):
        @classmethod
        def affinity(cls) -> int:  # SlurmExecutor refuses to exist without srun; rendering needs none
            return 1

    executor = Preview(folder=str(folder))
    executor.update_parameters(**slurm_parameters(settings, request, job_name))
    return executor._make_submission_file_text(executor._submitit_command_str, "preview")


def cluster_partitions() -> tuple[list[str] | None, str]:
    """The partitions `sinfo -h -o %P` lists (the default one ends in `*`), or None and why not."""
    sinfo = shutil.which("sinfo")
    if sinfo is None:
        return None, "no sinfo on PATH"
    try:
        listed = subprocess.run([sinfo, "-h", "-o", "%P"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"sinfo failed: {exc}"
    if listed.returncode != 0:
        return None, f"sinfo failed: {(listed.stderr.strip().splitlines() or [''])[-1][:200]}"
    return list(dict.fromkeys(line.strip() for line in listed.stdout.splitlines() if line.strip())), ""


def check_cluster() -> None:
    """Refuse a Slurm study (UserError, before any run exists) where this machine cannot submit: no
    sbatch on PATH, or a controller that `sinfo` cannot reach."""
    if shutil.which("sbatch") is None:
        raise UserError(
            "study.executor=slurm: no sbatch on PATH (Slurm's client commands are not installed here, or "
            "not on PATH); run the study where sbatch works, or set study.executor=local"
        )
    partitions, why = cluster_partitions()
    if partitions is None:
        raise UserError(
            f"study.executor=slurm: the Slurm controller cannot be reached ({why}); check that slurmctld "
            "is up and SLURM_CONF names its slurm.conf, or set study.executor=local"
        )


def check_partition(settings: SlurmSettings, partitions: list[str] | None, why_unknown: str = "") -> str:
    """One line on where the jobs go; a UserError where the cluster needs a partition and none is set
    (no default partition), or the one set is not among the cluster's."""
    if partitions is None:
        if settings.partition:
            return f"partition {settings.partition} (not checked: {why_unknown})"
        return (
            f"study.slurm.partition is not set and could not be checked ({why_unknown}): sbatch then uses "
            "the cluster's default partition, and refuses the jobs where there is none"
        )
    names = [p.rstrip("*") for p in partitions]
    listed = ", ".join(partitions) or "nothing"
    if settings.partition:
        missing = [p for p in settings.partition.split(",") if p not in names]
        if missing:
            raise UserError(
                f"study.slurm.partition={settings.partition}: the cluster has no partition {missing[0]} "
                f"(sinfo lists {listed})"
            )
        return f"partition {settings.partition} (listed by sinfo)"
    default = next((p.rstrip("*") for p in partitions if p.endswith("*")), None)
    if default is None:
        raise UserError(
            f"study.slurm.partition is not set and the cluster has no default partition (sinfo lists "
            f"{listed}): set study.slurm.partition=NAME"
        )
    return f"partition {default}: the cluster's default (study.slurm.partition is not set)"


def check_launcher(settings: SlurmSettings, launcher: LauncherSpec, dry_run: bool) -> list[str]:
    """What the launcher asks of Slurm that the jobs cannot give: a UserError (a warning line in a dry
    run, for multi-node stages, which it still shows)."""
    per_node = launcher.num_processes // launcher.num_machines
    gpus = settings.gpus_per_job
    if gpus != "auto" and 0 < int(gpus) < per_node and launcher.use_cpu is not True:
        raise UserError(
            f"study.slurm.gpus_per_job={gpus}: launcher.num_processes={launcher.num_processes} on "
            f"{launcher.num_machines} machine(s) starts {per_node} processes per node, one per GPU; set "
            f"study.slurm.gpus_per_job=auto (or {per_node})"
        )
    if launcher.num_machines > 1:
        problem = (
            f"launcher.num_machines={launcher.num_machines}: a training job would ask for "
            f"{launcher.num_machines} nodes and start the stage on each, every node as machine_rank 0 of "
            "the same run (a stage does not yet take its machine_rank and main_process_ip from Slurm); "
            "set launcher.num_machines=1, or run multi-node stages by hand, one command per node"
        )
        if not dry_run:
            raise UserError(problem)
        return [f"not runnable as planned: {problem}"]
    return []


# Job states that end a job (`scontrol` and `sacct` spell them alike; sacct adds "by UID" to CANCELLED).
SLURM_ENDED = {
    "BOOT_FAIL",
    "CANCELLED",
    "COMPLETED",
    "DEADLINE",
    "FAILED",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "PREEMPTED",
    "REVOKED",
    "TIMEOUT",
}
SLURM_TIMEOUT_S = 60  # one scontrol, sacct, sbatch or scancel call


class SlurmState(NamedTuple):
    """What Slurm says of a job: its state (None: not known), and where that came from."""

    state: str | None
    source: str  # scontrol | sacct | gone (no Slurm command knows the job) | unreachable
    detail: str = ""


def _slurm_command(command: list[str]) -> subprocess.CompletedProcess | None:
    """A Slurm command's completed process, or None where it is not on PATH or did not answer."""
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=SLURM_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError):
        return None


def slurm_job_state(job_id: str) -> SlurmState:
    """The state of a Slurm job: `scontrol show job` first, then `sacct` (where accounting is enabled)
    for a job the controller has forgotten or when the controller did not answer."""
    shown = _slurm_command(["scontrol", "show", "job", "-o", job_id])
    forgotten, why = False, "no scontrol on PATH"
    if shown is not None:
        found = re.search(r"(?:^|\s)JobState=(\S+)", shown.stdout)
        if shown.returncode == 0 and found:
            return SlurmState(found.group(1), "scontrol")
        why = (shown.stderr.strip().splitlines() or ["no answer"])[-1][:200]
        forgotten = "invalid job id" in why.lower()
    listed = _slurm_command(["sacct", "-n", "-P", "-X", "-o", "JobID,State", "-j", job_id])
    if listed is not None and listed.returncode == 0:
        for line in listed.stdout.splitlines():
            fields = line.strip().split("|")
            if len(fields) >= 2 and fields[0] == job_id and fields[1]:
                return SlurmState(fields[1].split()[0], "sacct")
    elif listed is not None:
        why += "; sacct: " + (listed.stderr.strip().splitlines() or ["no answer"])[-1][:200]
    # The controller said it has no such job (it forgot it after MinJobAge) and no accounting knows it:
    # the job ended. Any other failure is the controller not answering: ask again at the next poll.
    return SlurmState(None, "gone" if forgotten else "unreachable", why)


def cancel_slurm_job(job_id: str) -> None:
    """`scancel ID` (nothing if the job is gone already)."""
    _slurm_command(["scancel", job_id])


@dataclass
class SlurmJobHandle:
    """A stage's Slurm job, followed by its id; its result and traceback come back through submitit's
    files in `logs`."""

    job_id: str
    logs: Path
    adopted: bool = False  # submitted by an earlier command, followed by this one
    state: str = "PENDING"
    ended: bool = False

    def _paths(self):
        from submitit.core.utils import JobPaths  # only the Slurm backend needs submitit

        return JobPaths(self.logs, job_id=self.job_id, task_id=0)

    @property
    def log(self) -> Path:
        """The job's stderr, where a stage's traceback lands."""
        return self._paths().stderr

    def finished(self) -> bool:
        if self.ended:
            return True
        seen = slurm_job_state(self.job_id)
        if seen.state is not None:
            self.state = seen.state
            self.ended = seen.state.rstrip("+") in SLURM_ENDED
        elif seen.source == "gone":  # Slurm forgot it (and keeps no accounting): it ended
            self.state, self.ended = "ENDED", True
        return self.ended

    def _outcome(self) -> tuple[str, Any] | None:
        from submitit.core.utils import pickle_load  # only the Slurm backend needs submitit

        result = self._paths().result_pickle
        if not result.exists():
            return None
        try:
            return pickle_load(result)
        except Exception as exc:  # noqa: BLE001 (a truncated file: the job died writing it)
            return "error", f"{type(exc).__name__}: {exc}"

    def error(self) -> str | None:
        outcome = self._outcome()
        if outcome is not None and outcome[0] == "success" and self.state in ("COMPLETED", "ENDED"):
            return None
        if outcome is not None and outcome[0] == "error":
            return last_error_line(str(outcome[1])) or f"Slurm job {self.job_id} failed"
        logged = self.log.read_text(errors="replace") if self.log.is_file() else ""
        line = last_error_line(logged) if "Error" in logged or "Traceback" in logged else ""
        return line or f"Slurm job {self.job_id} ended {self.state} without a result"

    def where(self) -> str:
        """Which job ran the stage and where its log is, for a failure's report."""
        return f"Slurm job {self.job_id} {self.state}, log {self.log}"

    def cancel(self) -> None:
        cancel_slurm_job(self.job_id)


def recorded_jobs(logs: Path) -> list[str]:
    """The ids of the jobs submitted for a stage (its logs' `slurm-jobs`), oldest first."""
    try:
        return [line.strip() for line in (logs / SLURM_JOBS_FILE).read_text().splitlines() if line.strip()]
    except OSError:
        return []


def live_job(logs: Path) -> str | None:
    """The stage's last submitted job, where Slurm still has it queued, running or ending."""
    jobs = recorded_jobs(logs)
    if not jobs:
        return None
    seen = slurm_job_state(jobs[-1])
    if seen.state is not None and seen.state.rstrip("+") not in SLURM_ENDED:
        return jobs[-1]
    return None


@dataclass
class SlurmBackend:
    """Each stage as a Slurm job: submitit writes the sbatch script and submits it; the job's state is
    read from `scontrol` (then `sacct`), and a job an earlier command submitted that is still in the
    queue is followed, not submitted again."""

    settings: SlurmSettings
    name: str = "slurm"
    extra: dict[str, Any] = field(default_factory=dict)

    def executor(self, logs: Path, job_name: str, request: SlurmRequest | None = None):
        """The submitit SlurmExecutor for one stage, with the study's Slurm settings."""
        import submitit  # only the Slurm backend needs it (~0.1 s to import)

        executor = submitit.SlurmExecutor(folder=str(logs))
        request = request or slurm_request(self.settings)
        executor.update_parameters(**slurm_parameters(self.settings, request, job_name))
        return executor

    def submit(self, spec_json: str, run_dir: Path, resume: bool, resources: Resources, logs: Path) -> Handle:  # noqa: ARG002
        earlier = live_job(logs)
        if earlier is not None:
            return SlurmJobHandle(earlier, logs, adopted=True)
        request = spec_request(self.settings, load_spec(spec_json))
        executor = self.executor(logs, f"m2rl-{run_dir.name}"[:64], request)
        job = executor.submit(run_job, spec_json, str(run_dir), resume)
        with open(logs / SLURM_JOBS_FILE, "a") as record:
            record.write(f"{job.job_id}\n")
            record.flush()
            os.fsync(record.fileno())
        return SlurmJobHandle(str(job.job_id), logs)
