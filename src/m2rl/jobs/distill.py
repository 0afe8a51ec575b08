"""The distill job: multi-teacher on-policy distillation (MT-OPD) of a study's experts into one student.

`resolve` names the SFT run and every teacher by id (`--teachers STUDY` picks the study's completed
single-domain experts trained from that SFT run); `create` checks, before any work, that every
teacher is a completed single-domain RL run derived from the same SFT run, that every prompt
domain has exactly one teacher, and that the batch and the prompts are sound; `run` trains in this
process or under accelerate, resuming from the last complete checkpoint (engine/distill.py).
"""

from __future__ import annotations

from typing import Any

from m2rl.errors import UserError
from m2rl.jobs.rl import completed_sft, training_samples
from m2rl.jobs.training import create_training_run, run_training
from m2rl.ledger import Ledger, Run
from m2rl.specs import DistillJob


def study_experts(ledger: Ledger, study: str, sft: Run) -> list[Run]:
    """The study's completed single-domain RL runs trained from `sft` (the newest per domain)."""
    found: dict[str, Run] = {}
    for run in ledger.runs():
        domains = run.manifest.get("domains") or []
        if (
            run.manifest.get("study") == study
            and run.is_expert
            and run.status == "completed"
            and sft.id in (run.manifest.get("parents") or [])
        ):
            found[domains[0]] = run  # ledger.runs() is oldest first
    return list(found.values())


def _is_study(ledger: Ledger, ref: str) -> bool:
    return any(run.manifest.get("study") == ref for run in ledger.runs())


def teacher_runs(ledger: Ledger, spec: DistillJob) -> tuple[Run, dict[str, Run]]:
    """(the SFT run, domain -> teacher run), every check a user can act on made here."""
    spec.served_teachers()  # a vLLM-served teacher of a domain the run lacks, or a bad address
    sft = completed_sft(ledger, spec.start_from)
    refs = spec.teachers
    if len(refs) == 1 and _is_study(ledger, refs[0]):
        runs = study_experts(ledger, refs[0], sft)
        if not runs:
            raise UserError(
                f"--teachers {refs[0]}: the study has no completed single-domain RL run trained from {sft.id}"
            )
    else:
        runs = [ledger.get(ref) for ref in refs]
    teachers: dict[str, Run] = {}
    for run in runs:
        domains = run.manifest.get("domains") or []
        if run.kind != "rl" or len(domains) != 1:
            raise UserError(
                f"--teachers: run {run.id} is a {run.kind} run on {len(domains)} domains, not an expert"
            )
        if run.status != "completed":
            raise UserError(f"--teachers: run {run.id} is {run.status}, not completed")
        if sft.id not in (run.manifest.get("parents") or []):
            raise UserError(
                f"--teachers: run {run.id} was not trained from the SFT run {sft.id} (--from); "
                "teacher and student must share their SFT base"
            )
        if not (run.model_dir / "config.json").is_file():
            raise UserError(f"--teachers: run {run.id} has no model directory at {run.model_dir}")
        if domains[0] in teachers:
            raise UserError(
                f"--teachers: two {domains[0]} teachers ({teachers[domains[0]].id}, {run.id}); name one"
            )
        teachers[domains[0]] = run
    missing = [d for d in spec.domains if d not in teachers]
    if missing:
        raise UserError(
            f"no teacher for domain(s) {', '.join(missing)} (teachers cover {', '.join(teachers) or 'none'}); "
            "add an expert of each to --teachers or drop the domain with --domains"
        )
    return sft, {d: teachers[d] for d in spec.domains}


def resolve(spec: DistillJob, ledger: Ledger) -> DistillJob:
    """The spec with its SFT run and its teachers named by id, in domain order."""
    sft, teachers = teacher_runs(ledger, spec)
    return spec.model_copy(update={"start_from": sft.id, "teachers": [t.id for t in teachers.values()]})


def create(
    spec: DistillJob, ledger: Ledger, config: dict[str, Any] | None = None, queued: bool = False
) -> Run:
    """Check everything that can be checked up front (spec resolved), then create the distill run."""
    sft, teachers = teacher_runs(ledger, spec)
    spec.distill.rollout_batch(spec.launcher.world_size)
    training_samples(spec)  # fail now on bad rows or empty domains
    parents = [sft.id, *(t.id for t in teachers.values())]
    run = create_training_run(spec, ledger, config, parents=parents, queued=queued)
    run.update(
        domains=spec.domains,
        base_model=str(sft.model_dir),
        steps=spec.steps,
        teachers={d: t.id for d, t in teachers.items()},
        teacher_models={d: str(t.model_dir) for d, t in teachers.items()},
    )
    return run


def train(spec: DistillJob, run: Run, resume_from: str | None) -> dict[str, Any]:
    """MT-OPD on this rank; return the run's summary metrics."""
    # lazy: m2rl.engine imports transformers, only in the process that trains
    from m2rl.engine.distill import train_distill

    m = run.manifest
    return train_distill(
        spec, run, m["base_model"], dict(m["teacher_models"]), training_samples(spec), resume_from
    )


def run(spec: DistillJob, run: Run, resume: bool = False) -> Run:
    """One attempt of the distill run (from its last complete checkpoint when resuming)."""
    return run_training(spec, run, train, resume)
