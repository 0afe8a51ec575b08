"""The RL job: GRPO from an SFT run (TRL GRPOTrainer); one domain is an expert, several the mixed run;
a study's cascade stage starts from the RL run of the stage before.

`create` resolves the start model, checks the rollout batch and the prompts of every domain before
the run exists; `run` trains in this process or under accelerate, resuming from the last complete
checkpoint. Each sample is scored by its own domain's verifier (engine/rewards.py).
"""

from __future__ import annotations

from typing import Any

from omegaconf import OmegaConf

from m2rl.data.load import mixture_weights, rl_samples
from m2rl.data.mixture import mix
from m2rl.errors import UserError
from m2rl.jobs.training import create_training_run, run_training
from m2rl.ledger import Ledger, Run
from m2rl.models.resolve import resolve_base_model
from m2rl.specs import RLJob
from m2rl.verifiers import VerifierConfig


def completed_sft(ledger: Ledger, ref: str) -> Run:
    """The completed SFT run `--from REF` names, with its model directory; else a UserError."""
    run = ledger.get(ref)
    if run.kind != "sft" or run.status != "completed":
        raise UserError(
            f"--from {ref}: run {run.id} is a {run.status} {run.kind} run, not a completed SFT run"
        )
    return _with_model(run, ref)


def completed_start(ledger: Ledger, ref: str) -> Run:
    """The completed SFT or RL run `--from REF` names, with its model directory; else a UserError."""
    run = ledger.get(ref)
    if run.kind not in ("sft", "rl") or run.status != "completed":
        raise UserError(
            f"--from {ref}: run {run.id} is a {run.status} {run.kind} run, not a completed SFT or RL run"
        )
    return _with_model(run, ref)


def _with_model(run: Run, ref: str) -> Run:
    """The run, checked to hold a model directory."""
    if not (run.model_dir / "config.json").is_file():
        raise UserError(f"--from {ref}: run {run.id} has no model directory at {run.model_dir}")
    return run


def start_model(ledger: Ledger, spec: RLJob) -> tuple[str, list[str]]:
    """(model to start from, parent run ids): a completed SFT or RL run (a cascade's stage before), or an
    external `model.path`."""
    ref = spec.start_from
    if ref:
        parent = completed_start(ledger, ref)
        return str(parent.model_dir), [parent.id]
    if spec.model.path:
        return resolve_base_model(spec.model, ledger.root), []
    raise UserError(
        "say where RL starts: --from SFT_RUN (see `m2rl runs --kind sft`) or model.path=DIR_OR_HUB_ID"
    )


def resolve(spec: RLJob, ledger: Ledger) -> RLJob:
    """The spec with its start run named by id (checked to be a completed SFT or RL run with a model)."""
    if not spec.start_from:
        return spec
    _, parents = start_model(ledger, spec)
    return spec.model_copy(update={"start_from": parents[0]})


def training_samples(spec: RLJob) -> list[dict[str, Any]]:
    """The prompts of this run: one domain's, or the mixture of several (natural proportions by default)."""
    VerifierConfig.of(spec.verifiers)  # registers the config's reward plugins before validation
    data = OmegaConf.create(spec.data)
    per_domain = rl_samples(data, spec.domains)
    if len(spec.domains) == 1:
        return per_domain[spec.domains[0]]
    return mix(per_domain, mixture_weights(data), spec.seed)


def create(spec: RLJob, ledger: Ledger, config: dict[str, Any] | None = None, queued: bool = False) -> Run:
    """Check everything that can be checked up front (spec resolved), then create the RL run."""
    model_path, parents = start_model(ledger, spec)
    spec.rl.rollout_batch(spec.launcher.world_size)  # fail now on an inconsistent batch
    training_samples(spec)  # fail now on bad rows or empty domains
    run = create_training_run(spec, ledger, config, parents=parents, queued=queued)
    run.update(domains=spec.domains, base_model=model_path, steps=spec.steps)
    if spec.cascade_stage is not None:
        run.update(cascade={"stage": spec.cascade_stage})  # what tells compare it is not an expert
    return run


def train(spec: RLJob, run: Run, resume_from: str | None) -> dict[str, Any]:
    """GRPO on this rank; return the run's summary metrics."""
    from m2rl.engine.grpo import train_grpo  # torch, TRL: only the training process needs them

    return train_grpo(spec, run, run.manifest["base_model"], training_samples(spec), resume_from)


def run(spec: RLJob, run: Run, resume: bool = False) -> Run:
    """One attempt of the RL run (from its last complete checkpoint when resuming)."""
    return run_training(spec, run, train, resume)
