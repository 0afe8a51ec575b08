"""The study's comparison of evaluated runs: scores and differences with intervals, verdicts, costs, plots."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console, RenderableType

from m2rl.compare.core import Comparison, build_comparison
from m2rl.compare.intervals import DEFAULT_SAMPLES
from m2rl.compare.manifests import evaluated_runs, records_from_runs
from m2rl.compare.records import BenchmarkResult, RunRecord
from m2rl.compare.selection import Selection, select_runs
from m2rl.errors import UserError
from m2rl.ledger import Run

__all__ = [
    "BenchmarkResult",
    "CompareResult",
    "Comparison",
    "RunRecord",
    "Selection",
    "build_comparison",
    "compare_runs",
    "evaluated_runs",
    "print_compare",
    "select_runs",
    "write_outputs",
]


@dataclass
class CompareResult:
    """The comparison, its rich renderable, and the files written."""

    comparison: Comparison
    renderable: RenderableType
    markdown_path: Path
    csv_path: Path
    differences_path: Path
    json_path: Path
    plot_paths: list[Path] = field(default_factory=list)

    @property
    def paths(self) -> list[Path]:
        return [self.markdown_path, self.csv_path, self.differences_path, self.json_path, *self.plot_paths]


def write_outputs(comparison: Comparison, out_dir: Path) -> CompareResult:
    """Write compare.md, compare.csv, differences.csv, compare.json and the plots into `out_dir`."""
    from m2rl.compare.export import write_csv, write_differences_csv, write_json
    from m2rl.compare.markdown import to_markdown
    from m2rl.compare.plots import plot_score_vs_hours, plot_transfer
    from m2rl.compare.render import rich_renderable

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    markdown_path = out_dir / "compare.md"
    markdown_path.write_text(to_markdown(comparison))
    csv_path, differences_path, json_path = (
        out_dir / "compare.csv",
        out_dir / "differences.csv",
        out_dir / "compare.json",
    )
    write_csv(comparison, csv_path)
    write_differences_csv(comparison, differences_path)
    write_json(comparison, json_path)
    plots = plot_score_vs_hours(comparison, out_dir / "score_vs_hours")
    plots += plot_transfer(comparison, out_dir / "transfer_heatmap")
    return CompareResult(
        comparison, rich_renderable(comparison), markdown_path, csv_path, differences_path, json_path, plots
    )


def compare_runs(
    runs: list[Run],
    out_dir: Path,
    bootstrap_samples: int = DEFAULT_SAMPLES,
    seed: int = 0,
    notes: Sequence[str] = (),
) -> CompareResult:
    """Compare evaluated runs (replicates over seeds grouped; costs include ancestors found beside them)
    and write the outputs; `notes` (e.g. what the run selection left out) are reported with the rest."""
    if not runs:
        raise UserError("no evaluated runs to compare: run `m2rl eval RUN` first")
    for run in runs:
        if not run.manifest.get("metrics", {}).get("eval"):
            raise UserError(f"run {run.name} ({run.id}) has no eval results: run `m2rl eval {run.id}` first")
    records, lineage = records_from_runs(runs)
    comparison = build_comparison(records, lineage, bootstrap_samples=bootstrap_samples, seed=seed)
    comparison.notes = [*notes, *comparison.notes]
    return write_outputs(comparison, out_dir)


def print_compare(result: CompareResult, console: Console | None = None) -> None:
    """Print the comparison in a layout that fits the console, and the paths of its files."""
    from m2rl.compare.render import rich_renderable

    console = console or Console()
    console.print(rich_renderable(result.comparison, width=console.width))
    console.print(
        f"every difference with its interval and verdict: {result.markdown_path.name}, "
        f"{result.differences_path.name}, {result.json_path.name}",
        style="dim",
    )
    folder = result.markdown_path.parent
    console.print(f"wrote {folder}/: {', '.join(p.name for p in result.paths)}", style="dim")
