"""What the training commands (sft, rl, distill) share: starting a run and naming it, resuming one from
its last checkpoint, the summary table at the end, and the recipe -> TRL mapping table of a dry run."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.table import Table

from m2rl.commands.common import hours_rows, resume_hint, say
from m2rl.config import to_container
from m2rl.console import console, quiet_libraries
from m2rl.engines import check_job_engines
from m2rl.errors import UserError
from m2rl.machine import thread_plan

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from m2rl.ledger import Ledger, Run
    from m2rl.specs import DistillJob, RLJob, SFTJob


def parse_names(text: str) -> list[str]:
    """`math,code` -> ["math", "code"] (order kept, duplicates dropped): domains, teacher runs."""
    return list(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))


def resume(ledger: Ledger, runs_dir: Path, ref: str, kind: str, dry_run: bool = False) -> None:
    """`m2rl KIND --resume REF`: continue the run from its last checkpoint and print its summary
    (with `dry_run`, say which checkpoint it would continue from and do nothing)."""
    quiet_libraries()
    with resume_hint(runs_dir):
        run = resume_run(ledger, ref, kind, dry_run)
    if not dry_run:
        report(run)


def train(
    spec: SFTJob | RLJob | DistillJob, cfg: DictConfig, ledger: Ledger, runs_dir: Path, what: str
) -> None:
    """Run a training job to the end (its run named before the first step) and print its summary."""
    check_job_engines(spec)
    quiet_libraries()
    spec, plan = with_thread_plan(spec)
    with resume_hint(runs_dir):
        report(start_run(spec, ledger, to_container(cfg), f"{what}{plan}"))


def with_thread_plan(spec: Any) -> tuple[Any, str]:
    """The spec with its torch threads set from the cores free now where it sets none and trains on
    CPU, and the plan in words for the start line ("; 2 torch threads (0.1 of 2 cores busy)").
    The thread count is not part of a job's identity and changes no result on CPU (m2rl.machine)."""
    # lazy: torch, only once the job is about to run
    import torch

    if torch.cuda.is_available():
        return spec, ""
    if spec.torch_threads:
        count = spec.torch_threads
        return spec, f"; {count} torch thread{'s' if count > 1 else ''} (torch_threads)"
    threads, words = thread_plan(spec.launcher.world_size)
    return spec.model_copy(update={"torch_threads": threads}), f"; {words}"


def start_run(spec: SFTJob | RLJob | DistillJob, ledger: Ledger, config: dict[str, Any], what: str) -> Run:
    """Resolve, create and run a training job, naming the run and its folder before the first step."""
    # lazy: pydantic (the run specs); the CLI imports every command at start
    from m2rl import jobs

    spec = jobs.resolve(spec, ledger)
    run = jobs.create(spec, ledger, config=config)
    say(f"{run.kind} run {run.id}: {what}; folder {run.path}")
    return jobs.execute(spec, run)


def resume_run(ledger: Ledger, ref: str, kind: str, dry_run: bool = False) -> Run:
    """Continue an interrupted SFT or RL run from its last complete checkpoint, with its saved spec."""
    # lazy: pydantic (the run specs); the CLI imports every command at start
    from m2rl import jobs
    from m2rl.jobs.training import check_resumable, last_checkpoint

    run = ledger.get(ref)
    check_resumable(run, kind, ref)
    checkpoint = last_checkpoint(run)
    if checkpoint is None:
        raise UserError(
            f"--resume {ref}: run {run.id} saved no complete checkpoint ({kind}.save_steps); start it again instead"
        )
    where = f"{Path(checkpoint).name} ({_steps_done(Path(checkpoint))})"
    if dry_run:
        say(f"dry run: would resume {kind} run {run.id} from {where}; folder {run.path}")
        return run
    spec = jobs.read_spec(run)
    check_job_engines(spec)  # the environment may have changed since the run started
    spec, plan = with_thread_plan(spec)  # the threads it started with, or the free cores
    say(f"resuming {kind} run {run.id} from {where}{plan}; folder {run.path}")
    return jobs.execute(spec, run, resume=True)


def _steps_done(checkpoint: Path) -> str:
    """`step N of M` from a checkpoint's trainer state."""
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    total = state.get("max_steps")
    return f"step {state['global_step']}" + (f" of {total}" if total and total > 0 else "")


def tracker_logs(run: Run) -> list[tuple[str, str]]:
    """(tracker, where its logs are) for each tracker the run reported to (`sft.report_to`, `rl.report_to`)."""
    # lazy: pydantic (the run specs); the CLI imports every command at start
    from m2rl import jobs

    spec = jobs.read_spec(run)
    recipe = getattr(spec, run.kind, None)
    places = []
    for tracker in getattr(recipe, "report_to", []):
        if tracker == "tensorboard":
            # transformers writes to <output_dir>/runs/<date>_<host>/ unless TENSORBOARD_LOGGING_DIR is set
            where = os.environ.get("TENSORBOARD_LOGGING_DIR") or str(run.path / "checkpoints" / "runs")
        else:
            where = f"{tracker}'s own store (its environment settings)"
        places.append((f"{tracker} logs", where))
    return places


def report(run: Run) -> None:
    """A finished training run's summary table."""
    table = Table(title=f"{run.kind} run {run.id}", show_header=False)
    table.add_column("what", no_wrap=True)
    table.add_column("value", overflow="fold")  # paths fold whole rather than end in an ellipsis
    table.add_row("status", run.status)
    if run.manifest.get("domains"):
        table.add_row("domains", ", ".join(run.manifest["domains"]))
    for label, value in hours_rows(run.manifest):
        table.add_row(label, value)
    for key, value in sorted(run.manifest.get("metrics", {}).items()):
        table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
    table.add_row("model", str(run.model_dir))
    table.add_row("metrics", str(run.path / "metrics.jsonl"))
    for label, where in tracker_logs(run):
        table.add_row(label, where)
    console.print(table)


def recipe_table(title: str, section: str, mapping, recipe, args, steps: int, world: int) -> Table:
    """One row per item of a recipe -> TRL mapping: the paper's item, the m2rl keys, the TRL options set."""
    values = recipe.model_dump()
    table = Table(title=title)
    for column in ("paper recipe", "m2rl key = value", "TRL option = value"):
        table.add_column(column, overflow="fold")
    for item in mapping:
        keys = "\n".join(f"{section}.{key} = {_lookup(values, key)}" for key in item.keys) or "(fixed)"
        options = item.options(recipe, steps, world, True)
        trl = "\n".join(f"{option} = {getattr(args, option)}" for option in options)
        table.add_row(item.paper, keys, trl)
    return table


def _lookup(recipe: dict, key: str) -> object:
    node: object = recipe
    for part in key.split("."):
        if part == "*" or not isinstance(node, dict):
            return "..." if part == "*" else node
        node = node.get(part)
    return node
