"""The whole study as one resumable plan: SFT, an expert per domain, the mixed run, merges, eval, compare.

Each stage is a named run. Before running a stage the plan looks for a completed run of the same
name and config (config hash over the stage's config and its parents), and reuses it, so a re-run
skips finished work; an interrupted RL stage with a checkpoint is resumed rather than restarted.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from m2rl.config import training_config_hash
from m2rl.engine import rl_job
from m2rl.ledger import Ledger, Run

MIXED = "mixed"


@dataclass
class Stage:
    """One step of the study plan."""

    kind: str  # sft | rl | merge | eval | compare
    name: str
    domains: list[str] = field(default_factory=list)
    method: str | None = None
    steps: int | None = None


def plan(cfg: DictConfig, study: str) -> list[Stage]:
    """The ordered stages of the study for this config."""
    domains = list(cfg.study.domains)
    stages = [Stage("sft", f"{study}-sft")]
    stages += [Stage("rl", f"{study}-rl-{d}", [d], steps=int(cfg.rl.steps)) for d in domains]
    if len(domains) > 1:
        stages.append(Stage("rl", f"{study}-rl-{MIXED}", domains, steps=int(cfg.rl.mixed_steps)))
        stages += [Stage("merge", f"{study}-merge-{m}", domains, method=m) for m in cfg.study.merge_methods]
    stages.append(Stage("eval", f"{study}-eval"))
    stages.append(Stage("compare", f"{study}-compare"))
    return stages


def estimated_gpu_hours(cfg: DictConfig, stage: Stage) -> float | None:
    """Paper-scale estimate: steps x the paper's GPU-hours per step for that domain (RL stages only)."""
    if stage.kind != "rl":
        return None
    per_step = cfg.study.paper_gpu_hours_per_step
    key = stage.domains[0] if len(stage.domains) == 1 else MIXED
    return float(per_step[key]) * int(stage.steps) if key in per_step else None


def plan_table(cfg: DictConfig, stages: list[Stage]) -> Table:
    """The plan as a table: stage, kind, domains, steps, estimated GPU-hours."""
    table = Table(title=f"study plan (preset={cfg.get('preset')})")
    for column in ("#", "run", "kind", "domains / method", "steps", "est. GPU-hours (paper per-step cost)"):
        table.add_column(column)
    total = 0.0
    for i, stage in enumerate(stages, 1):
        hours = estimated_gpu_hours(cfg, stage)
        total += hours or 0.0
        what = stage.method or ",".join(stage.domains)
        table.add_row(
            str(i), stage.name, stage.kind, what, str(stage.steps or ""), f"{hours:.1f}" if hours else ""
        )
    table.add_row("", "total RL", "", "", "", f"{total:.1f}")
    return table


class Study:
    """Runs the plan against a ledger, reusing completed stages."""

    def __init__(self, cfg: DictConfig, runs_dir: Path, name: str, console: Console | None = None):
        self.cfg = cfg
        self.ledger = Ledger(runs_dir)
        self.name = name
        self.console = console or Console()
        self.stages = plan(cfg, name)
        self.runs: dict[str, Run] = {}
        self.started = time.perf_counter()

    def _announce(self, index: int, stage: Stage, note: str = "") -> None:
        elapsed = time.perf_counter() - self.started
        done = index - 1
        eta = f", ETA {elapsed / done * (len(self.stages) - done):.0f}s" if done else ""
        self.console.rule(
            f"[bold]stage {index}/{len(self.stages)}: {stage.name}[/] ({elapsed:.0f}s elapsed{eta}) {note}"
        )

    def _reuse(self, name: str, digest: str) -> Run | None:
        run = self.ledger.find_completed(name, digest)
        if run is not None:
            self.console.print(f"reusing completed run {run.id}", style="green")
        return run

    def run_sft(self) -> Run:
        from m2rl.engine.jobs import run_sft

        stage = self.stages[0]
        return self._reuse(stage.name, training_config_hash(self.cfg, "sft")) or run_sft(
            self.cfg, self.ledger.root, stage.name
        )

    def run_rl(self, stage: Stage, sft: Run) -> Run:
        digest = training_config_hash(self.cfg, "rl", stage.domains, [sft.id])
        reused = self._reuse(stage.name, digest)
        if reused:
            return reused
        interrupted = [
            r
            for r in self.ledger.runs()
            if r.name == stage.name
            and r.status == "failed"
            and r.manifest.get("config_hash") == digest
            and rl_job.last_checkpoint(r)
        ]
        if interrupted:
            self.console.print(f"resuming interrupted run {interrupted[-1].id}", style="yellow")
            return rl_job.resume(self.ledger, interrupted[-1].id)
        run = rl_job.create_rl_run(self.cfg, self.ledger, stage.domains, sft.id, stage.name)
        run.update(study=self.name)  # `m2rl merge --experts STUDY` finds the experts by this
        return rl_job.execute("rl", self.cfg, run)

    def run_merge(self, stage: Stage, experts: list[Run], sft: Run) -> Run:
        from m2rl.config import to_container
        from m2rl.merge import merge_experts

        existing = {r.id for r in self.ledger.runs()}
        run = merge_experts(
            self.ledger, experts, stage.method, base=sft, name=stage.name, config=to_container(self.cfg)
        )
        if run.id in existing:  # merge_experts returns a completed run of the same name and config
            self.console.print(f"reusing completed run {run.id}", style="green")
        return run

    def execute(self):
        """Run every stage; return the compare result."""
        from m2rl.compare import compare_runs
        from m2rl.evaluate import evaluate_run

        index = 0

        def next_stage(note: str = "") -> Stage:
            nonlocal index
            index += 1
            stage = self.stages[index - 1]
            self._announce(index, stage, note)
            return stage

        next_stage()
        sft = self.run_sft()
        self.runs[sft.name] = sft
        experts: list[Run] = []
        for stage in self.stages[1:]:
            if stage.kind == "rl":
                next_stage(",".join(stage.domains))
                run = self.run_rl(stage, sft)
                self.runs[run.name] = run
                if len(stage.domains) == 1:
                    experts.append(run)
            elif stage.kind == "merge":
                next_stage(stage.method or "")
                run = self.run_merge(stage, experts, sft)
                self.runs[run.name] = run
        next_stage(f"{len(self.runs)} models")
        for run in self.runs.values():
            evaluate_run(self.ledger, run, self.cfg)
        next_stage()
        out_dir = self.ledger.root / f"{self.name}-compare"
        evaluated = [self.ledger.get(r.id) for r in self.runs.values()]
        return compare_runs(evaluated, out_dir, seed=int(self.cfg.seed))
