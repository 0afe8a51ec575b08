"""Trainer callbacks shared by SFT and GRPO: the run ledger's metrics and progress files, a rich bar."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from transformers import TrainerCallback

from m2rl.ledger import Run
from m2rl.signals import raise_lost_signal


def _clean(logs: dict) -> dict:
    return {k: (v if not isinstance(v, float) or math.isfinite(v) else None) for k, v in logs.items()}


class LedgerMetricsCallback(TrainerCallback):
    """Append every trainer log record (with its step) to the run's metrics.jsonl, on rank 0 only."""

    def __init__(self, run: Run):
        self.run = run

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            self.run.log_metrics({"step": state.global_step, **_clean(logs)})


class LedgerProgressCallback(TrainerCallback):
    """Publish the step count and a summary of the latest logs as the run's progress (rank 0)."""

    def __init__(self, run: Run, job: str, summarize: Callable[[dict], str]):
        self.run, self.job, self.summarize = run, job, summarize
        self.summary, self.last_write = "", 0.0

    def _publish(self, state, force: bool = False) -> None:
        now = time.monotonic()
        if state.is_world_process_zero and (force or now - self.last_write >= 1.0):
            self.run.write_progress(self.job, state.global_step, state.max_steps, self.summary)
            self.last_write = now

    def on_train_begin(self, args, state, control, **kwargs):
        self._publish(state, force=True)

    def on_step_end(self, args, state, control, **kwargs):
        raise_lost_signal()
        self._publish(state)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs:
            self.summary = self.summarize(logs) or self.summary

    def on_train_end(self, args, state, control, **kwargs):
        self._publish(state, force=True)


class RichProgressBar(TrainerCallback):
    """One progress bar for the whole training, with a short summary of the latest logged metrics.

    Where stderr is not a terminal (a log file, a Slurm job's output) a bar cannot redraw, so a plain
    line is written instead at the first step, every `LINE_EVERY_S` seconds and at the last step.
    """

    LINE_EVERY_S = 30.0

    def __init__(self, description: str, summarize: Callable[[dict], str], console: Console | None = None):
        self.description = description
        self.summarize = summarize
        self.console = console or Console(stderr=True)
        self.progress: Progress | None = None
        self.task = None
        self.lines = False  # plain lines instead of a bar
        self.started = self.last_line = 0.0
        self.start_step = 0  # the step training (re)started from: a resumed run's earlier ones took no time
        self.summary = ""

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        if not self.console.is_terminal:
            self.lines, self.started, self.last_line = True, time.monotonic(), -math.inf
            self.start_step = state.global_step
            return
        self.progress = Progress(
            TextColumn("[bold blue]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[summary]}"),
            console=self.console,
            transient=False,
            refresh_per_second=2,  # redraws steal the GIL from a CPU-bound training loop
        )
        self.progress.start()
        self.task = self.progress.add_task(self.description, total=state.max_steps, summary="")
        self.progress.update(self.task, completed=state.global_step)

    def on_step_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.update(self.task, completed=state.global_step)
        elif self.lines:
            now = time.monotonic()
            if now - self.last_line >= self.LINE_EVERY_S or state.global_step >= state.max_steps:
                self.last_line = now
                self.console.print(self._line(state, now - self.started), soft_wrap=True, highlight=False)

    def _line(self, state, elapsed: float) -> str:
        """`grpo math: step 40/200 (20%), 0:01:02 elapsed, about 0:04:08 left; reward math 0.42`."""
        done, total = state.global_step, max(state.max_steps, 1)
        left = elapsed / max(done - self.start_step, 1) * (total - done)
        clock = time.strftime("%H:%M:%S")
        summary = f"; {self.summary}" if self.summary else ""
        return (
            f"[{clock}] {self.description}: step {done}/{total} ({100 * done / total:.0f}%), "
            f"{_duration(elapsed)} elapsed, about {_duration(left)} left{summary}"
        )

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and (self.progress is not None or self.lines):
            self.summary = self.summarize(logs) or self.summary
            if self.progress is not None:
                self.progress.update(self.task, summary=self.summary)

    def on_train_end(self, args, state, control, **kwargs):
        self.stop()

    def stop(self) -> None:
        """Stop drawing (also when training raises: the terminal gets its cursor back)."""
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def _duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
