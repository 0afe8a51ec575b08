"""The eval job: Avg@K of one completed run on the configured benchmarks, written into that run.

Eval creates no run of its own: per-item results go to `<run>/eval/` and metrics to the run's
manifest (see m2rl.evaluate.runner), so `create` only finds and checks the evaluated run.
"""

from __future__ import annotations

import sys
from typing import Any

from m2rl.evaluate.runner import check_evaluable, eval_progress, evaluate_run
from m2rl.evaluate.settings import EvalSettings
from m2rl.ledger import Ledger, Run
from m2rl.signals import raise_lost_signal
from m2rl.specs import EvalJob


def resolve(spec: EvalJob, ledger: Ledger) -> EvalJob:
    """The spec with the evaluated run named by id."""
    return spec.model_copy(update={"run": ledger.get(spec.run).id})


def create(spec: EvalJob, ledger: Ledger, config: dict[str, Any] | None = None, queued: bool = False) -> Run:  # noqa: ARG001
    """The run this job evaluates, checked to be completed with a model."""
    run = ledger.get(spec.run)
    check_evaluable(run)
    return run


class ProgressFile:
    """The calls `evaluate_run` makes on a rich Progress, published as the run's eval progress (for the
    study's live view) and passed on to a shown rich Progress when there is one."""

    def __init__(self, run: Run, shown: Any = None):
        self.run, self.shown = run, shown
        self.done, self.total, self.note = 0, 0, ""

    def __enter__(self) -> ProgressFile:
        if self.shown is not None:
            self.shown.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.shown is not None:
            self.shown.__exit__(*exc)

    def add_task(self, description: str, total: int) -> Any:
        self.done, self.total, self.note = 0, total, description
        self.run.write_progress("eval", 0, total, description)
        return self.shown.add_task(description, total=total) if self.shown is not None else None

    def advance(self, task: Any, amount: int) -> None:
        raise_lost_signal()
        self.done += amount
        self.run.write_progress("eval", self.done, self.total, self.note)
        if self.shown is not None:
            self.shown.advance(task, amount)

    def update(self, task: Any, description: str) -> None:
        self.note = description
        self.run.write_progress("eval", self.done, self.total, description)
        if self.shown is not None:
            self.shown.update(task, description=description)


def eval_settings(spec: EvalJob) -> EvalSettings:
    """The settings `evaluate_run` takes: the spec's eval and verifier sections and its seed."""
    return EvalSettings.of(spec.eval, spec.verifiers, spec.seed)


def run(spec: EvalJob, run: Run, resume: bool = False) -> Run:  # noqa: ARG001 (saved benchmarks are reused)
    """Evaluate `run`; benchmarks with saved results of the same config are reused, not redone."""
    shown = eval_progress() if sys.stderr.isatty() else None
    with ProgressFile(run, shown) as progress:
        evaluate_run(
            Ledger(run.path.parent), run, eval_settings(spec), progress=progress, replace=spec.replace
        )
    return Run.load(run.path)
