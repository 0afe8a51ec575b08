"""Evaluate runs on the configured benchmarks: Avg@K, pass@K and a bootstrap 95% interval per benchmark."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from m2rl.commands.common import DEFAULT_RUNS_DIR, DryRun, RunsDir, load_config, print_config
from m2rl.console import console, quiet_libraries
from m2rl.errors import UserError

EVALUABLE_KINDS = ("model", "sft", "rl", "merge")


def split_arguments(arguments: list[str]) -> tuple[list[str], list[str]]:
    """(run references, Hydra overrides): `key=value`, `+key=value` and `~key` (delete) are overrides."""
    from m2rl.config import is_override

    return [a for a in arguments if not is_override(a)], [a for a in arguments if is_override(a)]


def command(
    arguments: Annotated[
        list[str] | None,
        typer.Argument(
            help="Runs to evaluate (id, id prefix, name or directory), then Hydra overrides such as "
            "`eval.k=8 eval.benchmarks.code.count=32`.",
            show_default=False,
        ),
    ] = None,
    runs_dir: RunsDir = DEFAULT_RUNS_DIR,
    all_runs: Annotated[
        bool, typer.Option("--all", help="Evaluate every completed model run under the runs root.")
    ] = False,
    dry_run: DryRun = False,
) -> None:
    """Evaluate runs: `m2rl eval RUN [RUN...] [overrides]`; saved results with the same config are reused."""
    from m2rl.evaluate.runner import check_evaluable, eval_plan
    from m2rl.evaluate.settings import EvalSettings
    from m2rl.ledger import Ledger

    refs, overrides = split_arguments(list(arguments or []))
    cfg = load_config(overrides)
    ledger = Ledger(runs_dir)
    if all_runs:
        runs = [r for r in ledger.runs() if r.status == "completed" and r.kind in EVALUABLE_KINDS]
    else:
        runs = [ledger.get(ref) for ref in refs]
    if not runs:
        raise UserError("no runs to evaluate: name runs (see `m2rl runs`) or pass --all")
    for run in runs:
        check_evaluable(run)
    if dry_run:
        print_config(cfg.eval, "m2rl eval: resolved eval config (dry run)")
        plan = Table(title="plan")
        for column in ("run", "benchmark", "K", "action"):
            plan.add_column(column)
        for run in runs:
            for bench, _digest, saved in eval_plan(run, cfg):
                plan.add_row(
                    run.name, bench.name, str(bench.k), "reuse saved results" if saved else "evaluate"
                )
        console.print(plan)
        return
    quiet_libraries()
    from m2rl import jobs
    from m2rl.jobs.build import eval_job

    for run in runs:
        done = jobs.execute(eval_job(cfg, run.id), run)
        metrics = {
            b: done.manifest["metrics"]["eval"][b]
            for b in (s.name for s in EvalSettings.from_cfg(cfg).benchmarks)
        }
        console.print(results_table(run.name, run.id, metrics, run.path))


def results_table(name: str, run_id: str, metrics: dict[str, dict], run_dir: Path) -> Table:
    """One run's eval metrics as a table (scores in %)."""
    table = Table(
        title=f"eval {name} ({run_id})",
        caption=f"tokens = mean response length; per-item results in {run_dir / 'eval'}",
    )
    for column in ("benchmark", "domain", "items", "K", "Avg@K %", "95% CI", "pass@K %", "tokens"):
        table.add_column(
            column, justify="left" if column in ("benchmark", "domain") else "right", no_wrap=True
        )
    for bench, m in metrics.items():
        lo, hi = m["ci95"]
        table.add_row(
            bench,
            m["domain"],
            str(m["n_items"]),
            str(m["k"]),
            f"{100 * m['avg_at_k']:.2f}",
            f"[{100 * lo:.1f}, {100 * hi:.1f}]",
            f"{100 * m['pass_at_k']:.2f}",
            f"{m.get('mean_tokens', float('nan')):.1f}",
        )
    return table
