"""The SFT job: supervised fine-tuning of the base model (TRL SFTTrainer), as one run.

Reads top to bottom: no input runs to name (`resolve`); resolve the base model and check the batch
before the run exists (`create`),
then train in this process or under accelerate, resuming from the last complete checkpoint (`run`).
"""

from __future__ import annotations

from typing import Any

from m2rl.jobs.training import create_training_run, run_training
from m2rl.ledger import Ledger, Run
from m2rl.models.resolve import resolve_base_model
from m2rl.specs import SFTJob


def resolve(spec: SFTJob, ledger: Ledger) -> SFTJob:  # noqa: ARG001 (no input runs)
    """The spec as it is: SFT starts from the base model, no run."""
    return spec


def create(spec: SFTJob, ledger: Ledger, config: dict[str, Any] | None = None, queued: bool = False) -> Run:
    """Check the spec (base model, batch) and create the SFT run."""
    from m2rl.engine.sft import gradient_accumulation  # m2rl.engine.sft imports torch and TRL

    base = resolve_base_model(spec.model, ledger.root)
    gradient_accumulation(
        spec.sft.global_batch_size, spec.sft.per_device_batch_size, spec.launcher.world_size
    )
    run = create_training_run(spec, ledger, config, parents=[], queued=queued)
    run.update(base_model=base)
    return run


def train(spec: SFTJob, run: Run, resume_from: str | None) -> dict[str, Any]:
    """Fine-tune on this rank; return the run's summary metrics."""
    from m2rl.engine.sft import train_sft  # torch, TRL: only the training process needs them

    return train_sft(spec, run, run.manifest["base_model"], resume_from)


def run(spec: SFTJob, run: Run, resume: bool = False) -> Run:
    """One attempt of the SFT run (from its last complete checkpoint when resuming)."""
    return run_training(spec, run, train, resume)
