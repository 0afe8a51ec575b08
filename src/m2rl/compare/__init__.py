"""The study's comparison of evaluated runs: scores and differences with intervals, verdicts, costs, plots."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console, RenderableType

from m2rl.compare.core import Comparison, build_comparison
from m2rl.compare.export import write_csv, write_differences_csv, write_json
from m2rl.compare.intervals import DEFAULT_SAMPLES
from m2rl.compare.manifests import evaluated_runs, records_from_runs
from m2rl.compare.markdown import to_markdown
from m2rl.compare.plots import plot_score_vs_hours, plot_transfer
from m2rl.compare.records import BenchmarkResult, RunRecord
from m2rl.compare.render import rich_renderable
from m2rl.compare.selection import Selection, select_runs
from m2rl.errors import UserError
from m2rl.ledger import Run, replace_dir, temp_sibling

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
    latest: Path | None = None  # the link that now names this comparison
    moved_aside: Path | None = None  # where an older real folder of the link's name went

    @property
    def paths(self) -> list[Path]:
        return [self.markdown_path, self.csv_path, self.differences_path, self.json_path, *self.plot_paths]


OUTPUT_STEMS = ("compare", "differences", "score_vs_hours", "transfer_heatmap")


def _holds_only_outputs(folder: Path) -> bool:
    """Whether `folder` holds nothing but files `write_outputs` writes."""
    return all(p.is_file() and p.name.split(".")[0] in OUTPUT_STEMS for p in folder.iterdir())


def write_outputs(comparison: Comparison, out_dir: Path) -> CompareResult:
    """Write compare.md, compare.csv, differences.csv, compare.json and the plots into `out_dir` at once."""
    out_dir = Path(out_dir).resolve()
    # into a temp sibling that then takes the folder's place; in a folder holding other files too (an
    # `--out` chosen by hand), each file replaces its own
    whole = not out_dir.exists() or _holds_only_outputs(out_dir)
    tmp = temp_sibling(out_dir if whole else out_dir / "compare")
    tmp.parent.mkdir(parents=True, exist_ok=True)
    tmp.mkdir()
    try:
        (tmp / "compare.md").write_text(to_markdown(comparison, out_dir.parent))
        write_csv(comparison, tmp / "compare.csv")
        write_differences_csv(comparison, tmp / "differences.csv")
        write_json(comparison, tmp / "compare.json")
        plots = plot_score_vs_hours(comparison, tmp / "score_vs_hours")
        plots += plot_transfer(comparison, tmp / "transfer_heatmap")
        if whole:
            replace_dir(tmp, out_dir)
        else:
            for path in tmp.iterdir():
                path.replace(out_dir / path.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # left only when a write failed
    return CompareResult(
        comparison,
        rich_renderable(comparison),
        out_dir / "compare.md",
        out_dir / "compare.csv",
        out_dir / "differences.csv",
        out_dir / "compare.json",
        [out_dir / p.name for p in plots],
    )


def link_latest(out_dir: Path, latest: Path) -> Path | None:
    """Point the link `latest` at `out_dir` (relative, replaced at once); a real folder of that name
    (an older m2rl's comparison) is first moved aside to `<name>-before-<time>`, never deleted.
    Returns where such a folder went."""
    moved = None
    if latest.exists() and not latest.is_symlink():
        moved = latest.with_name(f"{latest.name}-before-{time.strftime('%Y%m%d-%H%M%S')}")
        latest.rename(moved)
    tmp = temp_sibling(latest)
    os.symlink(os.path.relpath(out_dir, latest.parent), tmp)
    os.replace(tmp, latest)
    return moved


def compare_runs(
    runs: list[Run],
    out_dir: Path,
    bootstrap_samples: int = DEFAULT_SAMPLES,
    seed: int = 0,
    notes: Sequence[str] = (),
    latest: Path | None = None,
) -> CompareResult:
    """Compare evaluated runs (replicates over seeds grouped; costs include ancestors found beside them)
    and write the outputs; `notes` (e.g. what the run selection left out) are reported with the rest.
    `latest`: a link to point at `out_dir` once it is written (the stable name of the latest one)."""
    if not runs:
        raise UserError("no evaluated runs to compare: run `m2rl eval RUN` first")
    for run in runs:
        if not run.manifest.get("metrics", {}).get("eval"):
            raise UserError(f"run {run.name} ({run.id}) has no eval results: run `m2rl eval {run.id}` first")
    records, lineage = records_from_runs(runs)
    comparison = build_comparison(records, lineage, bootstrap_samples=bootstrap_samples, seed=seed)
    comparison.notes = [*notes, *comparison.notes]
    result = write_outputs(comparison, out_dir)
    if latest is not None and Path(latest).resolve() != Path(out_dir).resolve():
        result.latest = Path(latest)
        result.moved_aside = link_latest(Path(out_dir).resolve(), Path(latest))
    return result


def print_compare(result: CompareResult, console: Console | None = None) -> None:
    """Print the comparison in a layout that fits the console, and the paths of its files."""
    console = console or Console()
    console.print(rich_renderable(result.comparison, width=console.width))
    console.print(
        f"every difference with its interval and verdict: {result.markdown_path.name}, "
        f"{result.differences_path.name}, {result.json_path.name}",
        style="dim",
    )
    folder = result.markdown_path.parent
    # paths are printed whole (soft wrap): a path folded over two lines cannot be copied
    console.print(f"wrote {folder}/: {', '.join(p.name for p in result.paths)}", style="dim", soft_wrap=True)
    if result.latest is not None:
        aside = f"; the folder that was there is now {result.moved_aside}" if result.moved_aside else ""
        line = f"{result.latest} links to it (the latest comparison of this kind){aside}"
        console.print(line, style="dim", soft_wrap=True)
