"""Compare evaluated runs: scores and differences with 95% intervals and verdicts, costs, synergy, transfer.

With no arguments, the latest study; `--study NAME`, `--all`, or runs named. Writes compare.md,
compare.csv, differences.csv, compare.json and the plots (PNG, PDF, SVG).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from m2rl.commands.common import DEFAULT_RUNS_DIR, RunsDir
from m2rl.console import console


def command(
    runs: Annotated[
        list[str] | None,
        typer.Argument(
            help="Runs to compare, by id, name or folder (default: the latest study).", show_default=False
        ),
    ] = None,
    study: Annotated[
        str | None, typer.Option("--study", help="Compare the runs of this study.", show_default=False)
    ] = None,
    all_runs: Annotated[
        bool, typer.Option("--all", help="Compare every evaluated run under the runs root.", metavar="")
    ] = False,
    runs_dir: RunsDir = DEFAULT_RUNS_DIR,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Output folder (default: one per scope: <runs-dir>/<study>-s0-s1-compare for a study's "
            "seeds, all-compare for --all, compare-<hash> for runs named; <study>-compare and compare "
            "link to the latest).",
            show_default=False,
        ),
    ] = None,
    bootstrap_samples: Annotated[
        int, typer.Option("--bootstrap-samples", min=100, help="Resamples behind every interval.")
    ] = 2000,  # m2rl.compare.intervals.DEFAULT_SAMPLES, not imported so the CLI starts fast
    seed: Annotated[int, typer.Option("--seed", help="Seed of the bootstrap.")] = 0,
) -> None:
    """Compare the latest study, `--study NAME`, `--all`, or the runs named; write and print the result."""
    # lazy: numpy and pydantic; the CLI imports every command at start
    from m2rl.compare import compare_runs, print_compare, select_runs
    from m2rl.ledger import Ledger

    selection = select_runs(Ledger(runs_dir), runs or (), study=study, all_runs=all_runs)
    result = compare_runs(
        selection.runs,
        out or selection.out_dir,
        bootstrap_samples=bootstrap_samples,
        seed=seed,
        notes=selection.notes,
        latest=None if out else selection.latest,
    )
    print_compare(result, console)
