"""Jobs: one module per run kind (m2rl.specs.SPEC_TYPES: sft, rl, merge, eval, analyze, distill), each
of one shape, the `JobModule` protocol.

`resolve(spec, ledger)` names every input run by id (a job without inputs returns its spec);
`create(spec, ledger, ...)` checks the resolved spec against the ledger (parents exist and are
completed, data loads, batches divide) and creates the run directory, doing no heavy work;
`run(spec, run, resume)` does the work as one attempt of that run. `start` does all three in this
process (the single-run commands); the study executor calls `resolve` and `create` itself and
`run_job` in a worker process or a Slurm job.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Protocol, cast

from m2rl.console import quiet_libraries
from m2rl.ledger import Ledger, Run
from m2rl.specs import SPEC_TYPES, JobSpec, load_spec

JOB_FILE = "job.json"
KINDS = tuple(SPEC_TYPES)


class JobModule(Protocol):
    """The contract of a job module (`m2rl.jobs.<kind>`), each function taking its kind's spec."""

    def resolve(self, spec: Any, ledger: Ledger) -> JobSpec:
        """The spec with its input runs named by id (what its identity and job.json hold)."""
        ...

    def create(
        self, spec: Any, ledger: Ledger, config: dict[str, Any] | None = None, queued: bool = False
    ) -> Run:
        """Check the resolved spec against the ledger and create the run it writes; no heavy work."""
        ...

    def run(self, spec: Any, run: Run, resume: bool = False) -> Run:
        """Do the work as one attempt of `run` (from its last checkpoint on resume, where it has one)."""
        ...


def module(kind: str) -> JobModule:
    """The job module of a run kind (imported on first use: training modules pull in torch)."""
    if kind not in KINDS:
        raise ValueError(f"unknown job kind {kind!r}")
    return cast(JobModule, importlib.import_module(f"m2rl.jobs.{kind}"))


def save_spec(spec: JobSpec, run: Run) -> None:
    """Keep the spec beside the manifest: what every rank, resume and worker rebuilds the job from."""
    (run.path / JOB_FILE).write_text(spec.to_json())


def read_spec(run: Run) -> JobSpec:
    """The spec a run was created from."""
    return load_spec((run.path / JOB_FILE).read_text())


def resolve(spec: JobSpec, ledger: Ledger) -> JobSpec:
    """The spec with its input runs named by id (what its identity and job.json hold)."""
    return module(spec.kind).resolve(spec, ledger)


def find_reusable(spec: JobSpec, ledger: Ledger) -> Run | None:
    """A completed run of the same name whose spec had the same identity (idempotent re-runs)."""
    return ledger.find_completed(spec.name, spec.identity())


def create(spec: JobSpec, ledger: Ledger, config: dict[str, Any] | None = None, queued: bool = False) -> Run:
    """Validate `spec` against the ledger and create the run it writes (`queued` for the executor)."""
    return module(spec.kind).create(spec, ledger, config=config, queued=queued)


def execute(spec: JobSpec, run: Run, resume: bool = False) -> Run:
    """Do the job's work as one attempt of `run` (continuing from its last checkpoint on resume)."""
    if spec.torch_threads:
        import torch  # heavy: only a job that does its work here needs it

        torch.set_num_threads(spec.torch_threads)
    return module(spec.kind).run(spec, run, resume=resume)


def start(spec: JobSpec, ledger: Ledger, config: dict[str, Any] | None = None, reuse: bool = False) -> Run:
    """Resolve, create and run a job in this process; with `reuse`, a completed identical run is returned."""
    spec = resolve(spec, ledger)
    if reuse and (done := find_reusable(spec, ledger)) is not None:
        return done
    return execute(spec, create(spec, ledger, config=config))


def run_job(spec_json: str, run_dir: str, resume: bool = False) -> str:
    """Worker entry (a study stage in its own process or Slurm job): run the job; return the run id."""
    quiet_libraries()
    spec = load_spec(spec_json)
    run = Run.load(Path(run_dir))
    return execute(spec, run, resume=resume).id
