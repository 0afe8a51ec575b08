"""Supervised fine-tuning of the base model (TRL SFTTrainer, loss on assistant tokens only)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from m2rl.commands.common import DEFAULT_RUNS_DIR, DryRun, Name, Overrides, RunsDir, load_config, print_config
from m2rl.console import console, quiet_libraries

Resume = Annotated[
    str | None, typer.Option("--resume", help="Continue this interrupted SFT run from its last checkpoint.")
]


def command(
    overrides: Overrides = None,
    resume: Resume = None,
    runs_dir: RunsDir = DEFAULT_RUNS_DIR,
    name: Name = None,
    dry_run: DryRun = False,
) -> None:
    """Supervised fine-tuning of the base model: `m2rl sft [overrides]` (e.g. `sft.epochs=1`)."""
    from m2rl import jobs
    from m2rl.jobs.build import check_config, sft_job
    from m2rl.ledger import Ledger

    ledger = Ledger(Path(runs_dir))
    if resume:
        quiet_libraries()
        report(resume_run(ledger, resume, "sft"))
        return
    cfg = load_config(overrides)
    check_config(cfg)
    spec = sft_job(cfg, name or "sft")
    if dry_run:
        print_config(cfg, "m2rl sft: resolved config (dry run)")
        return
    quiet_libraries()
    from m2rl.config import to_container

    report(jobs.start(spec, ledger, config=to_container(cfg)))


def resume_run(ledger, ref: str, kind: str):
    """Continue an interrupted SFT or RL run from its last complete checkpoint, with its saved spec."""
    from m2rl import jobs
    from m2rl.errors import UserError
    from m2rl.jobs.training import check_resumable, last_checkpoint

    run = ledger.get(ref)
    check_resumable(run, kind, ref)
    checkpoint = last_checkpoint(run)
    if checkpoint is None:
        raise UserError(
            f"--resume {ref}: run {run.id} saved no complete checkpoint ({kind}.save_steps); start it again instead"
        )
    console.print(f"resuming {run.id} from {Path(checkpoint).name}", style="yellow")
    return jobs.execute(jobs.read_spec(run), run, resume=True)


def report(run) -> None:
    """A finished training run's summary table."""
    table = Table(title=f"{run.kind} run {run.id}", show_header=False)
    table.add_row("status", run.status)
    if run.manifest.get("domains"):
        table.add_row("domains", ", ".join(run.manifest["domains"]))
    table.add_row(run.manifest["device_hours_label"], f"{run.device_hours:.4f}")
    table.add_row("CPU-hours (process CPU time)", f"{run.manifest.get('cpu_seconds', 0.0) / 3600:.4f}")
    for key, value in sorted(run.manifest.get("metrics", {}).items()):
        table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
    table.add_row("model", str(run.model_dir))
    table.add_row("metrics", str(run.path / "metrics.jsonl"))
    console.print(table)
