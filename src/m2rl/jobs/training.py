"""What SFT and RL jobs share: the start model, checkpoints, and one attempt under the launcher."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from m2rl.engine.launch import launch_accelerate
from m2rl.errors import UserError
from m2rl.jobs import save_spec
from m2rl.ledger import (
    METRICS,
    Device,
    Ledger,
    Run,
    attempt,
    describe_owner,
    read_manifest,
    write_text_atomic,
)
from m2rl.specs import RLJob, SFTJob

TrainFn = Callable[[Any, Run, str | None], dict[str, Any]]


def create_training_run(
    spec: SFTJob | RLJob, ledger: Ledger, config: dict[str, Any] | None, parents: list[str], queued: bool
) -> Run:
    """The run of an SFT or RL job: its manifest (device, world size, identity, seed, study) and job.json."""
    processes = spec.launcher.world_size
    run = ledger.create(
        spec.kind,
        spec.name,
        config or spec.model_dump(mode="json"),
        parents=parents,
        device=Device.detect(processes),
        world_size=processes,
        config_hash=spec.identity(),
        seed=spec.seed,
        study=spec.study,
        status="queued" if queued else "running",
    )
    save_spec(spec, run)
    return run


def last_checkpoint(run: Run) -> str | None:
    """The newest complete checkpoint of a run, if any."""
    checkpoints = run.complete_checkpoints()
    return str(checkpoints[-1]) if checkpoints else None


def checkpoint_step(checkpoint: str) -> int:
    """The optimizer step a checkpoint was saved at."""
    return int(Path(checkpoint).name.split("-")[-1])


def drop_metrics_after(run: Run, step: int) -> None:
    """Forget metrics logged after `step` (a resumed attempt logs those steps again)."""
    records = [r for r in run.read_metrics() if int(r.get("step", 0)) <= step]
    write_text_atomic(run.path / METRICS, "".join(json.dumps(r, default=float) + "\n" for r in records))


def is_rank_zero() -> bool:
    """Whether this process is the main process (or the only one)."""
    # lazy: torch, only in the process that trains (run_training's launching parent starts without it)
    import torch.distributed as dist

    return not dist.is_initialized() or dist.get_rank() == 0


def train_on_this_rank(spec: SFTJob | RLJob, run: Run, train: TrainFn, resume_from: str | None) -> None:
    """Train in this process (the only one, or one rank of an accelerate launch); rank 0 records metrics."""
    # lazy: torch, only in the process that trains (run_training's launching parent starts without it)
    import torch

    if spec.torch_threads:
        torch.set_num_threads(spec.torch_threads)
    if is_rank_zero():  # the threads this process trains with (the run was made by another process)
        run.update(
            provenance={**run.manifest.get("provenance", {}), "torch_threads": torch.get_num_threads()}
        )
    metrics = train(spec, run, resume_from)
    if is_rank_zero():
        # lazy: torch, only in the process that trains (run_training's launching parent starts without it)
        import torch.distributed as dist

        run.set_metrics(**metrics, processes=dist.get_world_size() if dist.is_initialized() else 1)


def run_training(spec: SFTJob | RLJob, run: Run, train: TrainFn, resume: bool) -> Run:
    """One attempt of a training run with the configured launcher; resume continues from a checkpoint."""
    with attempt(run):  # the checkpoint is chosen once this attempt owns the run: nobody else writes it
        resume_from = last_checkpoint(run) if resume else None
        if resume_from is not None:
            drop_metrics_after(run, checkpoint_step(resume_from))
        run.update(resumed_from=resume_from)
        if spec.launcher.name == "local":
            train_on_this_rank(spec, run, train, resume_from)
        else:
            args = ["--run-dir", str(run.path)] + (["--resume-from", resume_from] if resume_from else [])
            launch_accelerate(spec.launcher, run.path, "m2rl.jobs.entry", args)
            run.manifest = read_manifest(run.path)  # rank 0 wrote metrics
    return run


def check_resumable(run: Run, kind: str, ref: str) -> None:
    """A run `--resume` can continue: of this kind, not completed, not running."""
    if run.kind != kind:
        wanted = f"an {kind.upper()}" if kind in ("sft", "rl") else f"a {kind}"
        raise UserError(f"--resume {ref}: run {run.id} is a {run.kind} run, not {wanted} run")
    if run.status == "completed":
        raise UserError(f"--resume {ref}: run {run.id} already completed")
    if run.status == "running":
        raise UserError(f"--resume {ref}: run {run.id} is still running ({describe_owner(run.manifest)})")
