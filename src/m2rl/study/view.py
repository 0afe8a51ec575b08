"""How a study looks on the terminal: the plan table, and the live view while it runs.

The live view has one line for the study (stages done of all, elapsed, ETA from the stages' estimated
costs) and one per running stage (its steps or samples, the latest reward or loss), read from the
progress files each stage publishes in its run directory; a line is printed as each stage ends.
"""

from __future__ import annotations

import time

from omegaconf import DictConfig
from rich.console import Console, Group, RenderableType
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from m2rl.study.executor import StageState
from m2rl.study.plan import Stage, estimated_gpu_hours


def plan_table(cfg: DictConfig, stages: list[Stage], hours_label: str) -> Table:
    """The plan: each stage, its kind, domains or method, steps, and paper-scale GPU-hours for RL."""
    paper = cfg.get("preset") == "paper"
    table = Table(title=f"study plan (preset={cfg.get('preset')}, {len(stages)} stages)")
    columns = ["#", "stage", "kind", "domains / method, steps", "after"]
    if paper:
        columns.append("est. GPU-hours (paper per-step cost)")
    for column in columns:  # stage names whole: they are what --from and --experts take
        table.add_column(column, no_wrap=column == "stage", overflow="fold")
    total = 0.0
    for i, stage in enumerate(stages, 1):
        row = [str(i), stage.name, stage.kind, _what(stage), _after(stage)]
        if paper:
            hours = estimated_gpu_hours(cfg, stage)
            total += hours or 0.0
            row.append(f"{hours:.1f}" if hours else "")
        table.add_row(*row)
    if paper:
        mixed = sum(
            estimated_gpu_hours(cfg, s) or 0.0 for s in stages if s.kind == "rl" and len(s.domains) > 1
        )
        distill = sum(estimated_gpu_hours(cfg, s) or 0.0 for s in stages if s.kind == "distill")
        experts = total - mixed - distill
        ratio = f"mix/merge {mixed / experts:.1%} of the experts' GPU-hours" if experts else ""
        table.caption = f"total RL{' and MT-OPD' if distill else ''} {total:.1f} GPU-hours; {ratio} (merging runs on CPU: not counted)"
    else:
        table.caption = f"costs are measured as the study runs ({hours_label})"
    return table


def plan_view(cfg: DictConfig, stages: list[Stage], hours_label: str, console: Console) -> RenderableType:
    """The plan table where it fits the console, else one line per stage (names are never cut)."""
    table = plan_table(cfg, stages, hours_label)
    if _narrowest(table) <= console.width:
        return table
    paper = cfg.get("preset") == "paper"
    lines = [Text(str(table.title), style="italic")]
    for i, stage in enumerate(stages, 1):
        parts = [stage.kind, _what(stage)]
        if stage.deps:
            parts.append(f"after {_after(stage)}")
        if paper and (hours := estimated_gpu_hours(cfg, stage)):
            parts.append(f"{hours:.1f} GPU-hours est.")
        lines.append(Text(f"{i:>2}. {stage.name}: " + "; ".join(p for p in parts if p)))
    lines.append(Text(str(table.caption), style="dim"))
    return Group(*lines)


def _narrowest(table: Table) -> int:
    """The table's width with every column as narrow as its longest word (no word split)."""
    widths = [
        max(
            len(word)
            for text in [str(column.header), *map(str, column.cells)]
            for word in text.split() or [""]
        )
        for column in table.columns
    ]
    return sum(widths) + 3 * len(widths) + 1  # a space either side of each cell and the rules


def _what(stage: Stage) -> str:
    what = stage.method or ", ".join(stage.domains)
    unit = "trials" if stage.kind == "merge" else "steps"  # a tuned merge's steps are its search's trials
    return f"{what}; {stage.steps} {unit}" if stage.steps else what


def _after(stage: Stage) -> str:
    """The stages it waits for, named without the study and seed (`sft` beside `study-s0-rl-math`)."""
    prefix = f"{stage.name.split('-s')[0]}-s{stage.seed}-"
    after = [dep.removeprefix(prefix) for dep in stage.deps]
    return ", ".join(after) if len(after) < 3 else f"{len(after)} stages"


class LiveView:
    """The study's live display; feed it executor events and ticks."""

    def __init__(self, states: dict[str, StageState], console: Console):
        self.states = states
        self.console = console
        self.total_cost = sum(s.stage.cost for s in states.values())
        self.started = time.monotonic()
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(bar_width=20),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[note]}"),
            console=console,
            refresh_per_second=2,
        )
        self.overall = self.progress.add_task("study", total=len(states), note="")
        self.tasks: dict[str, int] = {}

    def __enter__(self) -> LiveView:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def event(self, state: StageState) -> None:
        """A stage started or ended."""
        name = state.stage.name
        if state.status == "running":
            run_id = state.run.id if state.run else ""
            devices = f", GPUs {','.join(map(str, state.devices))}" if state.devices else ""
            job = getattr(state.handle, "job_id", None)
            if job is not None:
                followed = " (submitted by an earlier command, followed)" if state.handle.adopted else ""
                devices += f", Slurm job {job}{followed}"
            self.progress.console.print(f"[bold]start[/] {name} ({state.stage.kind}) -> {run_id}{devices}")
            self.tasks[name] = self.progress.add_task(f"  {name}", total=None, note="starting")
            return
        task = self.tasks.pop(name, None)
        if task is not None:
            self.progress.remove_task(task)
        if state.status == "reused" and state.stage.kind == "eval":
            self.progress.console.print(f"[green]reusing saved eval results[/] of {state.run.id}")
        elif state.status == "reused":
            self.progress.console.print(f"[green]reusing completed run[/] {state.run.id} for {name}")
        elif state.status == "completed":
            self.progress.console.print(f"[green]done[/] {name} in {state.seconds:.0f} s")
        elif state.status == "failed":
            self.progress.console.print(f"[red]failed[/] {name}: {state.error}")
        elif state.status == "skipped":
            self.progress.console.print(f"[yellow]skipped[/] {name}: {state.error}")
        self.tick()

    def tick(self) -> None:
        """Refresh every running stage's line and the study's line."""
        done_cost = 0.0
        finished = 0
        for name, state in self.states.items():
            if state.status in ("completed", "reused", "failed", "skipped"):
                finished += 1
                done_cost += state.stage.cost
            elif state.status == "running" and state.run is not None:
                progress = state.run.read_progress("eval" if state.stage.kind == "eval" else state.stage.kind)
                if progress and progress.get("total"):
                    fraction = min(1.0, progress["done"] / progress["total"])
                    done_cost += fraction * state.stage.cost
                    if name in self.tasks:
                        self.progress.update(
                            self.tasks[name],
                            completed=progress["done"],
                            total=progress["total"],
                            note=str(progress.get("note", ""))[:60],
                        )
        elapsed = time.monotonic() - self.started
        eta = ""
        if 0 < done_cost < self.total_cost:
            eta = f"ETA {elapsed / done_cost * (self.total_cost - done_cost):.0f}s"
        self.progress.update(self.overall, completed=finished, note=eta)
