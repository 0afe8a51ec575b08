"""Compare evaluated runs: scores, device-hours, the mix/merge cost ratio, synergy and the transfer matrix."""

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
            help="Runs to compare (default: every evaluated run under the runs root).", show_default=False
        ),
    ] = None,
    runs_dir: RunsDir = DEFAULT_RUNS_DIR,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Where compare.md, compare.csv and the plots go (default: <runs-dir>/compare)."
        ),
    ] = None,
    bootstrap_samples: Annotated[
        int, typer.Option("--bootstrap-samples", help="Resamples for the synergy intervals.")
    ] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the bootstrap.")] = 0,
) -> None:
    """Compare evaluated runs: `m2rl compare [RUN...]`, writing compare.md, compare.csv and PNG plots."""
    from m2rl.compare import compare_runs, evaluated_runs, print_compare
    from m2rl.ledger import Ledger

    ledger = Ledger(runs_dir)
    selected = [ledger.get(ref) for ref in runs] if runs else evaluated_runs(ledger)
    result = compare_runs(
        selected, out or ledger.root / "compare", bootstrap_samples=bootstrap_samples, seed=seed
    )
    print_compare(result, console)
