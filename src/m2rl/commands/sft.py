"""Supervised fine-tuning of the base model (TRL SFTTrainer, loss on assistant tokens only)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from m2rl.commands.common import DEFAULT_RUNS_DIR, DryRun, Name, Overrides, RunsDir, load_config, print_config
from m2rl.commands.training import resume, train

Resume = Annotated[
    str | None, typer.Option("--resume", help="Continue this interrupted SFT run from its last checkpoint.")
]


def command(
    overrides: Overrides = None,
    resume_ref: Resume = None,
    runs_dir: RunsDir = DEFAULT_RUNS_DIR,
    name: Name = None,
    dry_run: DryRun = False,
) -> None:
    """Supervised fine-tuning of the base model: `m2rl sft [overrides]` (e.g. `sft.epochs=1`)."""
    # lazy: numpy and pydantic; the CLI imports every command at start
    from m2rl.jobs.build import check_config, sft_job
    from m2rl.ledger import Ledger

    ledger = Ledger(Path(runs_dir))
    if resume_ref:
        resume(ledger, runs_dir, resume_ref, "sft", dry_run)
        return
    cfg = load_config(overrides)
    check_config(cfg)
    spec = sft_job(cfg, name or "sft")
    if dry_run:
        print_config(cfg, "m2rl sft: resolved config (dry run)")
        return
    train(spec, cfg, ledger, runs_dir, "training")
