"""Compare's tables read at 80 columns and in pipes: no cut numbers, every score with its interval."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest
from rich.console import Console

from m2rl.compare import CompareResult, print_compare, select_runs
from m2rl.compare.core import Comparison, build_comparison
from m2rl.compare.formatting import interval, pct, signed
from m2rl.compare.manifests import records_from_runs
from m2rl.compare.render import rich_renderable
from m2rl.ledger import Ledger
from study_builder import build_study
from test_compare_paper import paper_records


@pytest.fixture(scope="module")
def two_seed_comparison(tmp_path_factory) -> Comparison:
    root = tmp_path_factory.mktemp("runs")
    build_study(root, seeds=(0, 1))
    return build_comparison(*records_from_runs(select_runs(Ledger(root)).runs), bootstrap_samples=300)


def rendered(comparison: Comparison, width: int) -> str:
    buffer = io.StringIO()
    Console(file=buffer, width=width, color_system=None).print(rich_renderable(comparison, width=width))
    return buffer.getvalue()


def assert_fits(text: str, width: int) -> None:
    """Nothing cut short, and no line wider than `width` but the lines naming files, which are printed
    whole (a path folded over two lines cannot be copied)."""
    assert "…" not in text
    lines = [
        line for line in text.splitlines() if not line.startswith("wrote ") and "links to it" not in line
    ]
    assert max(len(line) for line in lines) <= width


def assert_every_score_readable(text: str, comparison: Comparison) -> None:
    """Each score of each row shows in full, at 2 decimals or (with `±` half-widths) at 1."""
    for row in comparison.rows:
        assert row.label in text
        for estimate in [*row.scores.values(), row.mean]:
            assert pct(estimate.value) in text or pct(estimate.value, 1) in text, (row.label, estimate)


@pytest.mark.parametrize("width", [80, 100])
def test_every_score_and_claim_is_readable_at_narrow_widths(two_seed_comparison, width):
    text = rendered(two_seed_comparison, width)
    assert_fits(text, width)
    assert_every_score_readable(text, two_seed_comparison)
    for claim in two_seed_comparison.headline:
        assert interval(claim.estimate, is_difference=True) in text
        assert signed(claim.estimate.value) in text
    assert "2 seeds x test items" in text


def test_wide_terminals_show_every_interval_bound(two_seed_comparison):
    text = rendered(two_seed_comparison, 250)
    assert_fits(text, 250)
    for row in two_seed_comparison.rows:
        for estimate in row.scores.values():
            assert f"{pct(estimate.value)} {interval(estimate)}" in text


def test_the_papers_nine_benchmarks_fall_back_to_one_line_per_score_at_80_columns():
    comparison = build_comparison(paper_records())
    text = rendered(comparison, 80)
    assert_fits(text, 80)
    assert_every_score_readable(text, comparison)
    assert "mmlu_redux" in text and "33.2% (2166.4 / 6524.8 GPU-hours; 1 seed: no spread)" in text


def test_the_cli_in_a_pipe_keeps_to_80_columns(tmp_path):
    build_study(tmp_path / "runs", seeds=(0, 1))
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"} | {"COLUMNS": "80", "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "m2rl.cli", "compare", "--runs-dir", str(tmp_path / "runs")]
    result = subprocess.run(command + ["--bootstrap-samples", "200"], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert_fits(result.stdout, 80)
    assert "RL-Math above SFT on math" in result.stdout and "Scores (Avg@K, %)" in result.stdout


def test_print_compare_lists_the_files_it_wrote(tmp_path, two_seed_comparison):
    names = ("compare.md", "compare.csv", "differences.csv", "compare.json", "score_vs_hours.png")
    paths = [tmp_path / name for name in names]
    result = CompareResult(two_seed_comparison, rich_renderable(two_seed_comparison), *paths[:4], paths[4:])
    buffer = io.StringIO()
    print_compare(result, Console(file=buffer, width=80, color_system=None))
    assert (
        f"wrote {tmp_path}/: compare.md, compare.csv, differences.csv, compare.json, score_vs_hours.png\n"
        in buffer.getvalue()  # on one line, whatever its length
    )
    assert_fits(buffer.getvalue(), 80)
