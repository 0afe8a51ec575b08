"""The whole study in one command: SFT, experts, the mixed run, merges, eval and the compare table."""

from __future__ import annotations

from pathlib import Path

from m2rl.commands.common import (
    DEFAULT_RUNS_DIR,
    DryRun,
    Name,
    Overrides,
    RunsDir,
    load_config,
    print_config,
)
from m2rl.console import console, err_console, quiet_libraries


def command(
    overrides: Overrides = None,
    runs_dir: RunsDir = DEFAULT_RUNS_DIR,
    name: Name = None,
    dry_run: DryRun = False,
) -> None:
    """Run the mix-vs-merge study end to end: `m2rl pipeline` (tiny, CPU), `study.seeds=3` to replicate it
    per seed, `study.executor=slurm` to send each stage to Slurm; `m2rl pipeline preset=paper --dry-run`
    prints the paper's plan. Resumable: finished stages are reused, interrupted ones resumed."""
    from m2rl.compare import print_compare
    from m2rl.specs import check_name
    from m2rl.study import check_study, run_study
    from m2rl.study.plan import plan
    from m2rl.study.view import plan_table

    cfg = load_config(overrides)
    study = _study_name(name or "study", check_name)
    stages = plan(cfg, study)
    check_study(cfg, stages)
    if dry_run:
        print_config(cfg, "m2rl pipeline: resolved config (dry run)")
        device = "GPU-hours" if cfg.get("preset") == "paper" else "CPU-hours (process CPU time)"
        console.print(plan_table(cfg, stages, device))
        return
    quiet_libraries()
    result = run_study(cfg, Path(runs_dir), study, err_console)
    console.rule("[bold]mix vs merge")
    print_compare(result, console)


def _study_name(name: str, check) -> str:
    from m2rl.errors import UserError

    try:
        return check(name)
    except ValueError as exc:
        raise UserError(f"--name {exc}") from None
