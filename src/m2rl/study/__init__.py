"""The mix-or-merge study: plan the graph of jobs, run it with the executor, compare what it made.

Resumable and idempotent: every stage whose completed run has the same name and identity is reused,
an interrupted training stage resumes from its last complete checkpoint, and a failed stage stops
only the stages that need it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from rich.console import Console

from m2rl.config import to_container
from m2rl.errors import StudyFailed
from m2rl.jobs.build import check_config, eval_job, section
from m2rl.ledger import Ledger
from m2rl.specs import StudySettings, validated
from m2rl.study.executor import Executor, machine_share, make_backend
from m2rl.study.plan import Stage, plan
from m2rl.study.view import LiveView


def study_settings(cfg: DictConfig) -> StudySettings:
    """The validated `study` section."""
    return validated(StudySettings, section(cfg, "study"), prefix="study.")


def check_study(cfg: DictConfig, stages: list[Stage]) -> None:
    """Everything that can be checked before the first stage: recipes, merge methods, eval settings,
    the rows of local data files."""
    from m2rl.data.files import check_local_files
    from m2rl.merge.methods import load_method

    check_config(cfg)
    check_local_files(cfg.data)
    study_settings(cfg)
    for method in {s.method for s in stages if s.method}:
        load_method(method)
    eval_job(cfg, "unused")  # eval settings


def run_study(cfg: DictConfig, runs_dir: Path, name: str, console: Console) -> Any:
    """Run every stage of the study, then compare the evaluated models; return the compare result."""
    from m2rl.compare import compare_runs
    from m2rl.compare.selection import scope_folder, study_folder

    stages = plan(cfg, name)
    check_study(cfg, stages)
    settings = study_settings(cfg)
    ledger = Ledger(runs_dir)
    share = machine_share(settings)
    backend = make_backend(settings)
    console.print(
        f"study {name}: {len(stages)} stages, executor {backend.name}, up to {share.slots} at once"
        + (f", {share.threads} CPU threads" if settings.executor == "local" and not share.devices else "")
        + f"; runs in {ledger.root}"
    )
    executor = Executor(stages, ledger, backend, share, config=to_container(cfg))
    if settings.executor == "slurm":
        executor.poll_s = settings.slurm.poll_s
    view = LiveView(executor.states, console)
    executor.on_event, executor.on_tick = view.event, view.tick
    with view:
        states = executor.run()
    failed = [s for s in states.values() if s.status == "failed"]
    if failed:
        skipped = sum(1 for s in states.values() if s.status == "skipped")
        listing = "; ".join(f"{s.stage.name} ({s.error})" for s in failed)
        raise StudyFailed(
            f"study {name}: {len(failed)} stage(s) failed: {listing}; {skipped} skipped. "
            "Re-run the same command to continue: finished stages are reused."
        )
    evaluated = [s.evaluates for s in stages if s.kind == "eval"]
    runs = [ledger.get(states[model].run.id) for model in evaluated]
    out = ledger.root / scope_folder(name, runs)
    return compare_runs(runs, out, seed=int(cfg.seed), latest=ledger.root / study_folder(name))
